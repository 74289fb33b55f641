// Crash safety: SIGKILL the service while it replicates large transactions, restart it on the same
// config, and check that a connected client converges to exactly the Postgres contents and that
// storage holds no duplicated op.
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { inTransaction, sourceRows } from '../lib/postgres.js';
import { localRows } from '../lib/client.js';
import { currentLsn, waitUntilSent } from '../lib/replication.js';
import { duplicatedOps, maxOpId, opCounts, opsAfter } from '../lib/storage.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const ROWS = 50_000;

e2eTest('crash safety under SIGKILL during replication', async (ctx, t) => {
  const dbs = await ctx.databases();
  const { source } = dbs;
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('L1', 'big list', 'u1');
    INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'before start', 'u1');
  `);
  const service = await ctx.startService({ rules: PER_USER_RULES });
  const alice = await ctx.client('alice', 'u1', service);
  await alice.connect();
  await withDeadline(alice.db.waitForFirstSync(), 30_000, 'first sync');

  const localCount = async () => (await alice.db.get('SELECT count(*) AS n FROM todos')).n;

  /**
   * Commits `sql` in one transaction and SIGKILLs the service at `killAt`: `'received'` = as soon as
   * the walsender has sent the commit (the service holds it in memory, storage may not); `'stored'`
   * = as soon as the first op of the transaction is visible in storage (written, maybe not yet
   * acknowledged to Postgres, so the transaction will be delivered again). Then restarts it.
   */
  const killDuring = async (label, sql, killAt) => {
    const before = await maxOpId(dbs.storage);
    await inTransaction(source, (tx) => tx.query(sql));
    const lsn = await currentLsn(source);
    if (killAt === 'received') {
      await waitUntilSent(source, dbs.sourceDb, lsn);
    } else {
      await waitFor(async () => (await opsAfter(dbs.storage, before)) > 0, {
        timeoutMs: 120_000,
        intervalMs: 5,
        what: `the first op of "${label}" in storage`,
      });
    }
    const exit = await service.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL', `${label}: service exited on its own before the kill: ${JSON.stringify(exit)}`);
    t.diagnostic(
      `${label}: killed (${killAt}) with ${await opsAfter(dbs.storage, before)} of its ops in storage and ` +
        `${await localCount()} todos on the client`,
    );
    service.spawn();
    await service.waitReady(60_000);
  };

  await killDuring(
    `insert of ${ROWS} todos`,
    `INSERT INTO todos (list_id, description, completed, created_by)
       SELECT 'L1', 'todo ' || g, g % 3 = 0, 'u1' FROM generate_series(1, ${ROWS}) g`,
    'stored',
  );
  // A second crash, in a transaction mixing updates, deletes and inserts, before it reaches storage.
  await killDuring(
    'mixed update/delete/insert',
    `UPDATE todos SET description = description || ' (edited)', completed = NOT completed
       WHERE description LIKE 'todo %' AND right(description, 1) IN ('1', '2');
     DELETE FROM todos WHERE description LIKE 'todo %' AND right(description, 1) = '5';
     INSERT INTO todos (list_id, description, created_by)
       SELECT 'L1', 'late ' || g, 'u1' FROM generate_series(1, 5000) g;`,
    'received',
  );
  // A change after the last restart shows replication runs on.
  await source.query(`INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'after restarts', 'u1')`);

  const expectedCount = (await source.query('SELECT count(*)::int AS n FROM todos')).rows[0].n;
  let lastLocal;
  await waitFor(
    async () => {
      lastLocal = await localCount();
      if (lastLocal !== expectedCount) return false;
      return (await alice.db.getAll(`SELECT 1 FROM todos WHERE description = 'after restarts'`)).length === 1;
    },
    {
      timeoutMs: 180_000,
      intervalMs: 250,
      what: `the client to hold all ${expectedCount} todos`,
      describe: () => `${lastLocal} local todos`,
    },
  );
  // Row by row.
  const local = await localRows(alice.db, 'todos');
  const expected = await sourceRows(source, 'todos');
  assert.equal(local.length, expected.length);
  const mismatches = [];
  for (let i = 0; i < expected.length && mismatches.length < 10; i++) {
    if (JSON.stringify(local[i]) !== JSON.stringify(expected[i])) mismatches.push({ local: local[i], expected: expected[i] });
  }
  assert.deepEqual(mismatches, [], 'client rows differ from Postgres');
  assert.deepEqual(await localRows(alice.db, 'lists'), await sourceRows(source, 'lists'));

  const checksumTrouble = alice.logger.lines.filter((l) => /checksum/i.test(l));
  assert.deepEqual(checksumTrouble, [], 'the SDK reported checksum problems');

  t.diagnostic(`ops in storage: ${JSON.stringify(await opCounts(dbs.storage))}`);
  const dups = await duplicatedOps(dbs.storage);
  assert.deepEqual(dups, [], 'storage holds duplicated ops (same source row PUT more than once in a bucket)');
});
