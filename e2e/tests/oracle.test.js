// Oracle test with the official client (issue 3, first acceptance line): generated schemas, rows,
// changes and rules within the supported classic subset; after convergence each @powersync/node
// client's local tables equal what the rules, evaluated by plain SQL over Postgres, grant its token.
//
// Seeded and reproducible: the seeds below run in CI; `ORACLE_SEED=N` (or `ORACLE_SEED=1,2,3`)
// runs only those. A failure names its seed, the command to rerun it, the generated rules and the
// per-table, per-user diff; the scratch dir keeps `oracle.sql` (every statement applied).
//
// Per seed: 2–4 source tables (text or uuid ids; random payload columns of the §8 types), a
// membership table, 3–6 bucket definitions (global, per-user, membership parameter query, token
// parameter), 1–2 output projections per table (column subsets, aliases, renamed output tables),
// random data-query filters (comparisons, AND/OR/NOT, IS [NOT] NULL, IN lists); 3–4 clients with
// different users and `parameters` claims connect while the initial rows exist; then three batches
// of change transactions (inserts, updates of key and payload columns, deletes, id reuse, primary-key
// changes, membership grants and revocations), each followed by a convergence check.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { e2eTest } from '../lib/harness.js';
import { BufferLogger, PgConnector } from '../lib/client.js';
import { inTransaction } from '../lib/postgres.js';
import { withDeadline } from '../lib/wait.js';
import { Model } from '../lib/oracle/generate.js';
import { diff, localRows, openOracleClient, oracleRows } from '../lib/oracle/compare.js';

const DEFAULT_SEEDS = [1, 2, 3];
const CONVERGE_TIMEOUT_MS = 30_000;

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

  const service = await ctx.startService({ rules });

  // One client per user, each with its own token (`parameters` claim → token_parameters).
  const clients = [];
  for (const user of model.users) {
    const name = `oracle-${seed}-${user.id}`;
    const logger = new BufferLogger(name);
    const db = await openOracleClient({ model, dir: ctx.dir, name, logger });
    ctx.clients.push({ name, db, logger });
    const connector = new PgConnector({
      endpoint: service.endpoint,
      getToken: () => ctx.token(user.id, { parameters: { team: user.team } }),
      sourcePool: source,
    });
    await db.connect(connector, { retryDelayMs: 250 });
    clients.push({ user, db });
  }
  await Promise.all(
    clients.map((c) => withDeadline(c.db.waitForFirstSync(), 60_000, `waitForFirstSync of ${c.user.id} (${context()})`)),
  );

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
          .map((c, i) => (diffs[i].length ? `user ${c.user.id} (team ${c.user.team}):\n  ${diffs[i].slice(0, 40).join('\n  ')}` : ''))
          .filter(Boolean)
          .join('\n');
        assert.fail(`clients did not converge to the oracle ${label} within ${CONVERGE_TIMEOUT_MS} ms\n${report}\n\n${context()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const counts = expected.map((e, i) => `${clients[i].user.id}:${[...e.values()].reduce((n, m) => n + m.size, 0)}`);
    t.diagnostic(`seed ${seed} ${label}: converged in ${Date.now() - t0} ms (rows per user ${counts.join(' ')})`);
  };

  await converge('after the initial sync');
  const batches = model.changeBatches(3);
  for (const [b, batch] of batches.entries()) {
    for (const [i, tx] of batch.entries()) {
      log(`-- batch ${b} transaction ${i}\nBEGIN;`);
      await inTransaction(source, async (c) => {
        for (const s of tx) {
          log(`${s};`);
          await c.query(s);
        }
      });
      log('COMMIT;');
    }
    await converge(`after change batch ${b + 1}/${batches.length}`);
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
