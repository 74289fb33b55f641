// Oracle side and client side of the comparison, on normalised values, and a readable diff.
import { PowerSyncDatabase, Schema, Table, column } from '@powersync/node';

/** The @powersync/node schema for the model's output tables. */
export function clientSchema(model) {
  const tables = {};
  for (const output of model.outputs) {
    const columns = {};
    for (const c of output.cols) columns[c.out] = column[c.client];
    tables[output.name] = new Table(columns);
  }
  return new Schema(tables);
}

export async function openOracleClient({ model, dir, name, logger }) {
  const db = new PowerSyncDatabase({
    schema: clientSchema(model),
    database: { dbFilename: `${name}.sqlite`, dbLocation: dir },
    logger,
  });
  await db.init();
  return db;
}

const norm = (kind, v) => {
  if (v == null) return null;
  switch (kind) {
    case 'real':
      return String(Number(v));
    case 'json':
      try {
        return JSON.stringify(JSON.parse(v));
      } catch {
        return `unparseable JSON: ${v}`;
      }
    default:
      return typeof v === 'string' ? v : `${typeof v}:${String(v)}`;
  }
};

/** Rows as `Map(id → {col: normalised value})`. */
function toMap(output, rows) {
  const map = new Map();
  for (const r of rows) {
    const row = {};
    for (const c of output.cols) row[c.out] = norm(c.norm, r[c.out]);
    if (map.has(r.id)) row.__duplicate = true;
    map.set(r.id, row);
  }
  return map;
}

/** What the rules grant `user`: `Map(output name → Map(id → row))`. */
export async function oracleRows(pool, model, user) {
  const result = new Map();
  for (const { output, sql } of model.oracleQueries()) {
    const rows = sql ? (await pool.query(sql, [user.id, user.team, JSON.stringify(user.groups), user.clientTeam])).rows : [];
    result.set(output.name, toMap(output, rows));
  }
  return result;
}

/**
 * What the client holds, in the same form. Integers are read as text (exact beyond 2^53). All
 * tables are read in one read transaction, so the result is one state the client really had.
 */
export async function localRows(db, model) {
  return db.readTransaction((tx) => readTables(tx, model));
}

async function readTables(db, model) {
  const result = new Map();
  for (const output of model.outputs) {
    const select = [
      'id',
      ...output.cols.map((c) => (c.client === 'integer' ? `CAST(${c.out} AS TEXT) AS ${c.out}` : c.out)),
    ];
    const rows = await db.getAll(`SELECT ${select.join(', ')} FROM ${output.name}`);
    result.set(output.name, toMap(output, rows));
  }
  return result;
}

/** Differences between expected and actual, one line each; empty when they are equal. */
export function diff(expected, actual) {
  const lines = [];
  for (const [table, exp] of expected) {
    const act = actual.get(table) ?? new Map();
    for (const [id, row] of exp) {
      const got = act.get(id);
      if (!got) lines.push(`${table} ${id}: MISSING, expected ${JSON.stringify(row)}`);
      else if (JSON.stringify(got) !== JSON.stringify(row)) {
        const cols = Object.keys({ ...row, ...got }).filter((k) => JSON.stringify(row[k]) !== JSON.stringify(got[k]));
        lines.push(
          `${table} ${id}: DIFFERENT ${cols.map((k) => `${k}: expected ${JSON.stringify(row[k])}, got ${JSON.stringify(got[k])}`).join('; ')}`,
        );
      }
    }
    for (const [id, row] of act) if (!exp.has(id)) lines.push(`${table} ${id}: EXTRA (leak) ${JSON.stringify(row)}`);
  }
  return lines;
}

/** A canonical string of a state (tables by name, rows by id). */
export function stateKey(state) {
  const tables = [...state.keys()].sort();
  return JSON.stringify(
    tables.map((t) => [
      t,
      [...state.get(t).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    ]),
  );
}
