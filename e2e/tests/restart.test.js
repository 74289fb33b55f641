// @powersync/node across a service restart, over both transports: the service is SIGKILLed while
// the client streams, Postgres changes and the client writes locally while it is down, then it is
// started again on the same config and port; the client reconnects, uploads and converges.
// (crash_safety.test.js kills during large replicated transactions over the default transport.)
import assert from 'node:assert/strict';
import { SyncStreamConnectionMethod } from '@powersync/node';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { sourceRows } from '../lib/postgres.js';
import { crudCount, localRows, waitForLocal } from '../lib/client.js';
import { waitFor, withDeadline } from '../lib/wait.js';

for (const method of [SyncStreamConnectionMethod.HTTP, SyncStreamConnectionMethod.WEB_SOCKET]) {
  e2eTest(`official client over ${method} across a service restart`, async (ctx, t) => {
    const { source } = await ctx.databases();
    await source.query(`
      INSERT INTO lists (id, name, owner_id) VALUES ('l-u1-a', 'Groceries', 'u1');
      INSERT INTO todos (list_id, description, created_by) VALUES ('l-u1-a', 'milk', 'u1'), ('l-u1-a', 'bread', 'u1');
    `);
    const service = await ctx.startService({ rules: PER_USER_RULES });
    const alice = await ctx.client('alice', 'u1', service, { syncOptions: { connectionMethod: method } });
    const { db } = alice;
    await alice.connect();
    await withDeadline(db.waitForFirstSync(), 30_000, `waitForFirstSync over ${method}`);
    const expectLocalEqualsSource = async (msg) => {
      assert.deepEqual(await localRows(db, 'lists'), await sourceRows(source, 'lists', `owner_id = 'u1'`), `${msg}: lists`);
      assert.deepEqual(await localRows(db, 'todos'), await sourceRows(source, 'todos', `created_by = 'u1'`), `${msg}: todos`);
    };
    await expectLocalEqualsSource('after first sync');

    const exit = await service.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL', `service exited on its own: ${JSON.stringify(exit)}`);
    const downId = '00000000-0000-4000-8000-0000000000c1';
    await source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', 'while down', 'u1')`, [
      downId,
    ]);
    await source.query(`UPDATE todos SET completed = true WHERE description = 'milk'`);
    await source.query(`DELETE FROM todos WHERE description = 'bread'`);
    await db.execute(
      `INSERT INTO todos (id, list_id, description, completed, created_by) VALUES (uuid(), 'l-u1-a', 'written offline', 0, 'u1')`,
    );
    // Down long enough for a few refused reconnect attempts (retryDelayMs is 250 ms).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const restartedAt = performance.now();
    service.spawn();
    await service.waitReady(60_000);
    await waitForLocal(db, 'SELECT id FROM todos WHERE id = ?', [downId], (r) => r.length === 1, {
      timeoutMs: 30_000,
      what: 'the change made while the service was down',
    });
    t.diagnostic(`restart → change made while down visible: ${Math.round(performance.now() - restartedAt)} ms`);
    await waitFor(async () => (await source.query(`SELECT 1 FROM todos WHERE description = 'written offline'`)).rowCount === 1, {
      timeoutMs: 20_000,
      what: 'the offline write to be uploaded after the restart',
    });
    const afterId = '00000000-0000-4000-8000-0000000000c2';
    await source.query(`INSERT INTO todos (id, list_id, description, created_by) VALUES ($1, 'l-u1-a', 'after restart', 'u1')`, [
      afterId,
    ]);
    await waitForLocal(db, 'SELECT id FROM todos WHERE id = ?', [afterId], (r) => r.length === 1, {
      timeoutMs: 20_000,
      what: 'a change after the restart',
    });
    await waitFor(
      async () =>
        (await crudCount(db)) === 0 && (await db.getAll('SELECT id FROM todos WHERE created_at IS NULL')).length === 0,
      { timeoutMs: 20_000, what: 'the upload to drain and come back' },
    );
    await expectLocalEqualsSource('after the restart');
    assert.equal((await localRows(db, 'todos')).length, 4);
    const log = service.logs().replace(/\x1B\[[0-9;]*m/g, '');
    const transport = method === SyncStreamConnectionMethod.HTTP ? 'http' : 'websocket';
    const starts = log.split('----- riptide serve (start #2)');
    assert.equal(starts.length, 2, 'the service was started twice');
    assert.match(starts[1], new RegExp(`transport="${transport}"`), `the restarted service served a ${transport} stream`);
  });
}
