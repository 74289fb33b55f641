// Live table-set changes with a connected @powersync/node client: a referenced table removed
// from and added back to the publication, renamed away and back, dropped, and created anew.
// The client converges after each change, other tables' changes made around the DDL arrive,
// and it never sees a sync error.
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { localRows } from '../lib/client.js';
import { sourceRows } from '../lib/postgres.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const RULES = `bucket_definitions:
  global:
    data:
      - SELECT * FROM lists
      - SELECT * FROM todos
`;

const TODOS_TABLE = `CREATE TABLE todos (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  list_id text NOT NULL,
  description text NOT NULL,
  completed boolean NOT NULL DEFAULT false,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`;

e2eTest('live table changes with a connected client', async (ctx) => {
  const { source } = await ctx.databases();
  await source.query(`
    DROP PUBLICATION powersync;
    CREATE PUBLICATION powersync FOR TABLE lists, todos, list_members;
    INSERT INTO lists (id, name, owner_id) VALUES ('L1', 'groceries', 'u1');
    INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'milk', 'u1'), ('L1', 'eggs', 'u1');
  `);
  const service = await ctx.startService({ rules: RULES });
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

  let listN = 1;
  /** Runs `sql` between two list inserts, then waits for the client to hold `todos`. */
  async function step(what, sql, todosVisible) {
    listN += 1;
    await source.query(`INSERT INTO lists (id, name, owner_id) VALUES ('L${listN}', 'before ${what}', 'u1')`);
    await source.query(sql);
    listN += 1;
    await source.query(`INSERT INTO lists (id, name, owner_id) VALUES ('L${listN}', 'after ${what}', 'u1')`);
    const wantTodos = todosVisible ? await sourceRows(source, 'todos') : [];
    const wantLists = await sourceRows(source, 'lists');
    await waitFor(
      async () =>
        JSON.stringify(await localRows(db, 'todos')) === JSON.stringify(wantTodos) &&
        JSON.stringify(await localRows(db, 'lists')) === JSON.stringify(wantLists),
      { timeoutMs: 60_000, what: `client converged after ${what}` },
    );
  }

  await step('nothing', 'SELECT 1', true);
  await step(
    'unpublish',
    `INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'bread', 'u1');
     ALTER PUBLICATION powersync DROP TABLE todos;
     INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'unpublished', 'u1');`,
    false,
  );
  await step(
    'republish',
    `UPDATE todos SET completed = true WHERE description = 'milk';
     ALTER PUBLICATION powersync ADD TABLE todos;
     INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'republished', 'u1');`,
    true,
  );
  await step(
    'rename away',
    `BEGIN;
     INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'before rename', 'u1');
     ALTER TABLE todos RENAME TO todos_old;
     COMMIT;
     INSERT INTO todos_old (list_id, description, created_by) VALUES ('L1', 'renamed', 'u1');`,
    false,
  );
  await step(
    'rename back',
    `ALTER TABLE todos_old RENAME TO todos;
     DELETE FROM todos WHERE description = 'eggs';`,
    true,
  );
  await step(
    'drop',
    `UPDATE todos SET completed = true WHERE description = 'bread';
     DROP TABLE todos;`,
    false,
  );
  await step(
    'create',
    `BEGIN;
     ${TODOS_TABLE};
     INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'fresh', 'u1');
     ALTER PUBLICATION powersync ADD TABLE todos;
     COMMIT;
     INSERT INTO todos (list_id, description, created_by) VALUES ('L1', 'fresher', 'u1');`,
    true,
  );
  assert.equal((await localRows(db, 'todos')).length, 2);

  assert.deepEqual(errors, [], 'no sync error on the client');
  assert.equal(db.currentStatus.connected, true, 'still connected');
});
