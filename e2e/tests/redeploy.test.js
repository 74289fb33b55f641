// Zero-downtime rule deploys: a connected @powersync/node client, rules redeployed through the
// admin API (POST /api/sync-rules/v1/deploy), the client converges to what the new rules grant
// without any sync error, and the old deployment's replication slot is dropped.
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { localRows } from '../lib/client.js';
import { sourceRows } from '../lib/postgres.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const ADMIN_TOKEN = 'e2e-admin-token';

/** First rules: each user gets only the lists they own. */
const LISTS_ONLY = `bucket_definitions:
  owned_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
`;

/** Second rules: their lists and the todos they created, under another definition name. */
const LISTS_AND_TODOS = `bucket_definitions:
  per_user:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
      - SELECT * FROM todos WHERE created_by = bucket.user_id
`;

async function adminCall(service, method, path, body) {
  const res = await fetch(`${service.endpoint}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.json() };
}

async function slotNames(pool) {
  const { rows } = await pool.query('SELECT slot_name FROM pg_replication_slots WHERE database = current_database()');
  return rows.map((r) => r.slot_name).sort();
}

e2eTest('rules redeploy with a connected client', async (ctx) => {
  const { source } = await ctx.databases();
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('L1', 'u1 groceries', 'u1'), ('L2', 'u2 work', 'u2');
    INSERT INTO todos (list_id, description, created_by) VALUES
      ('L1', 'milk', 'u1'), ('L1', 'eggs', 'u1'), ('L2', 'report', 'u2');
  `);
  // No sync_config: the rules come from the admin API.
  const service = await ctx.startService({
    rules: null,
    waitReady: false,
    extra: `api:\n  tokens: [${ADMIN_TOKEN}]\n`,
  });
  await waitFor(
    async () => {
      if (service.exit) throw new Error(`service exited: ${JSON.stringify(service.exit)}`);
      return (await fetch(`${service.endpoint}/probes/liveness`).catch(() => null))?.ok;
    },
    { timeoutMs: 60_000, what: 'service listening' },
  );
  const first = await adminCall(service, 'POST', '/api/sync-rules/v1/deploy', { content: LISTS_ONLY });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const firstSlot = first.body.data.slot_name;
  await service.waitReady();

  const alice = await ctx.client('alice', 'u1', service);
  const { db } = alice;
  const errors = [];
  db.registerListener({
    statusChanged: (status) => {
      const e = status.dataFlowStatus?.downloadError;
      if (e) errors.push(String(e?.stack ?? e));
    },
  });
  await alice.connect();
  await withDeadline(db.waitForFirstSync(), 30_000, 'waitForFirstSync');
  assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`));
  assert.deepEqual(await localRows(db, 'todos'), [], 'the first rules grant no todos');

  // Redeploy while connected.
  const second = await adminCall(service, 'POST', '/api/sync-rules/v1/deploy', { content: LISTS_AND_TODOS });
  assert.equal(second.status, 200, JSON.stringify(second.body));
  assert.notEqual(second.body.data.slot_name, firstSlot);

  // The client converges to what the new rules grant, while staying connected.
  const wantTodos = await sourceRows(source, 'todos', `created_by = 'u1'`);
  await waitFor(async () => JSON.stringify(await localRows(db, 'todos')) === JSON.stringify(wantTodos), {
    timeoutMs: 60_000,
    what: 'todos of u1 after the redeploy',
  });
  assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`));

  // The old slot is dropped and the admin API reports the new deployment as current.
  await waitFor(async () => !(await slotNames(source)).includes(firstSlot), {
    timeoutMs: 30_000,
    what: `slot ${firstSlot} dropped`,
  });
  const current = await adminCall(service, 'GET', '/api/sync-rules/v1/current');
  assert.equal(current.status, 200);
  assert.equal(current.body.data.current.slot_name, second.body.data.slot_name);
  assert.equal(current.body.data.current.state, 'ACTIVE');
  assert.equal(current.body.data.next, null);

  // Live changes keep arriving under the new rules.
  await source.query(`INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'bread', 'u1')`);
  const wantAfter = await sourceRows(source, 'todos', `created_by = 'u1'`);
  await waitFor(async () => JSON.stringify(await localRows(db, 'todos')) === JSON.stringify(wantAfter), {
    timeoutMs: 30_000,
    what: 'a live todo after the redeploy',
  });

  assert.deepEqual(errors, [], 'no sync error on the client');
  assert.equal(db.currentStatus.connected, true, 'still connected');
});
