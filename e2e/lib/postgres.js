// Fresh source and storage databases per test on the run's private cluster, and the demo schema.
import pg from 'pg';
import { pgAdminUrl, uniqueSuffix } from './env.js';

// int8 as JS number where safe; our counts and ids are small.
pg.types.setTypeParser(20, (v) => {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
});

export function dbUrl(dbname) {
  const url = new URL(pgAdminUrl());
  url.pathname = `/${dbname}`;
  return url.toString();
}

/** Runs `fn(client)` on a short-lived connection to the admin database. */
async function withAdmin(fn) {
  const client = new pg.Client({ connectionString: pgAdminUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops the database's replication slots (terminating their walsenders) and the database itself. */
export async function dropDatabase(dbname) {
  await withAdmin(async (admin) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(
          `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`,
          [dbname],
        );
        await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [
          dbname,
        ]);
        break;
      } catch (e) {
        // A slot may still be marked active for a moment after its walsender was terminated.
        if (attempt >= 50) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(dbname)} WITH (FORCE)`);
  });
}

export const SOURCE_SCHEMA_SQL = `
CREATE TABLE lists (
  id text PRIMARY KEY,
  name text NOT NULL,
  owner_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE todos (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  list_id text NOT NULL,
  description text NOT NULL,
  completed boolean NOT NULL DEFAULT false,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE list_members (
  id text PRIMARY KEY,
  list_id text NOT NULL,
  user_id text NOT NULL
);
CREATE PUBLICATION powersync FOR ALL TABLES;
`;

/**
 * Creates `<name>_src_<suffix>` (with the demo schema and publication) and `<name>_sto_<suffix>`.
 * Returns URLs, a pool on the source, a pool on the storage database, and `drop()`.
 */
export async function createTestDatabases(name) {
  const suffix = uniqueSuffix();
  const sourceDb = `e2e_${name}_src_${suffix}`.toLowerCase();
  const storageDb = `e2e_${name}_sto_${suffix}`.toLowerCase();
  await withAdmin(async (admin) => {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(sourceDb)}`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(storageDb)}`);
  });
  const sourceUrl = dbUrl(sourceDb);
  const storageUrl = dbUrl(storageDb);
  const source = new pg.Pool({ connectionString: sourceUrl, max: 4 });
  const storage = new pg.Pool({ connectionString: storageUrl, max: 2 });
  source.on('error', () => {});
  storage.on('error', () => {});
  await source.query(SOURCE_SCHEMA_SQL);
  let dropped = false;
  return {
    sourceDb,
    storageDb,
    sourceUrl,
    storageUrl,
    source,
    storage,
    async drop() {
      if (dropped) return;
      dropped = true;
      await Promise.allSettled([source.end(), storage.end()]);
      await dropDatabase(sourceDb);
      await dropDatabase(storageDb);
    },
  };
}

/** Runs `fn(client)` inside one transaction on `pool`. */
export async function inTransaction(pool, fn) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

/** Sorts rows by `id` in code-unit order (the same on both sides, whatever the collation). */
export const sortById = (rows) => rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** Source rows in the canonical form the client should hold (see client.js `localRows`). */
export async function sourceRows(pool, table, where = 'TRUE', params = []) {
  const sql = {
    lists: `SELECT id, name, owner_id, floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms FROM lists`,
    todos: `SELECT id::text AS id, list_id, description, completed::int AS completed, created_by,
                   floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms FROM todos`,
    list_members: `SELECT id, list_id, user_id FROM list_members`,
  }[table];
  const { rows } = await pool.query(`${sql} WHERE ${where}`, params);
  return sortById(rows);
}
