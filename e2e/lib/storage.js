// Queries against Riptide's bucket storage schema (docs/storage.md, `riptide.*` tables) for
// invariants that clients cannot observe directly.

/**
 * Ops that occur more than once: the same op (PUT or REMOVE) for the same source row
 * (object_type, object_id, subkey) with the same data, in the same bucket of one deployment.
 * A crash-and-resume that re-applies a transaction already written produces these; real changes
 * never do in the tests that use this (every update changes the row's data).
 */
export async function duplicatedOps(storagePool) {
  const { rows } = await storagePool.query(`
    SELECT deployment_id, bucket, op, object_type, object_id, subkey, count(*)::int AS copies,
           array_agg(op_id ORDER BY op_id)::text AS op_ids
      FROM riptide.bucket_data
     WHERE op IN ('PUT', 'REMOVE')
     GROUP BY deployment_id, bucket, op, object_type, object_id, subkey, md5(coalesce(data, '<null>'))
    HAVING count(*) > 1
     ORDER BY bucket, object_id
     LIMIT 20`);
  return rows;
}

/** Number of PUT ops per bucket of the active deployment (for diagnostics). */
export async function opCounts(storagePool) {
  const { rows } = await storagePool.query(`
    SELECT bucket, op, count(*)::int AS n
      FROM riptide.bucket_data d JOIN riptide.deployments s ON s.id = d.deployment_id AND s.state = 'ACTIVE'
     GROUP BY bucket, op ORDER BY bucket, op`);
  return rows;
}

/** Highest op id written so far (0 when none). */
export async function maxOpId(storagePool) {
  const { rows } = await storagePool.query('SELECT coalesce(max(op_id), 0)::bigint AS m FROM riptide.bucket_data');
  return rows[0].m;
}

/** Number of ops with an op id above `opId`. */
export async function opsAfter(storagePool, opId) {
  const { rows } = await storagePool.query('SELECT count(*)::int AS n FROM riptide.bucket_data WHERE op_id > $1', [opId]);
  return rows[0].n;
}
