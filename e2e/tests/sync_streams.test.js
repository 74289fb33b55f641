// Sync Streams with the official client: `db.syncStream(name, params).subscribe()`, each
// subscription's first sync and status, an unknown stream's error that leaves the others alone,
// and a membership row moving a subscribed list's todos in and out live.
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { localRows } from '../lib/client.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const RULES = `config:
  edition: 3
streams:
  my_lists:
    auto_subscribe: true
    query: |
      SELECT * FROM lists WHERE owner_id = auth.user_id()
        OR id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())
  list_todos:
    priority: 2
    query: |
      SELECT * FROM todos WHERE list_id = subscription.parameter('list_id')
        AND list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())
`;

const ids = async (db, table) => (await localRows(db, table)).map((r) => r.id ?? r.description);
const descriptions = async (db) => (await localRows(db, 'todos')).map((r) => r.description).sort();

e2eTest('sync streams with @powersync/node', async (ctx) => {
  const { source } = await ctx.databases();
  await source.query(`
    INSERT INTO lists (id, name, owner_id) VALUES ('A1', 'alice', 'u1'), ('B1', 'bob', 'u2');
    INSERT INTO list_members (id, list_id, user_id) VALUES ('m-a1-u1', 'A1', 'u1'), ('m-b1-u2', 'B1', 'u2');
    INSERT INTO todos (list_id, description, created_by) VALUES
      ('A1', 'a1 first', 'u1'), ('A1', 'a1 second', 'u1'), ('B1', 'b1 first', 'u2');
  `);
  const service = await ctx.startService({ rules: RULES });
  const alice = await ctx.client('alice', 'u1', service);
  const { db } = alice;
  await alice.connect();

  // The auto-subscribed stream syncs on connect; no todos without a subscription.
  await withDeadline(db.waitForFirstSync(), 30_000, 'first sync');
  assert.deepEqual(await ids(db, 'lists'), ['A1']);
  assert.deepEqual(await descriptions(db), []);
  const defaults = db.currentStatus.syncStreams ?? [];
  assert.deepEqual(
    defaults.map((s) => [s.subscription.name, s.subscription.isDefault]),
    [['my_lists', true]],
    JSON.stringify(defaults),
  );

  // Subscribing to a list's todos: its first sync brings them, and its status says so.
  const a1 = await db.syncStream('list_todos', { list_id: 'A1' }).subscribe();
  await withDeadline(a1.waitForFirstSync(), 30_000, "A1's todos first sync");
  assert.deepEqual(await descriptions(db), ['a1 first', 'a1 second']);
  const a1Status = db.currentStatus.forStream(a1);
  assert.ok(a1Status, JSON.stringify(db.currentStatus.syncStreams));
  assert.equal(a1Status.subscription.hasSynced, true);
  assert.equal(a1Status.subscription.isDefault, false);
  assert.equal(a1Status.subscription.hasExplicitSubscription, true);
  assert.equal(a1Status.priority, 2);

  // A stream that does not exist: the service reports the error for that subscription (the
  // client logs it); A1's subscription keeps syncing.
  const unknown = await db.syncStream('no_such_stream', { x: 1 }).subscribe();
  await waitFor(() => alice.logger.lines.some((l) => l.includes('unknown stream `no_such_stream`')), {
    timeoutMs: 20_000,
    what: "the client to log the unknown stream's error",
    describe: () => alice.logger.tail(20),
  });
  await source.query(`INSERT INTO todos (list_id, description, created_by) VALUES ('A1', 'a1 third', 'u1')`);
  await waitFor(async () => (await descriptions(db)).includes('a1 third'), {
    timeoutMs: 10_000,
    what: 'a new A1 todo next to the failed subscription',
  });
  unknown.unsubscribe();

  // B1's todos: subscribed, but not granted until alice is a member.
  const b1 = await db.syncStream('list_todos', { list_id: 'B1' }).subscribe({ priority: 1 });
  await waitFor(async () => db.currentStatus.forStream(b1)?.subscription.active, {
    timeoutMs: 20_000,
    what: "B1's subscription to be active",
  });
  assert.ok(!(await descriptions(db)).includes('b1 first'));

  // Membership inserted: the list (default stream) and its todos (B1's subscription) arrive.
  await source.query(`INSERT INTO list_members (id, list_id, user_id) VALUES ('m-b1-u1', 'B1', 'u1')`);
  await waitFor(
    async () => (await descriptions(db)).includes('b1 first') && (await ids(db, 'lists')).includes('B1'),
    { timeoutMs: 20_000, what: "B1 and its todos after alice joins", describe: () => alice.logger.tail(20) },
  );
  await withDeadline(b1.waitForFirstSync(), 20_000, "B1's todos first sync");
  assert.equal(db.currentStatus.forStream(b1)?.priority, 1);

  // Membership deleted: both leave again; A1 stays.
  await source.query(`DELETE FROM list_members WHERE id = 'm-b1-u1'`);
  await waitFor(
    async () => !(await descriptions(db)).includes('b1 first') && !(await ids(db, 'lists')).includes('B1'),
    { timeoutMs: 20_000, what: 'B1 and its todos gone after alice leaves' },
  );
  assert.deepEqual(await ids(db, 'lists'), ['A1']);
  assert.deepEqual(await descriptions(db), ['a1 first', 'a1 second', 'a1 third']);

  // All of the stream's subscriptions cleared (TTL too): the todos leave with the next
  // connection's checkpoint.
  a1.unsubscribe();
  b1.unsubscribe();
  await db.syncStream('list_todos', { list_id: 'A1' }).unsubscribeAll();
  await waitFor(async () => (await descriptions(db)).length === 0, {
    timeoutMs: 20_000,
    what: "A1's todos gone once unsubscribed",
    describe: () => alice.logger.tail(20),
  });
  assert.deepEqual(await ids(db, 'lists'), ['A1']);
});
