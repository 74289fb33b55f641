// Differential test of Sync Streams against PowerSync's own compiler and evaluator
// (`@powersync/service-sync-rules` 0.38.1, test-only): for a corpus of stream definitions (the
// examples of PowerSync's Sync Streams docs and edge cases) both accept or both refuse, and for
// generated rows, tokens and subscriptions both assign the same rows (with the same synced
// values) to the same subscriptions. Riptide runs through `riptide rules eval`.
//
// `STREAMS_SEED=N` runs one generated seed; `STREAMS_SEEDS=N` sets how many (default 150).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { powersyncEval, riptideEval } from '../lib/powersync_rules.js';
import { corpus, knownDivergences, docsExamples } from '../lib/streams_corpus.js';
import { generateJob } from '../lib/streams_generator.js';

/** `config: edition: 3` + one auto-subscribed stream with this query. */
function single(query, extra = '') {
  return `config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n${extra}    query: ${JSON.stringify(query)}\n`;
}

/** Rows as comparable values: ints and reals as numbers, keys sorted. */
function canonicalData(text) {
  const v = JSON.parse(text, (_, x) => x);
  return JSON.stringify(Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))));
}

function canonicalRows(connection) {
  const out = {};
  // A row in several buckets may have different columns in each (different queries): compare
  // the set of versions.
  for (const [key, { data, via }] of Object.entries(connection.rows)) {
    const versions = [...new Set((Array.isArray(data) ? data : [data]).map(canonicalData))].sort();
    out[key] = { data: versions, via: [...via].sort() };
  }
  return out;
}

/** Compares both answers of one job; returns a description of the first difference. */
function difference(job, ours, theirs) {
  if (ours.ok !== theirs.ok) {
    return `accept/refuse differ: riptide ${ours.ok ? 'accepts' : `refuses (${JSON.stringify(ours.errors)})`}, PowerSync ${
      theirs.ok ? 'accepts' : `refuses (${JSON.stringify(theirs.errors)})`
    }`;
  }
  if (!ours.ok) return null;
  for (let i = 0; i < job.connections.length; i++) {
    const a = canonicalRows(ours.connections[i]);
    const b = canonicalRows(theirs.connections[i]);
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of [...keys].sort()) {
      const x = JSON.stringify(a[key] ?? null);
      const y = JSON.stringify(b[key] ?? null);
      if (x !== y) {
        return `connection ${i} (${JSON.stringify(job.connections[i])}) row ${key}: riptide ${x}, PowerSync ${y}`;
      }
    }
  }
  return null;
}

test('streams: accept/refuse parity on the corpus', async () => {
  const failures = [];
  for (const entry of [...docsExamples, ...corpus]) {
    const yaml = entry.yaml ?? single(entry.query);
    const job = { yaml, tables: {}, connections: [] };
    const [ours, theirs] = [riptideEval(job), await powersyncEval(job)];
    const divergence = knownDivergences.find((d) => d.query === entry.query && d.yaml === entry.yaml);
    if (divergence) {
      // A documented refusal of ours: PowerSync accepts it but evaluates it so that no row
      // could ever be synced, or fails at evaluation; we say so at compile time instead.
      if (ours.ok || !theirs.ok) {
        failures.push(`${entry.query ?? entry.yaml}: expected riptide to refuse what PowerSync accepts (${divergence.reason})`);
      }
      continue;
    }
    if (ours.ok !== theirs.ok) {
      failures.push(
        `${entry.query ?? entry.yaml}\n  riptide: ${ours.ok ? 'accepts' : JSON.stringify(ours.errors)}\n  PowerSync: ${
          theirs.ok ? 'accepts' : JSON.stringify(theirs.errors)
        }`,
      );
    }
  }
  assert.equal(failures.length, 0, failures.join('\n\n'));
});

test('streams: refusals name a line and column', async () => {
  for (const entry of corpus.filter((e) => e.refused)) {
    const job = { yaml: entry.yaml ?? single(entry.query), tables: {}, connections: [] };
    const ours = riptideEval(job);
    assert.equal(ours.ok, false, entry.query);
    for (const e of ours.errors) {
      assert.ok(e.line >= 1 && e.column >= 1 && e.message.length > 0, JSON.stringify(e));
    }
  }
});

test('streams: generated rows, tokens and subscriptions get the same rows', async () => {
  const only = process.env.STREAMS_SEED;
  const count = Number(process.env.STREAMS_SEEDS ?? 150);
  const seeds = only !== undefined ? [Number(only)] : Array.from({ length: count }, (_, i) => i + 1);
  const failures = [];
  let compared = 0;
  let refusedByBoth = 0;
  for (const seed of seeds) {
    const job = generateJob(seed);
    const [ours, theirs] = [riptideEval(job), await powersyncEval(job)];
    const diff = difference(job, ours, theirs);
    if (diff) {
      failures.push(`seed ${seed}:\n${job.yaml}\n${diff}`);
      if (failures.length >= 5) break;
    } else if (ours.ok) {
      compared++;
    } else {
      refusedByBoth++;
    }
  }
  assert.equal(failures.length, 0, failures.join('\n\n'));
  // The generator must mostly produce accepted configs, or the comparison proves little.
  assert.ok(compared >= seeds.length * 0.6, `only ${compared} of ${seeds.length} seeds were accepted (${refusedByBoth} refused by both)`);
});
