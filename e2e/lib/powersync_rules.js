// PowerSync's own sync-rules compiler and evaluator (`@powersync/service-sync-rules`, a test-only
// dependency; FSL-licensed, never shipped) run on the same JSON jobs as `riptide rules eval`, for
// the differential test. See crates/riptide-rules/src/job.rs for the job and answer format.
import { spawnSync } from 'node:child_process';
import { RIPTIDE_BIN } from './env.js';

let loaded = null;

/** Loads the package (it needs Object.groupBy / Map.groupBy, which Node 20 lacks). */
export async function powersyncRules() {
  if (loaded) return loaded;
  if (!Object.groupBy) {
    Object.groupBy = (items, key) => {
      const out = Object.create(null);
      let i = 0;
      for (const item of items) (out[key(item, i++)] ??= []).push(item);
      return out;
    };
  }
  if (!Map.groupBy) {
    Map.groupBy = (items, key) => {
      const out = new Map();
      let i = 0;
      for (const item of items) {
        const k = key(item, i++);
        if (!out.has(k)) out.set(k, []);
        out.get(k).push(item);
      }
      return out;
    };
  }
  loaded = await import('@powersync/service-sync-rules');
  return loaded;
}

/** A JSON value of a job as PowerSync's row value: integers as bigint, `{real: x}` as a number. */
function sqliteValue(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof v.real === 'number') return v.real;
  return JSON.stringify(v);
}

function tableRef(name) {
  const [schema, table] = name.includes('.') ? name.split('.', 2) : ['public', name];
  return { connectionTag: 'default', schema, name: table };
}

/** Runs a job through PowerSync's package; same answer shape as `riptide rules eval`. */
export async function powersyncEval(job) {
  const sr = await powersyncRules();
  let config;
  let errors;
  try {
    ({ config, errors } = sr.SqlSyncRules.fromYaml(job.yaml, { defaultSchema: 'public', throwOnError: false }));
  } catch (e) {
    return { ok: false, errors: [{ message: `threw: ${e.message}` }], warnings: [], connections: [] };
  }
  const fatal = errors.filter((e) => e.type !== 'warning');
  const describe = (e) => ({ message: e.message, type: e.type });
  if (fatal.length > 0) {
    return { ok: false, errors: fatal.map(describe), warnings: [], connections: [] };
  }
  let hydrated;
  try {
    hydrated = config.hydrate({ hydrationState: sr.DEFAULT_HYDRATION_STATE, sqlite: null });
  } catch (e) {
    return { ok: false, errors: [{ message: `hydration threw: ${e.message}` }], warnings: [], connections: [] };
  }
  const bucketRows = new Map();
  const lookups = new Map();
  for (const [name, rows] of Object.entries(job.tables ?? {})) {
    const sourceTable = tableRef(name);
    for (const raw of rows) {
      const record = {};
      for (const [k, v] of Object.entries(raw)) record[k] = sqliteValue(v);
      const { results } = hydrated.evaluateRowWithErrors({ sourceTable, record });
      for (const r of results) {
        if (!bucketRows.has(r.bucket)) bucketRows.set(r.bucket, []);
        bucketRows.get(r.bucket).push({ table: r.table, id: r.id, data: r.data });
      }
      const params = hydrated.evaluateParameterRowWithErrors(sourceTable, record);
      for (const p of params.results) {
        const key = p.lookup.serializedRepresentation;
        if (!lookups.has(key)) lookups.set(key, []);
        lookups.get(key).push(...p.bucketParameters);
      }
    }
  }
  const connections = [];
  for (const c of job.connections ?? []) {
    connections.push(await connection(sr, hydrated, c, bucketRows, lookups));
  }
  return { ok: true, errors: [], warnings: errors.map(describe), connections };
}

async function connection(sr, hydrated, c, bucketRows, lookups) {
  const token = { sub: undefined, ...(c.token ?? {}) };
  const payload = new sr.BaseJwtPayload(token);
  const globalParameters = new sr.RequestParameters(payload, c.parameters ?? {});
  const streams = {};
  (c.subscriptions ?? []).forEach((s, i) => {
    (streams[s.stream] ??= []).push({
      priorityOverride: s.override_priority ?? null,
      parameters: s.parameters ?? {},
      opaque_id: i,
    });
  });
  const { querier, errors } = hydrated.getBucketParameterQuerier({
    globalParameters,
    hasDefaultStreams: c.include_defaults ?? true,
    streams,
  });
  let buckets = [...querier.staticBuckets];
  if (querier.hasDynamicBuckets) {
    buckets.push(
      ...(await querier.queryDynamicBucketDescriptions({
        async getParameterSets(requested) {
          return requested.map((lookup) => ({ lookup, rows: lookups.get(lookup.serializedRepresentation) ?? [] }));
        },
      })),
    );
  }
  buckets = sr.mergeBuckets(buckets);
  const via = (b) =>
    b.inclusion_reasons.map((r) => (r === 'default' ? `default:${b.definition}` : `sub:${r.subscription}`));
  const rows = {};
  const out = [];
  for (const b of buckets) {
    const reasons = via(b);
    out.push({ name: b.bucket, priority: b.priority, via: reasons });
    // The same row twice in one bucket: the later op wins on the client.
    const latest = new Map();
    for (const r of bucketRows.get(b.bucket) ?? []) latest.set(`${r.table}/${r.id}`, r);
    for (const [key, r] of latest) {
      const entry = (rows[key] ??= { data: [], via: [] });
      const data = JSON.stringify(r.data, (_, v) => (typeof v === 'bigint' ? Number(v) : v));
      if (!entry.data.includes(data)) entry.data.push(data);
      for (const reason of reasons) if (!entry.via.includes(reason)) entry.via.push(reason);
    }
  }
  for (const entry of Object.values(rows)) entry.via.sort();
  return {
    rows,
    buckets: out,
    errors: errors.map((e) => ({ stream: e.descriptor, subscription: e.subscription?.opaque_id ?? 'default', message: e.message })),
  };
}

/** Runs a job through `riptide rules eval`. */
export function riptideEval(job) {
  const r = spawnSync(RIPTIDE_BIN, ['rules', 'eval'], { input: JSON.stringify(job), encoding: 'utf8' });
  if (r.status !== 0 && !r.stdout) {
    throw new Error(`riptide rules eval failed (${r.status}): ${r.stderr}`);
  }
  return JSON.parse(r.stdout);
}
