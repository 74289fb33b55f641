// Isolation: each client holds exactly the rows its rules grant, sharing through list_members adds
// and removes a list live, and no snapshot of a client's local rows ever contains a foreign row.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { e2eTest } from '../lib/harness.js';
import { SHARED_LIST_RULES } from '../lib/rules.js';
import { inTransaction, sourceRows } from '../lib/postgres.js';
import { crudCount, localRows, recordSnapshots } from '../lib/client.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const TABLES = ['lists', 'todos', 'list_members'];

/** What SHARED_LIST_RULES grant to `user`, read through `q` (pool or transaction client). */
async function granted(q, user) {
  const member = `SELECT list_id FROM list_members WHERE user_id = $1`;
  return {
    lists: await sourceRows(q, 'lists', `owner_id = $1 OR id IN (${member})`, [user]),
    todos: await sourceRows(q, 'todos', `created_by = $1 OR list_id IN (${member})`, [user]),
    list_members: await sourceRows(q, 'list_members', `user_id = $1`, [user]),
  };
}

const keysOf = (grant) => new Set(TABLES.flatMap((t) => grant[t].map((r) => `${t}:${r.id}`)));

async function localState(db) {
  return Object.fromEntries(await Promise.all(TABLES.map(async (t) => [t, await localRows(db, t)])));
}

e2eTest('isolation between users', async (ctx, t) => {
  const { source } = await ctx.databases();
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES
      ('A1', 'alice shared', 'u1'), ('A2', 'alice private', 'u1'), ('B1', 'bob own', 'u2'), ('C1', 'carol', 'u3');
    INSERT INTO list_members (id, list_id, user_id) VALUES
      ('m-a1-u1', 'A1', 'u1'), ('m-a2-u1', 'A2', 'u1'), ('m-b1-u2', 'B1', 'u2'), ('m-c1-u3', 'C1', 'u3');
    INSERT INTO todos (list_id, description, created_by) VALUES
      ('A1', 'a1 first', 'u1'), ('A1', 'a1 by carol', 'u3'), ('A2', 'a2 private', 'u1'),
      ('B1', 'b1 first', 'u2'), ('C1', 'c1 first', 'u3'), ('C1', 'c1 by alice', 'u1');
  `);

  const service = await ctx.startService({ rules: SHARED_LIST_RULES });
  const users = { alice: 'u1', bob: 'u2' };
  const clients = {};
  const allowed = {};
  const violations = [];
  const recorders = {};
  for (const [name, sub] of Object.entries(users)) {
    clients[name] = await ctx.client(name, sub, service);
    allowed[name] = keysOf(await granted(source, sub));
    // Snapshots are recorded from before the first sync on.
    recorders[name] = recordSnapshots(clients[name].db, (keys) => {
      for (const k of keys) {
        if (!allowed[name].has(k)) violations.push({ client: name, at: new Date().toISOString(), key: k });
      }
    });
    await clients[name].connect();
  }
  t.after(() => Object.values(recorders).forEach((r) => r.stop()));

  const noViolations = (step) =>
    assert.deepEqual(violations, [], `${step}: a client held rows its rules do not grant`);

  /** Waits until each client's local tables equal the grant, then narrows `allowed` to it. */
  const converge = async (step) => {
    for (const [name, sub] of Object.entries(users)) {
      const { db } = clients[name];
      let local;
      let expected;
      await waitFor(
        async () => {
          expected = await granted(source, sub);
          local = await localState(db);
          return JSON.stringify(local) === JSON.stringify(expected);
        },
        {
          timeoutMs: 20_000,
          what: `${name}'s local rows to equal the rows granted to ${sub} (${step})`,
          describe: () => `\nlocal:    ${JSON.stringify(local)}\nexpected: ${JSON.stringify(expected)}`,
        },
      );
      assert.deepEqual(local, expected, `${name} ${step}`);
      allowed[name] = keysOf(expected);
      await recorders[name].sample();
    }
    noViolations(step);
  };

  /** Applies `sql` in a transaction; the grants of the new state are allowed before COMMIT. */
  const change = (sql, params = []) =>
    inTransaction(source, async (tx) => {
      await tx.query(sql, params);
      for (const [name, sub] of Object.entries(users)) {
        for (const k of keysOf(await granted(tx, sub))) allowed[name].add(k);
      }
    });

  for (const c of Object.values(clients)) await withDeadline(c.db.waitForFirstSync(), 30_000, `${c.name} first sync`);
  await converge('after the first sync');
  assert.equal((await localRows(clients.bob.db, 'lists')).map((r) => r.id).join(), 'B1');
  assert.deepEqual((await localRows(clients.alice.db, 'lists')).map((r) => r.id), ['A1', 'A2']);
  // alice created a todo in carol's list: the per-user bucket grants it without the list.
  assert.ok((await localRows(clients.alice.db, 'todos')).some((r) => r.description === 'c1 by alice'));

  // Share A1 with bob: the list and all its todos appear on bob's client.
  await change(`INSERT INTO list_members (id, list_id, user_id) VALUES ('m-a1-u2', 'A1', 'u2')`);
  await converge('after sharing A1 with bob');
  const bobLists = (await localRows(clients.bob.db, 'lists')).map((r) => r.id);
  assert.deepEqual(bobLists, ['A1', 'B1']);
  assert.deepEqual(
    (await localRows(clients.bob.db, 'todos')).map((r) => r.description).sort(),
    ['a1 by carol', 'a1 first', 'b1 first'],
  );

  // Changes while shared: A1 reaches both, A2 only alice, C1 nobody.
  await change(`INSERT INTO todos (list_id, description, created_by) VALUES ('A1', 'a1 second', 'u1')`);
  await change(`INSERT INTO todos (list_id, description, created_by) VALUES ('A2', 'a2 second', 'u1')`);
  await change(`INSERT INTO todos (list_id, description, created_by) VALUES ('C1', 'c1 second', 'u3')`);
  await change(`UPDATE lists SET name = 'alice shared (renamed)' WHERE id = 'A1'`);
  // bob writes into the shared list through his client; the upload lands and alice sees it.
  const bobTodoId = randomUUID();
  allowed.bob.add(`todos:${bobTodoId}`); // his own local write
  allowed.alice.add(`todos:${bobTodoId}`); // granted through A1 once uploaded
  await clients.bob.db.execute(
    `INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (?, 'A1', 'a1 by bob', 0, 'u2')`,
    [bobTodoId],
  );
  await waitFor(async () => (await crudCount(clients.bob.db)) === 0, { timeoutMs: 15_000, what: "bob's upload queue to drain" });
  await converge('after changes to shared and private lists');

  // Unshare: A1 and the todos bob sees only through it disappear; his own todo in A1 stays (per-user bucket).
  await inTransaction(source, (tx) => tx.query(`DELETE FROM list_members WHERE id = 'm-a1-u2'`));
  await converge('after unsharing A1');
  assert.deepEqual((await localRows(clients.bob.db, 'lists')).map((r) => r.id), ['B1']);
  assert.deepEqual(
    (await localRows(clients.bob.db, 'todos')).map((r) => r.description).sort(),
    ['a1 by bob', 'b1 first'],
  );

  // After unsharing, new A1 rows reach alice but never bob.
  await change(`INSERT INTO todos (list_id, description, created_by) VALUES ('A1', 'a1 after unshare', 'u1')`);
  await converge('after a change to A1 once unshared');

  for (const r of Object.values(recorders)) r.stop();
  const counts = Object.fromEntries(Object.entries(recorders).map(([n, r]) => [n, r.snapshots.length]));
  t.diagnostic(`snapshots checked: ${JSON.stringify(counts)}`);
  for (const [name, n] of Object.entries(counts)) assert.ok(n > 10, `${name}: only ${n} snapshots were recorded`);
  noViolations('whole test');
});
