// The official client end to end: initial sync, live changes under 1 s, local writes uploaded and
// acknowledged through write checkpoints.
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { sourceRows } from '../lib/postgres.js';
import { crudCount, localRows, waitForLocal } from '../lib/client.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const LIVE_CHANGE_BUDGET_MS = 1000;

e2eTest('official client end to end', async (ctx, t) => {
  const { source } = await ctx.databases();
  // Data that exists before the service and the client start.
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('l-u1-a', 'Groceries', 'u1'), ('l-u1-b', 'Work', 'u1'),
                                                  ('l-u2-a', 'Secret', 'u2');
    INSERT INTO todos (list_id, description, created_by, completed) VALUES
      ('l-u1-a', 'milk', 'u1', false), ('l-u1-a', 'bread', 'u1', true), ('l-u1-b', 'report', 'u1', false),
      ('l-u2-a', 'not for u1', 'u2', false);
  `);

  const service = await ctx.startService({ rules: PER_USER_RULES });
  const alice = await ctx.client('alice', 'u1', service);
  const { db } = alice;
  await alice.connect();
  await withDeadline(db.waitForFirstSync(), 30_000, 'waitForFirstSync');
  assert.equal(db.currentStatus.hasSynced, true, 'status.hasSynced after the first sync');

  const expectLocalEqualsSource = async (msg) => {
    assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`), `${msg}: lists`);
    assert.deepEqual(await localRows(db, 'todos'), await sourceRows(source, 'todos', `created_by = 'u1'`), `${msg}: todos`);
  };
  await expectLocalEqualsSource('after first sync');
  assert.equal((await localRows(db, 'todos')).length, 3);

  // Live changes made in Postgres reach the client within the budget, one by one.
  const timings = {};
  const measure = async (label, change, sql, params, predicate) => {
    await change();
    const { elapsedMs } = await waitForLocal(db, sql, params, predicate, {
      timeoutMs: 15_000,
      what: `${label} to reach the client`,
    });
    timings[label] = Math.round(elapsedMs);
    return elapsedMs;
  };
  const id = '00000000-0000-4000-8000-000000000001';
  await measure(
    'insert',
    () => source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', 'eggs', 'u1')`, [id]),
    'SELECT description FROM todos WHERE id = ?',
    [id],
    (rows) => rows.length === 1 && rows[0].description === 'eggs',
  );
  await measure(
    'update',
    () => source.query(`UPDATE todos SET description = 'eggs (6)', completed = true WHERE id = $1`, [id]),
    'SELECT description, completed FROM todos WHERE id = ?',
    [id],
    (rows) => rows.length === 1 && rows[0].description === 'eggs (6)' && rows[0].completed === 1,
  );
  await measure(
    'delete',
    () => source.query(`DELETE FROM todos WHERE id = $1`, [id]),
    'SELECT id FROM todos WHERE id = ?',
    [id],
    (rows) => rows.length === 0,
  );
  t.diagnostic(`Postgres commit → visible in @powersync/node: ${JSON.stringify(timings)} ms`);
  for (const [label, ms] of Object.entries(timings)) {
    assert.ok(ms < LIVE_CHANGE_BUDGET_MS, `${label} took ${ms} ms to reach the client (budget ${LIVE_CHANGE_BUDGET_MS} ms)`);
  }
  await expectLocalEqualsSource('after live changes');

  // Local writes: uploaded by the connector, applied to Postgres, synced back, queue drained.
  await db.execute(
    `INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (uuid(), 'l-u1-b', 'written locally', 0, 'u1')`,
  );
  const localId = (await db.get(`SELECT id FROM todos WHERE description = 'written locally'`)).id;
  await waitFor(async () => (await source.query('SELECT 1 FROM todos WHERE id = $1', [localId])).rowCount === 1, {
    timeoutMs: 15_000,
    what: 'the local insert to be uploaded into Postgres',
  });
  await waitFor(() => alice.connector.uploaded.length >= 1, { what: 'the connector to complete the upload' });
  assert.deepEqual(alice.connector.uploaded.map((e) => [e.op, e.type, e.id]), [['PUT', 'todos', localId]]);
  // created_at is filled by a Postgres default, so it can only appear locally once the server's
  // version of the row was applied, i.e. once the write-checkpoint gate was released.
  await waitForLocal(db, 'SELECT created_at FROM todos WHERE id = ?', [localId], (r) => r[0]?.created_at != null, {
    timeoutMs: 15_000,
    what: 'the uploaded row to come back from the service with its server-side created_at',
  });
  await waitFor(async () => (await crudCount(db)) === 0, { timeoutMs: 15_000, what: 'ps_crud to drain' });
  await expectLocalEqualsSource('after the local insert came back');

  // A local update and a local delete in one client transaction.
  await db.writeTransaction(async (tx) => {
    await tx.execute(`UPDATE todos SET completed = 1, description = 'report (done)' WHERE list_id = 'l-u1-b' AND description = 'report'`);
    await tx.execute(`DELETE FROM todos WHERE description = 'milk'`);
  });
  await waitFor(
    async () => {
      const { rows } = await source.query(
        `SELECT (SELECT count(*) FROM todos WHERE description = 'milk') AS milk,
                (SELECT count(*) FROM todos WHERE description = 'report (done)' AND completed) AS done`,
      );
      return rows[0].milk === 0 && rows[0].done === 1;
    },
    { timeoutMs: 15_000, what: 'the local update and delete to land in Postgres' },
  );
  await waitFor(async () => (await crudCount(db)) === 0, { timeoutMs: 15_000, what: 'ps_crud to drain' });

  // A change made in Postgres after the upload must still arrive (write checkpoint acknowledged).
  const after = await measure(
    'server change after upload',
    () => source.query(`UPDATE todos SET description = 'edited on the server' WHERE id = $1`, [localId]),
    'SELECT description FROM todos WHERE id = ?',
    [localId],
    (rows) => rows[0]?.description === 'edited on the server',
  );
  t.diagnostic(`server change after upload visible after ${Math.round(after)} ms`);
  assert.ok(after < LIVE_CHANGE_BUDGET_MS, `server change after upload took ${Math.round(after)} ms`);
  await expectLocalEqualsSource('at the end');
  assert.equal(await crudCount(db), 0);
  // u2's rows never reached u1.
  assert.equal((await db.getAll(`SELECT id FROM todos WHERE created_by != 'u1'`)).length, 0);
  assert.equal((await db.getAll(`SELECT id FROM lists WHERE owner_id != 'u1'`)).length, 0);
});
