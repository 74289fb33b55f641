// The official @powersync/node client: schema, backend connector, local-row helpers.
import path from 'node:path';
import pg from 'pg';
import { PowerSyncDatabase, Schema, Table, column, LogLevels } from '@powersync/node';
import { inTransaction, sortById } from './postgres.js';
import { waitFor } from './wait.js';

export const AppSchema = new Schema({
  lists: new Table({ name: column.text, owner_id: column.text, created_at: column.text }),
  todos: new Table({
    list_id: column.text,
    description: column.text,
    completed: column.integer,
    created_by: column.text,
    created_at: column.text,
  }),
  list_members: new Table({ list_id: column.text, user_id: column.text }),
});

const TABLES = new Set(['lists', 'todos', 'list_members']);

/**
 * The app backend of the tests: credentials come from `getToken()`, uploads are applied to the
 * source Postgres, one client transaction per Postgres transaction.
 */
export class PgConnector {
  constructor({ endpoint, getToken, sourcePool }) {
    this.endpoint = endpoint;
    this.getToken = getToken;
    this.sourcePool = sourcePool;
    /** Every entry applied, in order (`CrudEntry.toJSON()`). */
    this.uploaded = [];
    this.credentialRequests = 0;
  }

  async fetchCredentials() {
    this.credentialRequests += 1;
    return { endpoint: this.endpoint, token: await this.getToken() };
  }

  async uploadData(db) {
    for (;;) {
      const tx = await db.getNextCrudTransaction();
      if (!tx) return;
      await inTransaction(this.sourcePool, async (client) => {
        for (const entry of tx.crud) await applyCrudEntry(client, entry);
      });
      await tx.complete();
      this.uploaded.push(...tx.crud.map((e) => e.toJSON()));
    }
  }
}

async function applyCrudEntry(client, entry) {
  if (!TABLES.has(entry.table)) throw new Error(`upload for unexpected table ${entry.table}`);
  const table = pg.escapeIdentifier(entry.table);
  const data = entry.opData ?? {};
  const cols = Object.keys(data);
  const colSql = cols.map((c) => pg.escapeIdentifier(c));
  const values = cols.map((c) => data[c]);
  switch (entry.op) {
    case 'PUT': {
      const placeholders = cols.map((_, i) => `$${i + 2}`);
      const onConflict = cols.length
        ? `DO UPDATE SET ${colSql.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`
        : 'DO NOTHING';
      await client.query(
        `INSERT INTO ${table} (id${colSql.map((c) => `, ${c}`).join('')}) VALUES ($1${placeholders.map((p) => `, ${p}`).join('')}) ON CONFLICT (id) ${onConflict}`,
        [entry.id, ...values],
      );
      break;
    }
    case 'PATCH':
      if (cols.length) {
        await client.query(`UPDATE ${table} SET ${colSql.map((c, i) => `${c} = $${i + 2}`).join(', ')} WHERE id = $1`, [
          entry.id,
          ...values,
        ]);
      }
      break;
    case 'DELETE':
      await client.query(`DELETE FROM ${table} WHERE id = $1`, [entry.id]);
      break;
    default:
      throw new Error(`unknown CRUD op ${entry.op}`);
  }
}

/** A logger keeping the SDK's messages for failure reports instead of printing them. */
export class BufferLogger {
  constructor(prefix) {
    this.prefix = prefix;
    this.lines = [];
  }
  log(record) {
    if (record.level < LogLevels.info) return;
    const err = record.error ? ` ${record.error?.stack ?? record.error}` : '';
    this.lines.push(`${new Date().toISOString()} [${this.prefix}] ${record.level}: ${record.message}${err}`);
    if (this.lines.length > 2000) this.lines.shift();
  }
  tail(n = 60) {
    return this.lines.slice(-n).join('\n');
  }
}

/** Opens a fresh local database in `dir`; connect it with `client.connect()`. */
export async function openClient({ dir, name, endpoint, getToken, sourcePool, syncOptions = {} }) {
  const logger = new BufferLogger(name);
  const db = new PowerSyncDatabase({
    schema: AppSchema,
    database: { dbFilename: `${name}.sqlite`, dbLocation: dir },
    logger,
  });
  await db.init();
  const connector = new PgConnector({ endpoint, getToken, sourcePool });
  return {
    name,
    db,
    connector,
    logger,
    path: path.join(dir, `${name}.sqlite`),
    connect(options = {}) {
      // Short retry delay: the crash test restarts the service and wants the client back quickly.
      return db.connect(connector, { retryDelayMs: 250, crudUploadThrottleMs: 50, ...syncOptions, ...options });
    },
  };
}

const parseTime = (t) => {
  if (t == null) return null;
  const ms = Date.parse(String(t).replace(' ', 'T'));
  return Number.isNaN(ms) ? `unparseable:${t}` : ms;
};

/** Local rows of `table` in the canonical form of `postgres.js` `sourceRows`, sorted by id. */
export async function localRows(db, table) {
  return sortById(await localRowsUnsorted(db, table));
}

async function localRowsUnsorted(db, table) {
  switch (table) {
    case 'lists':
      return (await db.getAll('SELECT id, name, owner_id, created_at FROM lists ORDER BY id')).map((r) => ({
        id: r.id,
        name: r.name,
        owner_id: r.owner_id,
        created_ms: parseTime(r.created_at),
      }));
    case 'todos':
      return (
        await db.getAll('SELECT id, list_id, description, completed, created_by, created_at FROM todos ORDER BY id')
      ).map((r) => ({
        id: r.id,
        list_id: r.list_id,
        description: r.description,
        completed: r.completed,
        created_by: r.created_by,
        created_ms: parseTime(r.created_at),
      }));
    case 'list_members':
      return db.getAll('SELECT id, list_id, user_id FROM list_members ORDER BY id');
    default:
      throw new Error(`unknown table ${table}`);
  }
}

/** `SELECT` helper: polls the local database until `predicate(rows)` holds. */
export async function waitForLocal(db, sql, params, predicate, { timeoutMs = 10_000, what, intervalMs = 10 } = {}) {
  let last;
  return waitFor(
    async () => {
      last = await db.getAll(sql, params);
      return predicate(last) ? last : null;
    },
    {
      timeoutMs,
      intervalMs,
      what: what ?? `local query ${sql} to satisfy predicate`,
      describe: () => JSON.stringify(last)?.slice(0, 2000),
    },
  );
}

export async function crudCount(db) {
  const row = await db.get('SELECT count(*) AS n FROM ps_crud');
  return row.n;
}

const KEYS_SQL = `SELECT 'lists:' || id AS k FROM lists UNION ALL SELECT 'todos:' || id FROM todos
                  UNION ALL SELECT 'list_members:' || id FROM list_members`;

/**
 * Records every snapshot of the keys (`table:id`) of the client's local rows, from `db.watch` on
 * every table change and from a 50 ms poll, and calls `check(keys)` on each. `stop()` ends it and
 * rethrows the first error the watch reported.
 */
export function recordSnapshots(db, check) {
  const controller = new AbortController();
  let watchError;
  const snapshots = [];
  const take = (rows) => {
    const keys = rows.map((r) => r.k);
    snapshots.push({ at: Date.now(), keys });
    check(keys);
  };
  db.watch(
    KEYS_SQL,
    [],
    { onResult: (r) => take(r.array ?? r.rows?._array ?? []), onError: (e) => (watchError ??= e) },
    { signal: controller.signal, throttleMs: 0, tables: ['lists', 'todos', 'list_members'] },
  );
  const timer = setInterval(() => {
    db.getAll(KEYS_SQL).then(take, () => {});
  }, 50);
  return {
    snapshots,
    /** One more snapshot, taken now. */
    async sample() {
      take(await db.getAll(KEYS_SQL));
    },
    stop() {
      controller.abort();
      clearInterval(timer);
      if (watchError) throw watchError;
    },
  };
}
