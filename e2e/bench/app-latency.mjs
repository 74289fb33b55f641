// Benchmark helper for `riptide-bench --scenario app-latency`: the realtime app template
// (templates/realtime) as two users run it in Chromium, against `riptide serve` and the template's
// process (realtime-app-server) on fresh databases of the cluster at RIPTIDE_TEST_PG_URL. A
// shares a list with B; then A adds COUNT todos, one at a time, each once B shows the last one.
// Every step of each todo's path is timestamped (epoch ms, one machine clock):
//
//   t0          A presses Enter (a keydown listener in A's page)
//   local       the todo in A's SQLite (A's db.onChange)
//   request     POST /api/sync received (the template process's tower_http debug log)
//   commit      the upload committed to Postgres (its "upload applied" log line)
//   replicated  the service's storage commit (riptide_replication's "transactions committed")
//   sent        the todo on a sync stream as B (a raw NDJSON stream with B's token, B's
//               subscriptions: what the service sends B's browser, read beside it)
//   applied     the todo in B's SQLite (B's db.onChange)
//   rendered    the todo on B's screen (a MutationObserver in B's page, then the next frame)
//
// The UI is built with VITE_POWERSYNC_EXPOSE_DB=true (window.powersyncDb). Chromium comes from
// RIPTIDE_CHROMIUM or /usr/bin/chromium; without it the script prints {"skipped": reason}.
// Prints one JSON line: {"samples": [{step: ms since t0, ...}], "settings": {...}}.
import fs from 'node:fs';
import path from 'node:path';
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
  prepareAppDir,
  startTemplateService,
  syncStreamLines,
  waitLive,
} from '../lib/template.js';
import { withDeadline } from '../lib/wait.js';

const COUNT = Number(process.env.COUNT ?? 50);
const PASSWORD = 'correct horse battery';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

if (!fs.existsSync(CHROMIUM)) {
  console.log(JSON.stringify({ skipped: `no Chromium at ${CHROMIUM} (apt-get install chromium, or set RIPTIDE_CHROMIUM)` }));
  process.exit(0);
}

/** Epoch ms of a tracing-subscriber log line's timestamp (microseconds kept). */
function logTime(line) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z/.exec(line);
  if (!m) return null;
  return Date.parse(`${m[1]}Z`) + (m[2] ? Number(m[2]) * 1000 : 0);
}

/** The times of the log lines of `text` that contain every one of `needles`. */
const logTimes = (text, ...needles) =>
  text
    .split('\n')
    .filter((l) => needles.every((n) => l.includes(n)))
    .map(logTime)
    .filter((t) => t != null);

/** The first time in `times` at or after `t`. */
const firstAfter = (times, t) => times.find((x) => x >= t) ?? null;

// In each page: the times the page saw each todo, by description.
const PAGE_PROBES = () => {
  const now = () => performance.timeOrigin + performance.now();
  window.__seen = { keydown: [], local: {}, rendered: {} };
  document.addEventListener(
    'keydown',
    (e) => {
      if (e.key === 'Enter' && e.target?.dataset?.testid === 'new-todo-description') {
        window.__seen.keydown.push({ at: now(), text: e.target.value });
      }
    },
    true,
  );
  const watchDb = () => {
    const db = window.powersyncDb;
    if (!db) return setTimeout(watchDb, 20);
    db.onChange(
      {
        onChange: async () => {
          const at = now();
          const rows = await db.getAll('SELECT description FROM todos');
          for (const r of rows) window.__seen.local[r.description] ??= at;
        },
      },
      { tables: ['todos'], throttleMs: 0 },
    );
  };
  watchDb();
  new MutationObserver(() => {
    const at = now();
    for (const el of document.querySelectorAll('[data-testid="todo-description"]')) {
      const text = el.textContent;
      if (text && !(text in window.__seen.rendered)) {
        window.__seen.rendered[text] = at;
        // Painted: the frame after the DOM change.
        requestAnimationFrame(() => {
          window.__seen.rendered[text] = now();
          window.__rendered?.(text);
        });
      }
    }
  }).observe(document, { childList: true, subtree: true, characterData: true });
};

/** A raw NDJSON sync stream: the arrival time of each todo description in a data line. */
function rawStream(endpoint, token, streams) {
  const seen = {};
  const controller = new AbortController();
  const done = (async () => {
    const lines = syncStreamLines(endpoint, token, { streams, clientId: 'bench-raw-b', signal: controller.signal });
    for await (const { msg, at } of lines) {
      for (const op of msg.data?.data ?? []) {
        const row = typeof op.data === 'string' ? JSON.parse(op.data) : op.data;
        if (row?.description) seen[row.description] ??= performance.timeOrigin + at;
      }
    }
  })().catch(() => {});
  return { seen, close: () => controller.abort(), done };
}

const dir = scratchDir('bench-app-latency');
const parts = { service: null, app: null, browser: null, dbs: null, raw: null };
try {
  const secrets = appSecrets();
  const names = databaseNames('applat');
  const servicePort = await freePort();
  const distDir = path.join(dir, 'dist');
  await buildTemplateUi(distDir, {
    VITE_POWERSYNC_URL: `http://127.0.0.1:${servicePort}`,
    VITE_POWERSYNC_TOKEN_ENDPOINT: '/api/powersync/token',
    VITE_POWERSYNC_EXPOSE_DB: 'true',
  });
  const dbs = (parts.dbs = await createEmptyDatabases(names));
  // The storage commits, with their times (debug lines cost nothing unless enabled).
  process.env.RUST_LOG = 'info,riptide_replication::stream=debug';
  parts.service = startTemplateService({ dir, port: servicePort, dbs, secrets });
  await waitLive(parts.service);
  const appPort = await freePort();
  parts.app = new AppProcess({
    appDir: prepareAppDir(path.join(dir, 'app'), distDir),
    port: appPort,
    env: { ...appEnv({ dbs, secrets, serviceUrl: parts.service.endpoint, port: appPort }), RUST_LOG: 'info,tower_http=debug' },
  }).spawn();
  await parts.app.waitHealthy(60_000);
  await parts.service.waitReady(60_000);

  parts.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const open = async (name) => {
    const context = await parts.browser.newContext({ viewport: { width: 1100, height: 760 } });
    const page = await context.newPage();
    await page.addInitScript(PAGE_PROBES);
    await page.goto(parts.app.url);
    await page.getByTestId('auth-mode-toggle').click();
    await page.getByTestId('auth-username').fill(name);
    await page.getByTestId('auth-password').fill(PASSWORD);
    await page.getByTestId('auth-submit').click();
    await page.getByTestId('current-user').getByText(`@${name}`).waitFor({ timeout: 15_000 });
    await page.getByTestId('lists-empty').waitFor({ timeout: 20_000 });
    return page;
  };
  const a = await open('alice');
  const b = await open('bob');
  // B's page says when a todo is painted (pushed, not polled: polling would load this process,
  // which also reads the raw stream).
  const painted = new Map();
  await b.exposeFunction('__rendered', (text) => painted.get(text)?.());
  const listItem = (page, name) => page.getByTestId('list-item').filter({ hasText: name });

  await a.getByTestId('new-list-name').fill('Shared');
  await a.getByTestId('new-list-submit').click();
  await listItem(a, 'Shared').waitFor({ timeout: 5000 });
  await a.getByTestId('share-username').fill('bob');
  await a.getByTestId('share-submit').click();
  await listItem(b, 'Shared').waitFor({ timeout: 15_000 });
  await listItem(b, 'Shared').click();
  await b.locator('[data-testid="list-todos-sync"][data-state="synced"]').waitFor({ timeout: 15_000 });
  const [{ id: listId }] = (await dbs.source.query(`SELECT id FROM lists WHERE name = 'Shared'`)).rows;
  const bToken = await b.evaluate(async () => (await (await fetch('/api/powersync/token')).json()).token);
  parts.raw = rawStream(parts.service.endpoint, bToken, {
    include_defaults: true,
    subscriptions: [{ stream: 'list_todos', parameters: { list_id: listId } }],
  });

  const descriptions = [];
  for (let i = 1; i <= COUNT; i++) {
    const text = `todo ${i} ${Math.random().toString(36).slice(2, 8)}`;
    descriptions.push(text);
    // Apart by a random 50-150 ms, so nothing periodic lines up with the writes.
    await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100));
    await a.getByTestId('new-todo-description').fill(text);
    const shown = new Promise((resolve) => painted.set(text, resolve));
    await a.getByTestId('new-todo-description').press('Enter');
    await withDeadline(shown, 15_000, `todo ${i} on B's screen`);
  }

  const [seenA, seenB] = await Promise.all([a.evaluate(() => window.__seen), b.evaluate(() => window.__seen)]);
  const appLog = parts.app.output;
  const serviceLog = parts.service.logs();
  const requests = logTimes(appLog, 'started processing request', '/api/sync');
  const commits = logTimes(appLog, 'upload applied');
  const replicated = logTimes(serviceLog, 'transactions committed');
  const samples = descriptions.map((text) => {
    const t0 = seenA.keydown.find((k) => k.text === text)?.at;
    if (t0 == null) return null;
    const rel = (t) => (t == null ? null : Math.round((t - t0) * 100) / 100);
    const request = firstAfter(requests, t0);
    return {
      local: rel(seenA.local[text]),
      request: rel(request),
      commit: rel(firstAfter(commits, t0)),
      // After the request, not after the commit's log line: the process may log that a moment
      // after the replicator already stored the change.
      replicated: rel(request == null ? null : firstAfter(replicated, request)),
      sent: rel(parts.raw.seen[text]),
      applied: rel(seenB.local[text]),
      rendered: rel(seenB.rendered[text]),
    };
  });
  console.log(JSON.stringify({ samples: samples.filter(Boolean), written: COUNT }));
} finally {
  parts.raw?.close();
  await parts.browser?.close().catch(() => {});
  await parts.app?.stop().catch(() => {});
  await parts.service?.stop(3000).catch(() => {});
  await parts.dbs?.drop().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
