// Observing the service's replication from the source side (schema-agnostic triggers for tests).
import { waitFor } from './wait.js';

/** The source's current WAL insert position (text LSN). */
export async function currentLsn(pool) {
  const { rows } = await pool.query('SELECT pg_current_wal_lsn()::text AS lsn');
  return rows[0].lsn;
}

/**
 * Waits until the walsender serving a replication slot of `dbname` has sent WAL up to `lsn`,
 * i.e. the service is receiving (and, for a large transaction, still applying) it.
 */
export async function waitUntilSent(pool, dbname, lsn, timeoutMs = 60_000) {
  let last;
  return waitFor(
    async () => {
      const { rows } = await pool.query(
        `SELECT r.sent_lsn::text AS sent, r.sent_lsn >= $2::pg_lsn AS done
           FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
          WHERE s.database = $1`,
        [dbname, lsn],
      );
      last = rows;
      return rows.some((r) => r.done);
    },
    { timeoutMs, intervalMs: 5, what: `the walsender of ${dbname} to send WAL up to ${lsn}`, describe: () => JSON.stringify(last) },
  );
}
