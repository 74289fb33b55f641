// PowerSync's admin API v1 through PowerSync's own client, @powersync/service-client (its
// InstanceClient: diagnostics, getSchema, validate, reprocess; execute-sql and the sync-rules
// reprocess through endpoints made with the same SDK), and the legacy GET /write-checkpoint.json,
// against a real `riptide serve`.
import assert from 'node:assert/strict';
import * as sdk from '@journeyapps-labs/common-sdk';
import { InstanceClient } from '@powersync/service-client';
import { e2eTest } from '../lib/harness.js';
import { waitFor } from '../lib/wait.js';

const ADMIN_TOKEN = 'e2e-admin-v1-token';

const RULES = `bucket_definitions:
  mine:
    parameters: SELECT id AS list_id FROM lists WHERE owner_id = request.user_id()
    data:
      - SELECT * FROM todos WHERE list_id = bucket.list_id
`;

/** The official client, plus the two routes it has no method for, made the same way. */
class AdminClient extends InstanceClient {
  executeSql = this.createEndpoint({ path: '/api/admin/v1/execute-sql' });
  reprocessSyncRules = this.createEndpoint({ path: '/api/sync-rules/v1/reprocess' });
}

function adminClient(endpoint, token = ADMIN_TOKEN) {
  return new AdminClient({
    client: sdk.createNodeNetworkClient({ headers: () => ({ Authorization: `Bearer ${token}` }) }),
    endpoint,
  });
}

e2eTest('admin API v1 with @powersync/service-client', async (ctx) => {
  const { source } = await ctx.databases();
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('L1', 'groceries', 'u1'), ('L2', 'work', 'u1'), ('L3', 'x', 'u2');
    INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'milk', 'u1');
  `);
  const service = await ctx.startService({
    rules: RULES,
    extra: `api:\n  tokens: [${ADMIN_TOKEN}]\n  execute_sql:\n    max_rows: 2\n`,
    connectionExtra: 'debug_api: true',
  });
  const client = adminClient(service.endpoint);

  const diag = await client.diagnostics({ sync_rules_content: true });
  assert.equal(diag.connections[0].connected, true);
  assert.deepEqual(diag.connections[0].errors, []);
  assert.equal(diag.active_sync_rules.content, RULES);
  const active = diag.active_sync_rules.connections[0];
  assert.equal(active.initial_replication_done, true);
  assert.match(active.slot_name, /^riptide_/);
  assert.equal(typeof active.replication_lag_bytes, 'number');
  const lists = active.tables.find((t) => t.name === 'lists');
  assert.deepEqual(lists.replication_id, ['id']);
  assert.equal(lists.parameter_queries, true);
  assert.deepEqual(diag.active_sync_rules.errors, []);

  const schema = await client.getSchema({});
  const pub = schema.connections[0].schemas.find((s) => s.name === 'public');
  const todos = pub.tables.find((t) => t.name === 'todos');
  assert.ok(todos.columns.some((c) => c.name === 'description' && c.sqlite_type === 'text'));
  assert.equal(schema.defaultSchema, 'public');

  const bad = await client.validate({ sync_rules: 'bucket_definitions:\n  b:\n    data:\n      - SELECT * FROM nowhere\n' });
  assert.ok(bad.errors.some((e) => e.level === 'fatal' && /does not exist/.test(e.message)), JSON.stringify(bad));
  const good = await client.validate({ sync_rules: RULES });
  assert.deepEqual(good.errors, []);

  const rows = await client.executeSql({ sql: { query: 'SELECT name FROM lists ORDER BY name', args: [] } });
  assert.equal(rows.success, true);
  assert.deepEqual(rows.results, { columns: ['name'], rows: [['groceries'], ['work']] });
  const write = await client.executeSql({ sql: { query: 'DELETE FROM lists WHERE owner_id = $1', args: ['u1'] } });
  assert.equal(write.success, false);
  assert.match(write.error, /read-only/);

  // The legacy write checkpoint of older SDKs.
  const res = await fetch(`${service.endpoint}/write-checkpoint.json?client_id=c1`, {
    headers: { authorization: `Bearer ${await ctx.token('u1')}` },
    signal: AbortSignal.timeout(60_000),
  });
  assert.equal(res.status, 200);
  const { data } = await res.json();
  assert.match(data.checkpoint, /^\d+$/);

  // A wrong token is refused with PowerSync's code.
  await assert.rejects(adminClient(service.endpoint, 'wrong').diagnostics({}), (e) =>
    JSON.stringify(e).includes('PSYNC_S2101') || /PSYNC_S2101/.test(String(e.message)),
  );

  // Reprocess: a new slot; a second one while it snapshots is busy (409) or, when the snapshot
  // already finished, another new slot. Either way the last one ends up serving.
  const first = await client.reprocess({});
  let last = first.connections[0].slot_name;
  assert.notEqual(last, active.slot_name);
  try {
    last = (await client.reprocessSyncRules({})).slot_name;
  } catch (e) {
    assert.match(JSON.stringify(e) + String(e.message), /PSYNC_S4106/);
  }
  await waitFor(
    async () => {
      const d = await client.diagnostics({});
      return d.active_sync_rules?.connections[0]?.slot_name === last && d.deploying_sync_rules == null;
    },
    { timeoutMs: 60_000, what: 'the reprocessed deployment to serve' },
  );
});
