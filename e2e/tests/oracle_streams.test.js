// Oracle test for Sync Streams with the official client (issue 14): generated streams
// (e2e/lib/oracle/streams_model.js: subqueries, nested subqueries, JOINs, a CTE, request values
// from the token, the connection and the subscription), random subscriptions with random
// parameters per client, and change batches that grant and revoke membership, move todos and
// change owners and orgs while the clients are subscribed. A stream query with a client's
// parameters substituted is plain SQL: the oracle's expected rows for a client are the union of
// its subscriptions' queries run on Postgres, and every @powersync/node client must converge to
// exactly them after every batch and every subscription change (no extra row = no leak).
// Strict on intermediate states: every client state sampled during the run (every 20 ms, one read
// transaction) must be the oracle state after some prefix of the transactions and subscription
// changes, in order (a failure unless ORACLE_STRICT_STATES=0).
//
// Seeded and reproducible: `ORACLE_SEED=N` (or `N,M`) runs only those seeds. A failure names the
// seed, the command to rerun it, the config, the subscriptions and the per-table diff; the scratch
// dir (kept on failure) has `oracle.sql` with every statement and subscription change.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { PowerSyncDatabase, Schema, Table, column } from '@powersync/node';
import { e2eTest } from '../lib/harness.js';
import { BufferLogger, PgConnector } from '../lib/client.js';
import { inTransaction } from '../lib/postgres.js';
import { withDeadline } from '../lib/wait.js';
import { SYNCED, StreamsModel } from '../lib/oracle/streams_model.js';
import { diff, stateKey } from '../lib/oracle/compare.js';

// Together these cover every generated feature: 5 (four streams, nested subqueries, connection and
// subscription parameters, NOT, OR, a stream of two queries), 29 (JOINs, the CTE, nested, NOT, OR),
// 35 (four streams, JOINs, the CTE, subscription parameters). Seeds 1-45 passed when this was written.
const DEFAULT_SEEDS = [5, 29, 35];
const BATCHES = 6;
const CONVERGE_TIMEOUT_MS = 30_000;
const STRICT_STATES = process.env.ORACLE_STRICT_STATES !== '0';

const seeds = process.env.ORACLE_SEED
  ? process.env.ORACLE_SEED.split(',').map((s) => Number.parseInt(s.trim(), 10))
  : DEFAULT_SEEDS;
const reproduce = (seed) => `cd e2e && ORACLE_SEED=${seed} node --test --test-concurrency=1 tests/oracle_streams.test.js`;

const schema = new Schema(
  Object.fromEntries(
    Object.entries(SYNCED).map(([table, cols]) => [
      table,
      new Table(Object.fromEntries(cols.map((c) => [c.name, c.kind === 'text' ? column.text : column.integer]))),
    ]),
  ),
);

/** A value as both sides compare it: text, or the decimal text of a number (booleans 1/0). */
const norm = (v) => (v == null ? null : typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
const toMap = (table, rows) => {
  const map = new Map();
  for (const r of rows) {
    const row = Object.fromEntries(SYNCED[table].map((c) => [c.name, norm(r[c.name])]));
    if (map.has(r.id)) row.__duplicate = true;
    map.set(r.id, row);
  }
  return map;
};

/** What the client's subscriptions grant it, by Postgres: `Map(table → Map(id → row))`. */
async function oracleRows(pool, model, client) {
  const result = new Map(Object.keys(SYNCED).map((t) => [t, new Map()]));
  for (const { table, sql } of model.oracleQueries(client)) {
    for (const [id, row] of toMap(table, (await pool.query(sql)).rows)) result.get(table).set(id, row);
  }
  return result;
}

/** What the client holds, in one read transaction. */
async function localRows(db) {
  return db.readTransaction(async (tx) => {
    const result = new Map();
    for (const [table, cols] of Object.entries(SYNCED)) {
      const select = ['id', ...cols.map((c) => (c.kind === 'text' ? c.name : `CAST(${c.name} AS TEXT) AS ${c.name}`))];
      result.set(table, toMap(table, await tx.getAll(`SELECT ${select.join(', ')} FROM ${table}`)));
    }
    return result;
  });
}

async function run(ctx, t, seed) {
  const started = Date.now();
  const model = new StreamsModel(seed);
  const config = model.configYaml();
  const sqlLog = path.join(ctx.dir, 'oracle.sql');
  const log = (text) => fs.appendFileSync(sqlLog, `${text}\n`);
  log(`-- seed ${seed}\n-- config:\n${config.replace(/^/gm, '-- ')}\n${model.schemaSql()}`);
  const context = () =>
    `seed ${seed} (reproduce: ${reproduce(seed)})\nclients: ${JSON.stringify(model.clients)}\nconfig:\n${config}\nstatements: ${sqlLog}`;

  const { source } = await ctx.databases();
  await source.query(model.schemaSql());
  await inTransaction(source, async (c) => {
    for (const s of model.initialSql()) {
      log(`${s};`);
      await c.query(s);
    }
  });
  const batches = model.changeBatches(BATCHES);
  const service = await ctx.startService({ rules: config });

  // Per client: every oracle state it may hold, in order (see the header).
  const clients = [];
  const record = async (c, label) => {
    const state = await oracleRows(source, model, c.model);
    c.history.push({ key: stateKey(state), state, label });
  };
  const connect = async (m) => {
    const name = `streams-${seed}-${m.user}`;
    const logger = new BufferLogger(name);
    const db = new PowerSyncDatabase({ schema, database: { dbFilename: `${name}.sqlite`, dbLocation: ctx.dir }, logger });
    await db.init();
    ctx.clients.push({ name, db, logger });
    const connector = new PgConnector({
      endpoint: service.endpoint,
      getToken: () => ctx.token(m.user, m.claims),
      sourcePool: source,
    });
    const options = { retryDelayMs: 250, params: m.connParams };
    const c = { model: m, db, logger, connector, options, handles: [], history: [], samples: [], online: false };
    clients.push(c);
    await record(c, 'initial rows');
    await db.connect(connector, options);
    c.online = true;
    return c;
  };

  let stopped = false;
  const sample = async (c) => {
    try {
      while (!stopped) {
        const state = await localRows(c.db);
        c.samples.push({ at: Date.now(), key: stateKey(state), state });
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (e) {
      if (!stopped) c.samplingError = e;
    }
  };

  const applyBatch = async (b) => {
    for (const [i, tx] of batches[b].entries()) {
      log(`-- batch ${b} transaction ${i}\nBEGIN;`);
      await inTransaction(source, async (conn) => {
        for (const s of tx) {
          log(`${s};`);
          await conn.query(s);
        }
      });
      log('COMMIT;');
      for (const c of clients) await record(c, `batch ${b} transaction ${i}`);
    }
  };

  // Subscribes or unsubscribes (all of that stream and parameters, TTL too) as the model says.
  const changeSubscriptions = async (c, label) => {
    const change = model.subscriptionChange(c.model);
    if (!change) return;
    const { op, stream, params } = change;
    log(`-- ${label}: ${c.model.user} ${op}s ${stream} ${JSON.stringify(params)}`);
    if (op === 'subscribe') c.handles.push(await c.db.syncStream(stream, params).subscribe());
    else await c.db.syncStream(stream, params).unsubscribeAll();
    await record(c, `${label}: ${op} ${stream} ${JSON.stringify(params)}`);
  };

  const converge = async (label) => {
    const t0 = Date.now();
    const expected = await Promise.all(clients.map((c) => oracleRows(source, model, c.model)));
    let diffs;
    for (;;) {
      diffs = await Promise.all(clients.map(async (c, i) => diff(expected[i], await localRows(c.db))));
      if (diffs.every((d) => d.length === 0)) break;
      if (Date.now() > t0 + CONVERGE_TIMEOUT_MS) {
        const report = clients
          .map((c, i) => (diffs[i].length ? `user ${c.model.user} (subscriptions ${JSON.stringify(c.model.subscriptions)}):\n  ${diffs[i].slice(0, 40).join('\n  ')}\n  client log: ${c.logger.tail(10)}` : ''))
          .filter(Boolean)
          .join('\n');
        assert.fail(`clients did not converge to the oracle ${label} within ${CONVERGE_TIMEOUT_MS} ms\n${report}\n\n${context()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const counts = expected.map((e, i) => `${clients[i].model.user}:${[...e.values()].reduce((n, m) => n + m.size, 0)}`);
    t.diagnostic(`seed ${seed} ${label}: converged in ${Date.now() - t0} ms (rows per user ${counts.join(' ')})`);
  };

  try {
    for (const m of model.clients) await connect(m);
    // Each client subscribes to one or two streams before its first sync.
    for (const c of clients) {
      await changeSubscriptions(c, 'before the first sync');
      if (model.rng.bool(0.5)) await changeSubscriptions(c, 'before the first sync');
    }
    for (const c of clients) {
      await withDeadline(c.db.waitForFirstSync(), 60_000, `waitForFirstSync of ${c.model.user} (${context()})`);
      c.sampling = sample(c);
    }
    await converge('after the first sync');
    for (let b = 0; b < batches.length; b++) {
      // From batch 2 on, one client is offline during the batch and changes its subscriptions
      // while offline; it reconnects after the batch.
      const away = b >= 2 ? clients[b % clients.length] : null;
      if (away) {
        await away.db.disconnect();
        await changeSubscriptions(away, `offline before batch ${b}`);
      }
      await applyBatch(b);
      if (away) await away.db.connect(away.connector, away.options);
      await converge(`after change batch ${b}${away ? ` (${away.model.user} reconnected)` : ''}`);
      for (const c of clients) if (c !== away && model.rng.bool(0.6)) await changeSubscriptions(c, `after batch ${b}`);
      await converge(`after the subscription changes following batch ${b}`);
    }
  } finally {
    stopped = true;
    await Promise.all(clients.map((c) => c.sampling));
  }
  for (const c of clients) if (c.samplingError) throw c.samplingError;

  const problems = [];
  for (const c of clients) {
    let at = 0;
    let lastKey;
    let distinct = 0;
    for (const s of c.samples) {
      if (s.key === lastKey) continue;
      lastKey = s.key;
      distinct += 1;
      let j = at;
      while (j < c.history.length && c.history[j].key !== s.key) j++;
      if (j === c.history.length) {
        const earlier = c.history.findIndex((h) => h.key === s.key);
        problems.push(
          earlier >= 0
            ? `user ${c.model.user}: went back to the state after "${c.history[earlier].label}" after having held the one after "${c.history[at].label}"`
            : `user ${c.model.user}: held a state that is no oracle state (at ${new Date(s.at).toISOString()}); vs the state after "${c.history[at].label}":\n  ${diff(c.history[at].state, s.state).slice(0, 20).join('\n  ')}`,
        );
        break;
      }
      at = j;
    }
    t.diagnostic(`seed ${seed} ${c.model.user}: ${c.samples.length} samples, ${distinct} distinct states, ${c.history.length} oracle states`);
  }
  if (problems.length && !STRICT_STATES) {
    t.diagnostic(`intermediate-state violations (not failed: ORACLE_STRICT_STATES=0), seed ${seed}:\n${problems.join('\n')}`);
  } else {
    assert.deepEqual(problems, [], `${problems.join('\n')}\n\n${context()}`);
  }
  t.diagnostic(`seed ${seed}: ok in ${Date.now() - started} ms (${model.streams.length} streams, CTE ${model.ctes.size > 0})`);
}

for (const seed of seeds) {
  e2eTest(`streams oracle with @powersync/node, seed ${seed}`, async (ctx, t) => {
    try {
      await run(ctx, t, seed);
    } catch (e) {
      if (e && typeof e === 'object' && typeof e.message === 'string' && !e.message.includes('reproduce:')) {
        e.message = `${e.message}\n\nstreams oracle seed ${seed}; reproduce: ${reproduce(seed)}`;
      }
      throw e;
    }
  });
}
