// The official @powersync/web SDK (2.4.0, built with Vite) in headless Chromium, over both
// transports (connectionMethod 'http' = BSON stream over fetch, 'web-socket' = RSocket): first
// sync, a live change, a local write uploaded with the write-checkpoint gate releasing, a token
// that expires mid-stream, and a service restart. The page is served from another origin than the
// service (CORS). Any console error or page error fails the test, except the few listed in
// EXPECTED_ERRORS, which the SDK logs while the service is down.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before } from 'node:test';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { sourceRows } from '../lib/postgres.js';
import { localRows } from '../lib/client.js';
import { buildWebPage, launchChromium, openWebClient, serveStatic } from '../lib/browser.js';
import { waitFor, withDeadline } from '../lib/wait.js';

let distDir;
let site;

before(async () => {
  const started = performance.now();
  distDir = await buildWebPage();
  site = await serveStatic(distDir);
  console.log(`# vite build of e2e/web: ${Math.round(performance.now() - started)} ms`);
});

after(async () => {
  await site?.close();
  if (distDir) fs.rmSync(distDir, { recursive: true, force: true });
});

/**
 * Console errors that are expected, by transport and phase: only while the service is killed and
 * restarting, the SDK logs (at error level) the stream that broke when the process died and each
 * refused reconnect attempt of its retry loop during the second the service stays down. Matched
 * against the first line of the message (the rest is the stack). Nothing else may appear.
 */
const EXPECTED_ERRORS = {
  http: {
    restart: [
      // The body of the open stream fails when the process dies.
      /^\[PowerSync\]: Sync error TypeError: network error$/,
      // A reconnect attempt to the closed port.
      /^\[PowerSync\]: Sync error TypeError: Failed to fetch$/,
    ],
  },
  'web-socket': {
    restart: [
      // The RSocket connection closes when the process dies.
      /^\[PowerSync\]: RSocket error Error: Closed\. Original cause \[Error: WebsocketDuplexConnection: Socket closed unexpectedly\.\]\.$/,
      // A reconnect attempt to the closed port: the handshake fails, then the sync loop logs it
      // (the error object is a separate console argument, not part of the text).
      /^\[PowerSync\]: Failed to connect WebSocket$/,
      /^\[PowerSync\]: Sync error$/,
    ],
  },
};

const unexpectedErrors = (method, messages) =>
  messages.filter(
    (m) =>
      (m.type === 'error' || m.type === 'pageerror' || m.type === 'crash') &&
      !(EXPECTED_ERRORS[method][m.phase] ?? []).some((re) => re.test(m.text.split('\n')[0])),
  );

for (const method of ['http', 'web-socket']) {
  e2eTest(`@powersync/web in Chromium over ${method}`, async (ctx, t) => {
    const { source } = await ctx.databases();
    await source.query(`
      INSERT INTO lists (id, name, owner_id) VALUES ('l-u1-a', 'Groceries', 'u1'), ('l-u2-a', 'Secret', 'u2');
      INSERT INTO todos (list_id, description, created_by) VALUES
        ('l-u1-a', 'milk', 'u1'), ('l-u1-a', 'bread', 'u1'), ('l-u2-a', 'not for u1', 'u2');
    `);
    const service = await ctx.startService({ rules: PER_USER_RULES });
    const browser = await launchChromium();
    // The first token expires a few seconds into the stream; later ones live an hour.
    let tokens = 0;
    let firstExpMs;
    let secondTokenAt;
    const getToken = () => {
      tokens += 1;
      const now = Math.floor(Date.now() / 1000);
      if (tokens === 1) firstExpMs = (now + 5) * 1000;
      if (tokens === 2) secondTokenAt = Date.now();
      return ctx.token('u1', tokens === 1 ? { iat: now, exp: now + 5 } : {});
    };
    let web;
    // Closed by the harness's cleanup; its log goes into the failure report.
    ctx.clients.push({
      name: `web-${method}`,
      logger: { tail: () => web?.log(120) ?? '(page not opened)' },
      db: {
        close: async () => {
          await web?.close().catch(() => {});
          await browser.close();
        },
      },
    });
    web = await openWebClient({
      context: browser.context,
      pageUrl: site.url,
      endpoint: service.endpoint,
      getToken,
      sourcePool: source,
      name: `web-${method}`,
    });
    const db = { getAll: (sql, params) => web.query(sql, params) };
    const expectLocalEqualsSource = async (msg) => {
      assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`), `${msg}: lists`);
      assert.deepEqual(await localRows(db, 'todos'), await sourceRows(source, 'todos', `created_by = 'u1'`), `${msg}: todos`);
    };
    const waitForRow = (id, what, timeoutMs = 20_000) =>
      waitFor(async () => (await web.query('SELECT id FROM todos WHERE id = ?', [id])).length === 1, {
        timeoutMs,
        intervalMs: 50,
        what,
      });
    const insertTodo = (id, description) =>
      source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', $2, 'u1')`, [
        id,
        description,
      ]);

    // First sync.
    web.setPhase('first-sync');
    const started = performance.now();
    await web.connect(method);
    await web.waitForFirstSync(30_000);
    t.diagnostic(`first sync: ${Math.round(performance.now() - started)} ms`);
    await expectLocalEqualsSource('after first sync');
    assert.equal((await localRows(db, 'todos')).length, 2);

    // Live change.
    web.setPhase('live');
    const liveId = '00000000-0000-4000-8000-0000000000b1';
    await insertTodo(liveId, 'eggs');
    const { elapsedMs } = await waitForRow(liveId, 'a live insert');
    t.diagnostic(`Postgres commit → visible in the browser: ${Math.round(elapsedMs)} ms`);

    // The first token is about to expire: the service warns while it is still valid (half its
    // lifetime before exp), the SDK fetches a new one and restarts its stream with it, so no
    // stream runs into the expiry; a change made after the expiry still arrives.
    web.setPhase('token-expiry');
    await waitFor(() => tokens >= 2, { timeoutMs: 20_000, what: 'the SDK to fetch a new token' });
    assert.ok(secondTokenAt < firstExpMs, `the new token was fetched ${secondTokenAt - firstExpMs} ms after the first expired`);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExpMs - Date.now())));
    const lateId = '00000000-0000-4000-8000-0000000000b2';
    await insertTodo(lateId, 'after expiry');
    await waitForRow(lateId, 'a change made after the token expired');

    // Local write: uploaded, applied to Postgres, back with its server-side created_at once the
    // write checkpoint released the gate; then a server-side change still arrives.
    web.setPhase('upload');
    await web.execute(
      `INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (uuid(), 'l-u1-a', 'written in the browser', 0, 'u1')`,
    );
    const [{ id: localId }] = await web.query(`SELECT id FROM todos WHERE description = 'written in the browser'`);
    await waitFor(async () => (await source.query('SELECT 1 FROM todos WHERE id = $1', [localId])).rowCount === 1, {
      timeoutMs: 15_000,
      what: 'the browser write to be uploaded',
    });
    await waitFor(
      async () => (await web.query('SELECT created_at FROM todos WHERE id = ?', [localId]))[0]?.created_at != null,
      { timeoutMs: 15_000, intervalMs: 50, what: 'the uploaded row to come back with its server-side created_at' },
    );
    await waitFor(async () => (await web.query('SELECT count(*) AS n FROM ps_crud'))[0].n === 0, {
      timeoutMs: 15_000,
      what: 'ps_crud to drain',
    });
    const afterUploadId = '00000000-0000-4000-8000-0000000000b3';
    await insertTodo(afterUploadId, 'after the upload');
    await waitForRow(afterUploadId, 'a server-side change after the upload');
    await expectLocalEqualsSource('after the upload');

    // Service restart: kill it, change Postgres and write locally while it is down, start it
    // again on the same config and port; the client reconnects, uploads and converges.
    web.setPhase('restart');
    const exit = await service.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL', `service exited on its own: ${JSON.stringify(exit)}`);
    const downId = '00000000-0000-4000-8000-0000000000b4';
    await insertTodo(downId, 'while the service was down');
    await source.query(`UPDATE todos SET description = 'milk (edited while down)' WHERE description = 'milk'`);
    await web.execute(
      `INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (uuid(), 'l-u1-a', 'written offline', 0, 'u1')`,
    );
    // Stay down long enough for a few reconnect attempts (retryDelayMs is 250 ms) to be refused.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const restartedAt = performance.now();
    service.spawn();
    await service.waitReady(60_000);
    await waitForRow(downId, 'the change made while the service was down', 30_000);
    web.setPhase('after-restart');
    t.diagnostic(`restart → change made while down visible: ${Math.round(performance.now() - restartedAt)} ms`);
    await waitFor(async () => (await source.query(`SELECT 1 FROM todos WHERE description = 'written offline'`)).rowCount === 1, {
      timeoutMs: 20_000,
      what: 'the write made while the service was down to be uploaded',
    });
    const finalId = '00000000-0000-4000-8000-0000000000b5';
    await insertTodo(finalId, 'after the restart');
    await waitForRow(finalId, 'a change after the restart');
    await waitFor(
      async () => {
        const crud = (await web.query('SELECT count(*) AS n FROM ps_crud'))[0].n;
        const pending = await web.query(`SELECT id FROM todos WHERE created_at IS NULL`);
        return crud === 0 && pending.length === 0;
      },
      { timeoutMs: 20_000, what: 'uploads to drain and come back' },
    );
    await expectLocalEqualsSource('after the restart');
    // Two seeded, eggs, after expiry, browser write, after the upload, while down, offline, final.
    assert.equal((await localRows(db, 'todos')).length, 9);

    // The transport asked for is the one the service served, and the SDK logged no error.
    const log = service.logs().replace(/\x1B\[[0-9;]*m/g, '');
    const transport = method === 'http' ? 'http' : 'websocket';
    assert.match(log, new RegExp(`transport="${transport}"`), `the service served a ${transport} stream`);
    assert.doesNotMatch(log, new RegExp(`transport="${transport === 'http' ? 'websocket' : 'http'}"`));
    assert.doesNotMatch(log, /reason="token expired"/, 'a stream ran until its token expired');
    const status = await web.status();
    t.diagnostic(`credential fetches: ${status.credentialRequests}; console messages: ${web.messages.length}`);
    for (const m of web.messages.filter((m) => m.type === 'error' && m.phase === 'restart')) {
      t.diagnostic(`expected while restarting: ${m.text.split('\n')[0]}`);
    }
    const bad = unexpectedErrors(method, web.messages);
    assert.deepEqual(
      bad.map((m) => `[${m.phase}] ${m.type}: ${m.text}`),
      [],
      'no unexpected console errors on the page',
    );
    await withDeadline(web.close(), 10_000, 'closing the web database');
  });
}
