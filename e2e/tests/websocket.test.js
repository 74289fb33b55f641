// The official client over RSocket on a WebSocket (connectionMethod 'web-socket', the default of
// older @powersync/web releases and React Native): first sync, live changes, an upload released
// by the write-checkpoint gate, and a token that expires mid-stream (the SDK fetches a new one and
// loses nothing).
import assert from 'node:assert/strict';
import { SyncStreamConnectionMethod } from '@powersync/node';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { sourceRows } from '../lib/postgres.js';
import { crudCount, localRows, waitForLocal } from '../lib/client.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const WS = { connectionMethod: SyncStreamConnectionMethod.WEB_SOCKET };

e2eTest('official client over WebSocket (RSocket)', async (ctx, t) => {
  const { source } = await ctx.databases();
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('l-u1-a', 'Groceries', 'u1'), ('l-u2-a', 'Secret', 'u2');
    INSERT INTO todos (list_id, description, created_by) VALUES
      ('l-u1-a', 'milk', 'u1'), ('l-u1-a', 'bread', 'u1'), ('l-u2-a', 'not for u1', 'u2');
  `);
  const service = await ctx.startService({ rules: PER_USER_RULES });
  // The first token expires a few seconds into the stream; later ones live an hour.
  let tokens = 0;
  let firstExpMs;
  let secondTokenAt;
  const getToken = () => {
    tokens += 1;
    const now = Math.floor(Date.now() / 1000);
    if (tokens === 1) firstExpMs = (now + 4) * 1000;
    if (tokens === 2) secondTokenAt = Date.now();
    return ctx.token('u1', tokens === 1 ? { iat: now, exp: now + 4 } : {});
  };
  const alice = await ctx.client('alice', 'u1', service, { getToken, syncOptions: WS });
  const { db } = alice;
  const firstTokenAt = Date.now();
  await alice.connect();
  await withDeadline(db.waitForFirstSync(), 30_000, 'waitForFirstSync over WebSocket');
  const expectLocalEqualsSource = async (msg) => {
    assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`), `${msg}: lists`);
    assert.deepEqual(await localRows(db, 'todos'), await sourceRows(source, 'todos', `created_by = 'u1'`), `${msg}: todos`);
  };
  await expectLocalEqualsSource('after first sync');
  assert.equal((await localRows(db, 'todos')).length, 2);

  // Live change.
  const id = '00000000-0000-4000-8000-0000000000a1';
  await source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', 'eggs', 'u1')`, [id]);
  const { elapsedMs } = await waitForLocal(db, 'SELECT description FROM todos WHERE id = ?', [id], (r) => r.length === 1, {
    timeoutMs: 15_000,
    what: 'a live insert over WebSocket',
  });
  t.diagnostic(`Postgres commit → visible over WebSocket: ${Math.round(elapsedMs)} ms`);

  // The first token is about to expire: the service warns while it is still valid (half its
  // lifetime before exp), the SDK fetches a new token and restarts its stream with it, so no
  // stream runs into the expiry; a change made after the expiry still arrives.
  await waitFor(() => tokens >= 2, { timeoutMs: 20_000, what: 'the SDK to fetch a new token' });
  assert.ok(secondTokenAt < firstExpMs, `the new token was fetched ${secondTokenAt - firstExpMs} ms after the first expired`);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExpMs - Date.now())));
  const late = '00000000-0000-4000-8000-0000000000a2';
  await source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', 'after expiry', 'u1')`, [late]);
  await waitForLocal(db, 'SELECT id FROM todos WHERE id = ?', [late], (r) => r.length === 1, {
    timeoutMs: 20_000,
    what: 'a change made after the token expired',
  });

  // Local write: uploaded, applied to Postgres, then visible with its server-side created_at only
  // once the write checkpoint released the gate.
  await db.execute(`INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (uuid(), 'l-u1-a', 'written locally', 0, 'u1')`);
  const localId = (await db.get(`SELECT id FROM todos WHERE description = 'written locally'`)).id;
  await waitFor(async () => (await source.query('SELECT 1 FROM todos WHERE id = $1', [localId])).rowCount === 1, {
    timeoutMs: 15_000,
    what: 'the local insert to be uploaded',
  });
  await waitForLocal(db, 'SELECT created_at FROM todos WHERE id = ?', [localId], (r) => r[0]?.created_at != null, {
    timeoutMs: 15_000,
    what: 'the uploaded row to come back with its server-side created_at',
  });
  await waitFor(async () => (await crudCount(db)) === 0, { timeoutMs: 15_000, what: 'ps_crud to drain' });
  await expectLocalEqualsSource('at the end');
  assert.equal((await db.getAll(`SELECT id FROM todos WHERE created_by != 'u1'`)).length, 0);
  t.diagnostic(`credential fetches: ${alice.connector.credentialRequests}`);
  // Every stream of this client went over the WebSocket transport.
  const log = service.tail(2000).replace(/\x1B\[[0-9;]*m/g, '');
  assert.match(log, /transport="websocket"/, 'the service served a WebSocket stream');
  assert.doesNotMatch(log, /transport="http"/, 'no HTTP stream');
  assert.doesNotMatch(log, /reason="token expired"/, 'a stream ran until its token expired');
});
