// Scale-out with the official client (issue 13): four `riptide serve` processes of one config on
// one storage — a replicating leader and a standby (`--role replicator`), two API nodes (`--role
// api`) — and @powersync/node clients on the API nodes, each through a loopback balancer that
// sends new connections to the first API node that accepts them. Writes from Postgres and from
// the clients themselves reach every client; SIGKILL the leader: the standby takes the lease and
// writes keep arriving; SIGKILL an API node: its client reconnects through its balancer to the
// other node. After every step every client holds exactly the source's rows (nothing lost, nothing
// duplicated). Fencing of a paused leader (SIGSTOP past the lease) is tested with real processes
// in crates/riptide-cli/tests/scale_out.rs.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { crudCount, localRows } from '../lib/client.js';
import { Service, freePort } from '../lib/service.js';
import { waitFor, withDeadline } from '../lib/wait.js';

const RULES = `bucket_definitions:
  global:
    data:
      - SELECT id, list_id, description, created_by FROM todos
`;
// A short lease so the test's takeover is quick; renewal at a sixth of it.
const CLUSTER = 'cluster:\n  lease_duration_ms: 3000\n  lease_renew_ms: 500\n';

/**
 * A TCP balancer on loopback: each connection goes to the first of `ports` that accepts it.
 * Connections already proxied end when their backend does.
 */
async function balancer(ports) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const attempt = (i) => {
      if (i >= ports.length) return client.destroy();
      const backend = net.connect(ports[i], '127.0.0.1');
      backend.once('error', () => attempt(i + 1));
      backend.once('connect', () => {
        sockets.add(backend);
        backend.removeAllListeners('error');
        backend.on('error', () => client.destroy());
        backend.on('close', () => {
          sockets.delete(backend);
          client.destroy();
        });
        client.on('error', () => backend.destroy());
        client.on('close', () => backend.destroy());
        client.pipe(backend);
        backend.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

e2eTest('scale-out: a standby takes over replication and clients move to the other API node', async (ctx, t) => {
  const { source } = await ctx.databases();
  await source.query(`INSERT INTO lists (id, name, owner_id) VALUES ('L', 'shared', 'u1')`);
  const insert = (descriptions) =>
    source.query(
      `INSERT INTO todos (list_id, description, created_by) SELECT 'L', d, 'u1' FROM unnest($1::text[]) AS d`,
      [descriptions],
    );
  await insert(['before start']);

  const start = async (name, role) => {
    const port = await freePort();
    const configPath = path.join(ctx.dir, `${name}.yaml`);
    fs.writeFileSync(configPath, await ctx.config({ rules: RULES, port, extra: CLUSTER }));
    const service = new Service({ configPath, port, logPath: path.join(ctx.dir, `${name}.log`), args: ['--role', role] });
    ctx.services.push(service);
    service.spawn();
    return service;
  };
  const leader = await start('replicator-1', 'replicator');
  await leader.waitReady();
  const standby = await start('replicator-2', 'replicator');
  const apiA = await start('api-a', 'api');
  const apiB = await start('api-b', 'api');
  await Promise.all([standby.waitReady(), apiA.waitReady(), apiB.waitReady()]);

  const lbA = await balancer([apiA.port, apiB.port]);
  const lbB = await balancer([apiB.port, apiA.port]);
  const closers = [lbA, lbB];
  try {
    const alice = await ctx.client('alice', 'u1', lbA);
    const bob = await ctx.client('bob', 'u2', lbB);
    await alice.connect();
    await bob.connect();
    for (const c of [alice, bob]) await withDeadline(c.db.waitForFirstSync(), 30_000, `${c.name}: first sync`);

    const clients = [alice, bob];
    // Every client's uploads are in Postgres, and every client equals the source's todos, row for
    // row (read again on every poll: uploads land while it waits).
    const converge = async (label) => {
      const t0 = Date.now();
      const sourceTodos = async () => (await source.query(`SELECT id, description FROM todos`)).rows.map((r) => `${r.id} ${r.description}`).sort();
      let expected = [];
      // Twice round: a later client's upload may land after an earlier client was checked.
      for (const c of [...clients, ...clients]) {
        let local = [];
        await waitFor(
          async () => {
            if ((await crudCount(c.db)) > 0) return false;
            expected = await sourceTodos();
            local = (await localRows(c.db, 'todos')).map((r) => `${r.id} ${r.description}`).sort();
            return JSON.stringify(local) === JSON.stringify(expected);
          },
          {
            timeoutMs: 30_000,
            what: `${c.name} to upload its writes and hold the source's todos ${label}`,
            describe: () => `expected ${JSON.stringify(expected)}\nlocal ${JSON.stringify(local)}\n${c.logger.tail(30)}`,
          },
        );
      }
      t.diagnostic(`${label}: both clients converged in ${Date.now() - t0} ms (${expected.length} todos)`);
    };
    const clientWrite = (c, description) =>
      c.db.execute(`INSERT INTO todos (id, list_id, description, created_by) VALUES (uuid(), 'L', ?, ?)`, [description, c.name]);

    await insert(['one', 'two']);
    await clientWrite(alice, 'from alice on node A');
    await clientWrite(bob, 'from bob on node B');
    await converge('with every process up');

    // The leader dies: the standby takes the lease; writes during the takeover are not lost.
    await leader.kill('SIGKILL');
    await insert(['during the takeover']);
    await clientWrite(alice, 'alice during the takeover');
    await converge('after the leader was killed');
    const metrics = await (await fetch(`${standby.endpoint}/metrics`)).text();
    assert.match(metrics, /^riptide_lease_holder\S* 1$/m, 'the standby holds the lease');

    // API node A dies: alice's stream ends, her balancer sends the reconnect to node B.
    await apiA.kill('SIGKILL');
    await insert(['after node A died']);
    await clientWrite(alice, 'alice after node A died');
    await clientWrite(bob, 'bob after node A died');
    await converge('after API node A was killed');
    const open = await (await fetch(`${apiB.endpoint}/probes/readiness`)).json();
    assert.ok(open.open_streams >= 2, `both clients stream from node B: ${JSON.stringify(open)}`);
  } finally {
    for (const c of closers) await c.close();
  }
});
