// Acceptance test of the realtime app template (templates/realtime, issue 5): the built UI in two
// Chromium browser contexts (two users), against the template's process (realtime-app-server)
// and `riptide serve`, all on fresh, empty databases: the process's migrations create the schema
// and it deploys its sync rules through the service's admin API.
//
// Also: the dev server's `import.meta.env` (Vite's `envPrefix`) holds no database URL.
//
// Needs: target/debug/riptide and target/debug/realtime-app-server (`cargo build -p riptide-cli
// -p realtime-app-server`), `npm ci` in templates/realtime/web, Chromium at /usr/bin/chromium.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { CHROMIUM } from '../lib/browser.js';
import { scratchDir } from '../lib/env.js';
import {
  AppProcess,
  appEnv,
  appSecrets,
  buildTemplateUi,
  createEmptyDatabases,
  databaseNames,
  freePort,
  listFiles,
  prepareAppDir,
  TEMPLATE_WEB_DIR,
  readSyncStream,
  startTemplateService,
  waitLive,
  watchSyncStream,
} from '../lib/template.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** How fast B must see A's changes (issue 5). */
const PROPAGATION_LIMIT_MS = 2000;
const PASSWORD = 'correct horse battery';

// Built once for the file: the secrets an app's .env holds, the port of the service (the UI is
// built with its URL) and the UI.
let dir;
let secrets;
let names;
let servicePort;
let distDir;
/** What a real app's .env holds at build time besides the VITE_POWERSYNC_ settings. */
let buildEnv;

before(async () => {
  dir = scratchDir('template');
  secrets = appSecrets();
  names = databaseNames('tmpl');
  servicePort = await freePort();
  distDir = path.join(dir, 'dist');
  buildEnv = {
    VITE_POWERSYNC_URL: `http://127.0.0.1:${servicePort}`,
    VITE_POWERSYNC_TOKEN_ENDPOINT: '/api/powersync/token',
    // `riptide connect` writes these to .env too; none of them may reach the bundle.
    VITE_DATABASE_URL: `postgres://app_pooled:${secrets.apiToken.slice(0, 12)}pw@127.0.0.1:6543/${names.sourceDb}`,
    DIRECT_DATABASE_URL: names.sourceUrl,
    POWERSYNC_SIGNING_KEY: secrets.signingKey,
    POWERSYNC_API_TOKEN: secrets.apiToken,
    POWERSYNC_URL: `http://127.0.0.1:${servicePort}`,
  };
  const started = performance.now();
  await buildTemplateUi(distDir, buildEnv);
  console.log(`# vite build of templates/realtime/web: ${Math.round(performance.now() - started)} ms`);
});

after(() => {
  // Keep the screenshots and logs; the builds (and their copy in the app folder) are reproducible.
  if (dir) {
    fs.rmSync(path.join(dir, 'dist'), { recursive: true, force: true });
    fs.rmSync(path.join(dir, 'app', 'web'), { recursive: true, force: true });
  }
});

test('the built UI holds no database URL, signing key or API token', () => {
  const secretsToFind = {
    'VITE_DATABASE_URL': buildEnv.VITE_DATABASE_URL,
    'the pooled password': buildEnv.VITE_DATABASE_URL.split(':')[2].split('@')[0],
    'DIRECT_DATABASE_URL': buildEnv.DIRECT_DATABASE_URL,
    'the storage URL': names.storageUrl,
    'the signing key (d)': secrets.privateJwk.d,
    'POWERSYNC_SIGNING_KEY': secrets.signingKey,
    'POWERSYNC_API_TOKEN': secrets.apiToken,
  };
  const files = listFiles(distDir);
  assert.ok(files.includes('index.html'), `index.html in ${distDir}: ${files.join(', ')}`);
  let sawServiceUrl = false;
  for (const file of files) {
    const text = fs.readFileSync(path.join(distDir, file)).toString('latin1');
    for (const [what, value] of Object.entries(secretsToFind)) {
      assert.ok(!text.includes(value), `${file} contains ${what}`);
    }
    assert.doesNotMatch(text, /postgres(ql)?:\/\/[^"'\s]*@/, `${file} contains a database URL with credentials`);
    if (text.includes(buildEnv.VITE_POWERSYNC_URL)) sawServiceUrl = true;
  }
  // The check looks at the right files: the public setting is there.
  assert.ok(sawServiceUrl, 'VITE_POWERSYNC_URL is in the bundle');
});

test('the dev server gives the page an import.meta.env with no database URL', { timeout: 120_000 }, async () => {
  // `npm run dev` with the same environment as the build (so .env's VITE_DATABASE_URL is set).
  const port = await freePort();
  const vite = spawn('npx', ['vite', '--port', String(port), '--strictPort', '--host', '127.0.0.1'], {
    cwd: TEMPLATE_WEB_DIR,
    env: { ...process.env, ...buildEnv, PORT: '9' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  vite.stdout.on('data', (d) => (log += d));
  vite.stderr.on('data', (d) => (log += d));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const origin = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${origin}/`)).ok, { timeoutMs: 60_000, what: `vite dev on ${origin}`, describe: () => log });
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    // Every module the page loaded, as the dev server served it: Vite writes each module's
    // `import.meta.env` into its first line.
    const modules = await page.evaluate(async () => {
      const urls = performance
        .getEntriesByType('resource')
        .map((e) => e.name)
        .filter((u) => u.startsWith(location.origin) && /\/src\//.test(u));
      return Promise.all(urls.map(async (url) => ({ url, text: await (await fetch(url)).text() })));
    });
    const envs = modules
      .map(({ url, text }) => ({ url, m: /^import\.meta\.env = (\{.*?\});/m.exec(text) }))
      .filter(({ m }) => m)
      .map(({ url, m }) => ({ url, env: JSON.parse(m[1]) }));
    assert.ok(envs.some(({ url }) => url.includes('/src/lib/powersync.ts')), `powersync.ts loaded: ${modules.map((m) => m.url).join(', ')}`);
    for (const { url, env } of envs) {
      assert.equal(env.VITE_POWERSYNC_URL, buildEnv.VITE_POWERSYNC_URL, url);
      for (const [key, value] of Object.entries(env)) {
        assert.ok(!/DATABASE|SIGNING|API_TOKEN/.test(key), `${url}: import.meta.env.${key}`);
        assert.doesNotMatch(String(value), /postgres(ql)?:\/\//, `${url}: import.meta.env.${key}`);
      }
    }
    for (const { url, text } of modules) {
      assert.ok(!text.includes(buildEnv.VITE_DATABASE_URL), `${url} holds VITE_DATABASE_URL`);
      assert.ok(!text.includes(secrets.apiToken), `${url} holds the API token`);
    }
  } finally {
    await browser.close();
    try {
      process.kill(-vite.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

/**
 * The console errors the scenario causes on purpose: Chromium logs the 503 the test answers to
 * one upload ('server-error') and the 403 to the upload the server refuses ('rejection'), both
 * on /api/sync. Anything else fails the test.
 */
const EXPECTED_ERRORS = {
  'server-error': 'Failed to load resource: the server responded with a status of 503 (Service Unavailable)',
  rejection: 'Failed to load resource: the server responded with a status of 403 (Forbidden)',
};
const expectedError = (m) =>
  m.type === 'error' && m.text === EXPECTED_ERRORS[m.phase] && /\/api\/sync$/.test(m.url ?? '');

/** One user's browser context and page, recording console errors by phase. */
async function openUser(browser, name, appUrl) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  const messages = [];
  let phase = 'start';
  const record = (type, text, url) => messages.push({ at: new Date().toISOString(), phase, type, text, url });
  page.on('console', (m) => record(m.type(), m.text(), m.location()?.url));
  page.on('pageerror', (e) => record('pageerror', e.stack ?? String(e)));
  page.on('crash', () => record('crash', 'page crashed'));
  page.on('worker', (w) => w.on('console', (m) => record(`worker-${m.type()}`, m.text())));
  await page.goto(appUrl);
  return {
    name,
    context,
    page,
    messages,
    setPhase: (p) => (phase = p),
    errors: () =>
      messages.filter((m) => ['error', 'worker-error', 'pageerror', 'crash'].includes(m.type) && !expectedError(m)),
    log: (n = 60) =>
      messages
        .slice(-n)
        .map((m) => `${m.at} [${name}/${m.phase}] ${m.type}: ${m.text}`)
        .join('\n'),
  };
}

/** A request's `streams`: the default streams and the todos of `listId` (Sync Streams). */
const subscribe = (listId) => ({ include_defaults: true, subscriptions: [{ stream: 'list_todos', parameters: { list_id: listId } }] });

const listItem = (page, name) => page.getByTestId('list-item').filter({ hasText: name });
const todoItem = (page, description) =>
  page.getByTestId('todo-item').filter({ has: page.getByTestId('todo-description').getByText(description, { exact: true }) });

async function signUp(user, beforeSubmit) {
  const { page, name } = user;
  await page.getByTestId('auth-mode-toggle').click();
  await page.getByTestId('auth-username').fill(name);
  await page.getByTestId('auth-password').fill(PASSWORD);
  await beforeSubmit?.();
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('current-user').getByText(`@${name}`).waitFor({ timeout: 15_000 });
  // After the first sync an empty account says so (no spinner).
  await page.getByTestId('lists-empty').waitFor({ timeout: 20_000 });
}

async function createList(page, name) {
  await page.getByTestId('new-list-name').fill(name);
  await page.getByTestId('new-list-submit').click();
  await listItem(page, name).waitFor({ timeout: 1000 });
  await page.getByTestId('list-title').getByText(name, { exact: true }).waitFor({ timeout: 1000 });
}

async function addTodo(page, description) {
  await page.getByTestId('new-todo-description').fill(description);
  await page.getByTestId('new-todo-description').press('Enter');
  // Written locally: visible at once, whatever the network does.
  await todoItem(page, description).waitFor({ timeout: 1000 });
}

async function completeTodo(page, description) {
  // A click, not check(): the box shows the local database, which the click's write updates a moment later.
  await todoItem(page, description).getByTestId('todo-toggle').click({ timeout: 1000 });
  await waitForCompleted(page, description, '1', 1000);
}

async function editTodo(page, from, to) {
  await todoItem(page, from).getByTestId('todo-edit').click();
  await page.getByTestId('todo-edit-input').fill(to);
  await page.getByTestId('todo-edit-input').press('Enter');
  await todoItem(page, to).waitFor({ timeout: 1000 });
}

const waitForCompleted = (page, description, flag, timeout) =>
  page
    .locator(`[data-testid="todo-item"][data-completed="${flag}"]`)
    .filter({ has: page.getByTestId('todo-description').getByText(description, { exact: true }) })
    .waitFor({ timeout });

/** Holds every POST /api/sync of `page` until `release()`. */
async function holdUploads(page) {
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const held = { count: 0, release: () => release() };
  await page.route('**/api/sync', async (route) => {
    held.count += 1;
    await gate;
    await route.continue();
  });
  held.unroute = () => page.unroute('**/api/sync');
  return held;
}

test('realtime template: two users in Chromium against riptide serve and realtime-app-server', { timeout: 300_000 }, async (t) => {
  const parts = { service: null, app: null, browser: null, users: [], dbs: null };
  const diagnostics = () =>
    [
      `scratch dir: ${dir}`,
      parts.service && `--- riptide serve (tail) ---\n${parts.service.tail(120)}`,
      parts.app && `--- realtime-app-server (tail) ---\n${parts.app.tail(120)}`,
      ...parts.users.map((u) => `--- browser ${u.name} console (tail) ---\n${u.log(80)}`),
    ]
      .filter(Boolean)
      .join('\n');
  const shots = [];
  const screenshot = async (user, label) => {
    const file = path.join(dir, `screenshot-${user.name}-${label}.png`);
    await user.page.screenshot({ path: file, fullPage: true });
    shots.push(file);
  };
  try {
    // The stack: empty databases, the service (no rules yet), the app's process in its folder.
    const dbs = (parts.dbs = await createEmptyDatabases(names));
    parts.service = startTemplateService({ dir, port: servicePort, dbs, secrets });
    await waitLive(parts.service);
    const appPort = await freePort();
    const appDir = prepareAppDir(path.join(dir, 'app'), distDir);
    parts.app = new AppProcess({
      appDir,
      port: appPort,
      env: appEnv({ dbs, secrets, serviceUrl: parts.service.endpoint, port: appPort }),
      logPath: path.join(dir, 'app.log'),
    }).spawn();
    await parts.app.waitHealthy(60_000);
    // The process deployed its rules: the service now runs them.
    await waitFor(
      async () => {
        const res = await fetch(`${parts.service.endpoint}/api/sync-rules/v1/current`, {
          method: 'GET',
          headers: { Authorization: `Bearer ${secrets.apiToken}` },
        });
        const body = await res.json().catch(() => null);
        return res.ok && JSON.stringify(body).includes('list_members');
      },
      { timeoutMs: 30_000, what: 'the app to deploy sync-rules.yaml' },
    );
    await parts.service.waitReady(60_000);

    parts.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const a = await openUser(parts.browser, 'alice', parts.app.url);
    parts.users.push(a);
    const b = await openUser(parts.browser, 'bob', parts.app.url);
    parts.users.push(b);
    const { source } = dbs;
    const todoRow = (description) => source.query('SELECT * FROM todos WHERE description = $1', [description]);

    // Both sign up; each sees the "No lists yet" empty state after the first sync.
    a.setPhase('signup');
    b.setPhase('signup');
    await signUp(a, () => screenshot(a, '0-sign-up'));
    await signUp(b);

    // A creates a list and todos: they show at once, while the uploads are held (no server round trip).
    a.setPhase('local-first');
    const held = await holdUploads(a.page);
    await createList(a.page, 'Groceries');
    for (const d of ['milk', 'bread', 'eggs']) await addTodo(a.page, d);
    await waitFor(() => held.count >= 1, { timeoutMs: 10_000, what: 'the UI to try to upload (held)' });
    assert.equal((await source.query('SELECT count(*)::int AS n FROM lists')).rows[0].n, 0, 'nothing reached Postgres yet');
    await screenshot(a, '1-local-first-uploads-held');
    held.release();
    await waitFor(async () => (await source.query('SELECT count(*)::int AS n FROM todos')).rows[0].n === 3, {
      timeoutMs: 15_000,
      what: 'the held list and todos to be uploaded',
    });
    await held.unroute();
    const [{ id: groceriesId }] = (await source.query(`SELECT id FROM lists WHERE name = 'Groceries'`)).rows;

    // A shares the list with B: B sees it within 2 s.
    a.setPhase('share');
    b.setPhase('share');
    await a.page.getByTestId('share-username').fill('bob');
    const shareStarted = performance.now();
    await a.page.getByTestId('share-submit').click();
    const shareInPostgres = waitFor(async () => (await source.query('SELECT 1 FROM list_members')).rowCount === 1, {
      timeoutMs: 15_000,
      intervalMs: 10,
      what: 'the membership to reach Postgres',
    });
    await listItem(b.page, 'Groceries').waitFor({ timeout: 15_000 });
    const shareMs = performance.now() - shareStarted;
    t.diagnostic(
      `B sees the list A shared: ${Math.round(shareMs)} ms after A clicked Share ` +
        `(in Postgres after ${Math.round((await shareInPostgres).elapsedMs)} ms)`,
    );
    assert.ok(shareMs < PROPAGATION_LIMIT_MS, `B saw the shared list after ${Math.round(shareMs)} ms`);
    // Sync Streams: the shared list's todos are not on B's device until B opens it.
    const listSync = (page, name) => listItem(page, name).getByTestId('list-sync');
    assert.equal(await listSync(b.page, 'Groceries').getAttribute('data-state'), 'not-downloaded');
    await listItem(b.page, 'Groceries').click();
    for (const d of ['milk', 'bread', 'eggs']) await todoItem(b.page, d).waitFor({ timeout: 5000 });
    await b.page.locator('[data-testid="list-todos-sync"][data-state="synced"]').waitFor({ timeout: 5000 });
    await listSync(b.page, 'Groceries').and(b.page.locator('[data-state="synced"]')).waitFor({ timeout: 5000 });
    await a.page.getByTestId('member-item').filter({ hasText: '@bob' }).waitFor({ timeout: 5000 });
    // B, a member, sees the owner under "Members" too.
    await b.page.locator('[data-testid="member-item"][data-owner="true"]').filter({ hasText: '@alice' }).waitFor({ timeout: 5000 });
    await b.page.getByTestId('member-item').filter({ hasText: '@bob' }).waitFor({ timeout: 5000 });

    // Closed (another list opened) and offline within the TTL: the todos stay on B's device.
    b.setPhase('streams-ttl');
    await createList(b.page, 'Bob list');
    await b.context.setOffline(true);
    assert.equal(await listSync(b.page, 'Groceries').getAttribute('data-state'), 'synced');
    // Offline, so what shows now was on the device already.
    await listItem(b.page, 'Groceries').click();
    for (const d of ['milk', 'bread', 'eggs']) await todoItem(b.page, d).waitFor({ timeout: 1000 });
    await b.context.setOffline(false);
    await b.page.locator('[data-testid="sync-status"][data-state="online"]').waitFor({ timeout: 15_000 });
    await screenshot(b, '2-member-view');

    // A temporary server error (503) is retried, not reported as a refusal.
    a.setPhase('server-error');
    let failed = 0;
    await a.page.route('**/api/sync', (route) =>
      failed++ === 0
        ? route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":{"code":"unavailable","message":"try again"}}' })
        : route.continue(),
    );
    await addTodo(a.page, 'butter');
    await waitFor(async () => (await todoRow('butter')).rowCount === 1, { timeoutMs: 15_000, what: 'the retried upload' });
    assert.equal(failed >= 2, true, 'the upload was retried after the 503');
    assert.equal(await a.page.getByTestId('rejection-banner').count(), 0, 'a 503 was shown as a refusal');
    await a.page.unroute('**/api/sync');

    // A private list, never shared.
    a.setPhase('private');
    await createList(a.page, 'Private');
    await addTodo(a.page, 'secret plans');
    await waitFor(async () => (await todoRow('secret plans')).rowCount === 1, { timeoutMs: 15_000, what: 'the private todo to be uploaded' });
    const [{ id: privateListId }] = (await source.query(`SELECT id FROM lists WHERE name = 'Private'`)).rows;
    const [{ id: secretTodoId }] = (await todoRow('secret plans')).rows;
    await listItem(a.page, 'Groceries').click();

    // A goes offline: A's changes show at once; B does not get them yet.
    a.setPhase('offline');
    await a.context.setOffline(true);
    await a.page.locator('[data-testid="sync-status"][data-state="offline"]').waitFor({ timeout: 2000 });
    await addTodo(a.page, 'apples');
    await addTodo(a.page, 'pears');
    await completeTodo(a.page, 'apples');
    await completeTodo(a.page, 'milk');
    await a.page.getByTestId('sync-pending').waitFor({ timeout: 1000 });
    await screenshot(a, '2-offline-changes');
    // Give B a moment in which it would have seen an upload (it takes well under a second online).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal((await todoRow('apples')).rowCount, 0, 'an offline change reached Postgres');
    assert.equal(await todoItem(b.page, 'apples').count(), 0, 'B saw an offline change of A');
    await waitForCompleted(b.page, 'milk', '0', 1000);

    // A comes back online: B sees everything within 2 s.
    a.setPhase('reconnect');
    // A raw stream as B (B's own token) times the service apart from the SDK and the UI.
    const bWatchToken = await b.page.evaluate(async () => (await (await fetch('/api/powersync/token')).json()).token);
    // A's last offline change (milk completed), the one B's UI waits for last.
    const rawB = watchSyncStream(parts.service.endpoint, bWatchToken, (op) => {
      const row = typeof op.data === 'string' ? JSON.parse(op.data) : op.data;
      return row?.description === 'milk' && (row.completed === 1 || row.completed === true);
    }, { streams: subscribe(groceriesId) });
    // Let the raw stream reach its first checkpoint before the change.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const onlineAt = performance.now();
    await a.context.setOffline(false);
    const offlineInPostgres = waitFor(async () => (await todoRow('milk')).rows[0]?.completed === true, {
      timeoutMs: 15_000,
      intervalMs: 10,
      what: "A's offline changes to reach Postgres",
    });
    await Promise.all([
      waitForCompleted(b.page, 'apples', '1', 15_000),
      todoItem(b.page, 'pears').waitFor({ timeout: 15_000 }),
      waitForCompleted(b.page, 'milk', '1', 15_000),
    ]);
    const reconnectMs = performance.now() - onlineAt;
    const rawMs = await withDeadline(rawB.seen, 15_000, "the raw stream to carry A's change").then((at) => at - onlineAt);
    rawB.close();
    t.diagnostic(
      `B sees A's offline changes: ${Math.round(reconnectMs)} ms after A came back online ` +
        `(the last of them in Postgres after ${Math.round((await offlineInPostgres).elapsedMs)} ms, ` +
        `on a raw sync stream as B after ${Math.round(rawMs)} ms)`,
    );
    assert.ok(reconnectMs < PROPAGATION_LIMIT_MS, `B saw A's offline changes after ${Math.round(reconnectMs)} ms`);

    // Both edit the same todo offline; once online both converge to the last written value.
    a.setPhase('conflict');
    b.setPhase('conflict');
    await a.context.setOffline(true);
    await b.context.setOffline(true);
    await editTodo(a.page, 'bread', 'bread (alice)');
    await editTodo(b.page, 'bread', 'bread (bob)');
    await a.context.setOffline(false);
    await waitFor(async () => (await todoRow('bread (alice)')).rowCount === 1, { timeoutMs: 15_000, what: "A's edit to be uploaded" });
    await b.context.setOffline(false);
    await waitFor(async () => (await todoRow('bread (bob)')).rowCount === 1, { timeoutMs: 15_000, what: "B's edit to be uploaded" });
    for (const u of [a, b]) {
      await todoItem(u.page, 'bread (bob)').waitFor({ timeout: 15_000 });
      await waitFor(async () => (await todoItem(u.page, 'bread (alice)').count()) === 0, {
        timeoutMs: 15_000,
        what: `${u.name} to drop the overwritten value`,
      });
    }
    assert.equal((await todoRow('bread (alice)')).rowCount, 0);

    // A reload while offline still shows everything.
    a.setPhase('offline-reload');
    await a.context.setOffline(true);
    // The app's service worker holds the built files (registered on the first visit).
    await withDeadline(a.page.evaluate(() => navigator.serviceWorker.ready.then((r) => r.active != null)), 10_000, 'the service worker');
    await a.page.reload();
    assert.ok(await a.page.evaluate(() => navigator.serviceWorker.controller != null), 'the offline reload came from the service worker');
    await a.page.getByTestId('current-user').getByText('@alice').waitFor({ timeout: 15_000 });
    await listItem(a.page, 'Private').waitFor({ timeout: 10_000 });
    await listItem(a.page, 'Groceries').click();
    for (const d of ['milk', 'bread (bob)', 'eggs', 'apples', 'pears']) await todoItem(a.page, d).waitFor({ timeout: 10_000 });
    await waitForCompleted(a.page, 'apples', '1', 1000);
    await screenshot(a, '3-reloaded-offline');
    await a.context.setOffline(false);
    await a.page.locator('[data-testid="sync-status"][data-state="online"]').waitFor({ timeout: 15_000 });

    // B cannot read A's unshared list, through the UI or a hand-made sync stream request.
    a.setPhase('isolation');
    b.setPhase('isolation');
    assert.equal(await listItem(b.page, 'Private').count(), 0, "B's UI shows A's private list");
    // B's own sync token, as B's browser gets it.
    const bToken = await b.page.evaluate(async () => (await (await fetch('/api/powersync/token')).json()).token);
    // Also subscribed to the private list's todos by hand (Sync Streams): the rules grant none.
    for (const [parameters, streams] of [
      [undefined, undefined],
      [{ list_id: privateListId, user_id: 'anyone' }, subscribe(privateListId)],
      [undefined, { include_defaults: true, subscriptions: [subscribe(groceriesId).subscriptions[0], subscribe(privateListId).subscriptions[0]] }],
    ]) {
      const stream = await readSyncStream(parts.service.endpoint, bToken, { parameters, streams });
      assert.equal(stream.status, 200, `B's sync stream: ${stream.body}`);
      const ids = new Set(stream.ops.map((op) => op.object_id));
      assert.ok(ids.has(groceriesId), "B's stream holds the shared list (the reader works)");
      assert.ok(!ids.has(privateListId) && !ids.has(secretTodoId), "B's stream holds A's private rows");
      assert.ok(!JSON.stringify(stream.ops).includes('secret plans'), "B's stream holds A's private todo text");
    }

    // ... nor write it: every hand-made upload touching it is refused, and Postgres is unchanged.
    const snapshot = async () =>
      JSON.stringify([
        (await source.query('SELECT * FROM lists WHERE id = $1', [privateListId])).rows,
        (await source.query('SELECT * FROM todos WHERE list_id = $1 ORDER BY id', [privateListId])).rows,
        (await source.query('SELECT * FROM list_members WHERE list_id = $1 ORDER BY id', [privateListId])).rows,
      ]);
    const before = await snapshot();
    const bUser = (await source.query(`SELECT id FROM users WHERE username = 'bob'`)).rows[0].id;
    const attempts = {
      'edit A’s private todo': [{ op: 'PATCH', type: 'todos', id: secretTodoId, data: { description: 'hacked' } }],
      'add a todo to A’s private list': [
        {
          op: 'PUT',
          type: 'todos',
          id: '6d1e4a1c-0000-4000-8000-00000000b0b1',
          data: { list_id: privateListId, description: 'hacked', completed: 0, created_by: bUser },
        },
      ],
      'rename A’s private list': [{ op: 'PATCH', type: 'lists', id: privateListId, data: { name: 'hacked' } }],
      'delete A’s private list': [{ op: 'DELETE', type: 'lists', id: privateListId }],
      'delete A’s private todo': [{ op: 'DELETE', type: 'todos', id: secretTodoId }],
      'take over A’s private list': [{ op: 'PUT', type: 'lists', id: privateListId, data: { name: 'mine', owner_id: bUser } }],
      'add themselves as a member': [
        {
          op: 'PUT',
          type: 'list_members',
          id: '6d1e4a1c-0000-4000-8000-00000000b0b2',
          data: { list_id: privateListId, user_id: bUser },
        },
      ],
    };
    // Made by hand from here (not the browser), with B's session cookie.
    const bCookie = (await b.context.cookies(parts.app.url)).map((c) => `${c.name}=${c.value}`).join('; ');
    assert.match(bCookie, /session=/);
    let opId = 10_000;
    for (const [what, entries] of Object.entries(attempts)) {
      const batch = entries.map((e) => ({ ...e, op_id: ++opId, tx_id: opId }));
      const r = await fetch(`${parts.app.url}/api/sync`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Cookie: bCookie, Origin: parts.app.url },
        body: JSON.stringify({ batch }),
      });
      const res = { status: r.status, body: await r.text() };
      assert.equal(res.status, 403, `B may not ${what}: ${res.status} ${res.body}`);
    }
    assert.equal(await snapshot(), before, 'Postgres changed after refused uploads');
    assert.equal((await todoRow('hacked')).rowCount, 0);

    // A change the server refuses for good (B edits offline; meanwhile A stops sharing the list
    // with B): B is told what was refused and why, and B's later changes still go through.
    a.setPhase('rejection');
    b.setPhase('rejection');
    await b.context.setOffline(true);
    await editTodo(b.page, 'eggs', 'eggs (bob, offline)');
    await a.page.getByTestId('member-item').filter({ hasText: '@bob' }).getByRole('button').click();
    await waitFor(async () => (await source.query('SELECT 1 FROM list_members WHERE user_id = $1', [bUser])).rowCount === 0, {
      timeoutMs: 15_000,
      what: "A's unsharing to be uploaded",
    });
    await b.context.setOffline(false);
    const banner = b.page.getByTestId('rejection-banner');
    await banner.waitFor({ timeout: 15_000 });
    assert.match(await banner.innerText(), /eggs \(bob, offline\)/);
    await listItem(b.page, 'Groceries').waitFor({ state: 'detached', timeout: 15_000 });
    assert.equal((await todoRow('eggs')).rowCount, 1, "the refused edit did not reach Postgres");
    await screenshot(b, '5-rejected-change');
    await b.page.getByTestId('rejection-dismiss').click();
    await banner.waitFor({ state: 'detached', timeout: 1000 });
    await createList(b.page, 'Bob’s own');
    await waitFor(async () => (await source.query(`SELECT 1 FROM lists WHERE name = 'Bob’s own'`)).rowCount === 1, {
      timeoutMs: 15_000,
      what: "B's next change to be uploaded (the queue is not blocked)",
    });

    // Signing out deletes A's local data; B signing in on the same browser sees only B's lists.
    a.setPhase('sign-out');
    await a.page.getByTestId('sign-out').click();
    await a.page.getByTestId('auth-username').fill('bob');
    await a.page.getByTestId('auth-password').fill(PASSWORD);
    await a.page.getByTestId('auth-submit').click();
    await a.page.getByTestId('current-user').getByText('@bob').waitFor({ timeout: 15_000 });
    await listItem(a.page, 'Bob’s own').waitFor({ timeout: 15_000 });
    assert.equal(await listItem(a.page, 'Private').count(), 0, "B sees A's local data after A signed out");
    assert.equal(await listItem(a.page, 'Groceries').count(), 0, "B sees A's local data after A signed out");

    // Nothing went wrong in either browser.
    await screenshot(a, '4-final');
    await screenshot(b, '4-final');
    for (const u of [a, b]) {
      const errors = u.errors();
      assert.deepEqual(
        errors.map((m) => `[${m.phase}] ${m.type}: ${m.text}`),
        [],
        `console errors in ${u.name}'s browser`,
      );
    }
    console.log(`# screenshots:\n${shots.map((f) => `#   ${f}`).join('\n')}`);
  } catch (e) {
    if (shots.length) console.log(`# screenshots:\n${shots.map((f) => `#   ${f}`).join('\n')}`);
    for (const u of parts.users) {
      await u.page
        .screenshot({ path: path.join(dir, `screenshot-${u.name}-failure.png`), fullPage: true })
        .then(() => console.log(`#   ${path.join(dir, `screenshot-${u.name}-failure.png`)}`))
        .catch(() => {});
    }
    try {
      e.message = `${e.message}\n\n${diagnostics()}`;
    } catch {
      console.error(diagnostics());
    }
    throw e;
  } finally {
    await parts.browser?.close().catch(() => {});
    await parts.app?.stop().catch(() => {});
    await parts.service?.stop(3000).catch(() => {});
    await parts.dbs?.drop().catch(() => {});
  }
});
