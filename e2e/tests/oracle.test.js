// Oracle test with the official client (issue 3, first acceptance line): generated schemas, rows,
// changes and rules within the supported classic subset; after convergence each @powersync/node
// client's local tables equal what the rules, evaluated by plain SQL over Postgres, grant its token.
//
// Seeded and reproducible: the seeds below run in CI; `ORACLE_SEED=N` (or `ORACLE_SEED=1,2,3`)
// runs only those. A failure names its seed, the command to rerun it, the generated rules and the
// per-table, per-user diff; the scratch dir (kept on failure) has `oracle.sql`, every statement
// applied, and the clients' SQLite files.
//
// Per seed (e2e/lib/oracle/generate.js): edition 1 or 2; 2–4 source tables (text or uuid ids, key
// columns owner/grp/team[/tags], 2–5 payload columns of text, integer, bigint, boolean, numeric,
// real, double, uuid, jsonb, timestamptz, date, text[]), a membership table; bucket definitions
// drawn from: global, per user (request.user_id()), membership parameter query (optionally
// `AND active = true`, or two columns), token_parameters claim, request.jwt() path, json_each of a
// JWT array claim, a static parameter query with a WHERE on the token, request.parameters()
// (client params), `bucket.g IN <row array>`; 1–2 output projections per table (`*`, column
// subsets, aliases, computed columns, renamed output tables); data-query filters (comparisons,
// AND/OR/NOT, IS [NOT] NULL, IS [NOT] value, IN lists, arithmetic, functions, JSON extraction,
// text-vs-number ordering). 3–4 clients with different users and claims: all but one connect
// while the initial rows exist and a first batch of transactions is written during their initial
// sync; the last connects after the second batch. Six batches of change transactions (inserts,
// multi-row inserts, updates of key and payload columns, bulk updates, deletes, id reuse,
// primary-key changes, TRUNCATE, membership grants and revocations), each followed by a
// convergence check: every client's tables equal the oracle exactly (no extra row = no leak, no
// missing row, exact values).
// In addition every client state sampled during the run (every 20 ms, read in one transaction)
// must equal the oracle state after some prefix of the transactions, in commit order (a failure
// unless ORACLE_STRICT_STATES=0; see STRICT_STATES).
// Compaction (docs/protocol.md §3.6; off with ORACLE_COMPACT=0): the service compacts in the
// background every second, and after every batch the test forces a compaction of every bucket
// through the admin API, also while batches 3 and 5 are being written. Before each of batches
// 2..5 one client disconnects; it reconnects after the batch and the compaction, resuming from
// positions older than the compaction.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { BufferLogger, PgConnector } from '../lib/client.js';
import { inTransaction } from '../lib/postgres.js';
import { withDeadline } from '../lib/wait.js';
import { Model } from '../lib/oracle/generate.js';
import { diff, localRows, openOracleClient, oracleRows, stateKey } from '../lib/oracle/compare.js';

// Seed 3 found the `bucket.p IN <row array>` prefix bug (see git log); 63 and 113 together cover every
// generated feature (both editions, both group key types, every definition kind, column type, id
// type, `*`, renamed outputs and computed columns).
const DEFAULT_SEEDS = [3, 63, 113];
const CONVERGE_TIMEOUT_MS = 30_000;
/**
 * Whether a sampled client state that is no oracle state fails the test (on unless
 * ORACLE_STRICT_STATES=0). Seed 231 found a session bug this way (fixed in session/driver.rs
 * `resolve`): the bucket set was read from lookups newer than the checkpoint's data.
 */
const STRICT_STATES = process.env.ORACLE_STRICT_STATES !== '0';
/** Whether compaction runs (see the header); on unless ORACLE_COMPACT=0. */
const COMPACT = process.env.ORACLE_COMPACT !== '0';
const ADMIN_TOKEN = 'oracle-admin';

const seeds = process.env.ORACLE_SEED
  ? process.env.ORACLE_SEED.split(',').map((s) => Number.parseInt(s.trim(), 10))
  : DEFAULT_SEEDS;

const reproduce = (seed) => `cd e2e && ORACLE_SEED=${seed} node --test --test-concurrency=1 tests/oracle.test.js`;

async function run(ctx, t, seed) {
  const started = Date.now();
  const model = new Model(seed);
  const rules = model.rulesYaml();
  const sqlLog = path.join(ctx.dir, 'oracle.sql');
  const log = (text) => fs.appendFileSync(sqlLog, `${text}\n`);
  log(`-- seed ${seed}, edition ${model.edition}\n-- rules:\n${rules.replace(/^/gm, '-- ')}\n${model.schemaSql()}`);
  const context = () =>
    `seed ${seed} (reproduce: ${reproduce(seed)})\nusers: ${JSON.stringify(model.users)}\nrules:\n${rules}\nstatements: ${sqlLog}`;

  const { source } = await ctx.databases();
  await source.query(model.schemaSql());
  const initial = model.initialRows();
  await inTransaction(source, async (c) => {
    for (const s of initial) {
      log(`${s};`);
      await c.query(s);
    }
  });

  const service = await ctx.startService({
    rules,
    extra: `api:\n  tokens: [${ADMIN_TOKEN}]\ncompaction:\n  threshold: 1\n  interval_seconds: 1\n`,
  });
  // Forces a compaction of every bucket of the active deployment (all: also buckets whose
  // superseded-op counter is 0, so the leading REMOVEs of a bucket are cleared too).
  const compactions = [];
  const compact = async (label) => {
    if (!COMPACT) return;
    const res = await fetch(`${service.endpoint}/api/compact/v1/run`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ min_superseded: 0 }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, `compaction ${label}: ${JSON.stringify(body)}`);
    compactions.push({ label, ...body.data });
    return body.data;
  };
  // Compactions back to back until `done` settles.
  const compactWhile = async (done, label) => {
    let settled = false;
    const settle = () => {
      settled = true;
    };
    done.then(settle, settle);
    while (!settled && COMPACT) await compact(label);
    await done;
  };
  const batches = model.changeBatches(6);

  // The oracle state of every user after each transaction (index 0: the initial rows). Every
  // state a client is seen holding must be one of these, in order: no leak, no torn transaction,
  // no going back, not even between convergence points.
  const history = new Map(model.users.map((u) => [u.id, []]));
  const recordOracle = async (label) => {
    for (const user of model.users) {
      const state = await oracleRows(source, model, user);
      history.get(user.id).push({ key: stateKey(state), state, label });
    }
  };
  await recordOracle('initial rows');

  const applyBatch = async (b) => {
    for (const [i, tx] of batches[b].entries()) {
      log(`-- batch ${b} transaction ${i}\nBEGIN;`);
      await inTransaction(source, async (c) => {
        for (const s of tx) {
          log(`${s};`);
          await c.query(s);
        }
      });
      log('COMMIT;');
      await recordOracle(`batch ${b} transaction ${i}`);
    }
  };

  // One client per user, each with its own token: `parameters.team` (token_parameters) and a
  // `groups` array claim (json_each).
  const clients = [];
  const connect = async (user) => {
    const name = `oracle-${seed}-${user.id}`;
    const logger = new BufferLogger(name);
    const db = await openOracleClient({ model, dir: ctx.dir, name, logger });
    ctx.clients.push({ name, db, logger });
    const connector = new PgConnector({
      endpoint: service.endpoint,
      getToken: () => ctx.token(user.id, { parameters: { team: user.team }, groups: user.groups }),
      sourcePool: source,
    });
    const options = { retryDelayMs: 250, params: { team: user.clientTeam } };
    await db.connect(connector, options);
    const client = { user, db, samples: [], sampling: null, connector, options };
    clients.push(client);
    return client;
  };
  // After its first sync, each client's local state is sampled continuously until the end.
  let stopped = false;
  const sample = async (c) => {
    try {
      while (!stopped) {
        const state = await localRows(c.db, model);
        c.samples.push({ at: Date.now(), key: stateKey(state), state });
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (e) {
      if (!stopped) c.samplingError = e;
    }
  };
  const stopSampling = async () => {
    stopped = true;
    await Promise.all(clients.map((c) => c.sampling));
  };

  const firstSync = async (c) => {
    await withDeadline(c.db.waitForFirstSync(), 60_000, `waitForFirstSync of ${c.user.id} (${context()})`);
    c.sampling = sample(c);
  };

  const converge = async (label) => {
    const t0 = Date.now();
    const expected = await Promise.all(clients.map((c) => oracleRows(source, model, c.user)));
    const deadline = t0 + CONVERGE_TIMEOUT_MS;
    let diffs;
    for (;;) {
      diffs = await Promise.all(clients.map(async (c, i) => diff(expected[i], await localRows(c.db, model))));
      if (diffs.every((d) => d.length === 0)) break;
      if (Date.now() > deadline) {
        const report = clients
          .map((c, i) =>
            diffs[i].length
              ? `user ${c.user.id} (team ${c.user.team}, groups ${JSON.stringify(c.user.groups)}):\n  ${diffs[i].slice(0, 40).join('\n  ')}`
              : '',
          )
          .filter(Boolean)
          .join('\n');
        assert.fail(`clients did not converge to the oracle ${label} within ${CONVERGE_TIMEOUT_MS} ms\n${report}\n\n${context()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const counts = expected.map((e, i) => `${clients[i].user.id}:${[...e.values()].reduce((n, m) => n + m.size, 0)}`);
    t.diagnostic(`seed ${seed} ${label}: converged in ${Date.now() - t0} ms (rows per user ${counts.join(' ')})`);
  };

  const changesAndChecks = async () => {
    // All users but the last connect while the initial rows exist; batch 0 is written while their
    // initial sync runs; the last user connects only after batch 1 (initial sync of changed buckets).
    const early = model.users.slice(0, -1);
    const late = model.users[model.users.length - 1];
    const connected = [];
    for (const user of early) connected.push(await connect(user));
    await applyBatch(0);
    await Promise.all(connected.map(firstSync));
    t.diagnostic(`seed ${seed}: service ready and first sync of ${connected.length} clients after ${Date.now() - started} ms`);
    await converge('after the initial sync (batch 0 written during it)');
    await compact('after batch 0');
    await applyBatch(1);
    await compact('after batch 1');
    await converge('after change batch 1');
    await firstSync(await connect(late));
    await converge(`after ${late.id} connected`);
    for (let b = 2; b < batches.length; b++) {
      // One client misses the batch and the compaction after it, and resumes from before them.
      const away = COMPACT ? clients[b % clients.length] : null;
      if (away) await away.db.disconnect();
      if (COMPACT && b % 2 === 1) await compactWhile(applyBatch(b), `during batch ${b}`);
      else await applyBatch(b);
      await compact(`after batch ${b}`);
      if (away) await away.db.connect(away.connector, away.options);
      await converge(`after change batch ${b}${away ? ` (${away.user.id} reconnected)` : ''}`);
    }
  };
  try {
    await changesAndChecks();
  } finally {
    await stopSampling();
  }
  for (const c of clients) if (c.samplingError) throw c.samplingError;

  // Every sampled state is an oracle state, and the states follow the transaction order.
  const problems = [];
  for (const c of clients) {
    const states = history.get(c.user.id);
    let at = 0;
    let distinct = 0;
    let lastKey;
    for (const s of c.samples) {
      if (s.key === lastKey) continue;
      lastKey = s.key;
      distinct += 1;
      let j = at;
      while (j < states.length && states[j].key !== s.key) j++;
      if (j === states.length) {
        const earlier = states.findIndex((h) => h.key === s.key);
        const near = diff(states[at].state, s.state);
        const next = at + 1 < states.length ? diff(states[at + 1].state, s.state) : [];
        problems.push(
          earlier >= 0
            ? `user ${c.user.id}: went back to the state after "${states[earlier].label}" after having held the one after "${states[at].label}"`
            : `user ${c.user.id}: held a state that is no oracle state (at ${new Date(s.at).toISOString()}); vs the state after "${states[at].label}":\n  ${near.slice(0, 20).join('\n  ')}` +
                (next.length ? `\n  vs the state after "${states[at + 1].label}":\n  ${next.slice(0, 20).join('\n  ')}` : ''),
        );
        break;
      }
      at = j;
    }
    t.diagnostic(`seed ${seed} ${c.user.id}: ${c.samples.length} samples, ${distinct} distinct states`);
  }
  if (problems.length && !STRICT_STATES) {
    t.diagnostic(`intermediate-state violations (not failed: ORACLE_STRICT_STATES=0), seed ${seed}:\n${problems.join('\n')}`);
  } else {
    assert.deepEqual(problems, [], `${problems.join('\n')}\n\n${context()}`);
  }
  if (COMPACT) {
    const sum = (k) => compactions.reduce((n, c) => n + (c[k] ?? 0), 0);
    assert.ok(compactions.length > 0, 'no compaction ran');
    // Background and forced runs together, and the checkpoints streams abandoned because of them.
    const metrics = await (await fetch(`${service.endpoint}/metrics`)).text();
    const metric = (name) =>
      metrics
        .split('\n')
        .filter((l) => l.startsWith(`${name} `))
        .reduce((n, l) => n + Number(l.split(' ')[1]), 0);
    t.diagnostic(
      `seed ${seed}: ${compactions.length} forced compactions (${sum('buckets')} buckets, ${sum('ops_moved')} ops moved, ${sum('ops_removed')} removed); ` +
        `all runs: ${metric('riptide_compaction_runs_total')}, ${metric('riptide_compaction_ops_moved_total')} ops moved, ` +
        `${metric('riptide_compaction_ops_removed_total')} removed; checkpoints abandoned: ${metric('riptide_sync_checkpoints_invalidated_total')}`,
    );
  }
  t.diagnostic(`seed ${seed}: ok in ${Date.now() - started} ms (edition ${model.edition}, ${model.tables.length} tables, ${model.defs.length} definitions, ${model.outputs.length} output tables)`);
}

for (const seed of seeds) {
  e2eTest(`oracle with @powersync/node, seed ${seed}`, async (ctx, t) => {
    try {
      await run(ctx, t, seed);
    } catch (e) {
      if (e && typeof e === 'object' && typeof e.message === 'string' && !e.message.includes('reproduce:')) {
        e.message = `${e.message}\n\noracle seed ${seed}; reproduce: ${reproduce(seed)}`;
      }
      throw e;
    }
  });
}
