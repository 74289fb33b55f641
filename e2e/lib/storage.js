// Queries against Riptide's bucket storage schema (docs/storage.md) for invariants that clients
// cannot observe directly.

/**
 * Ops that occur more than once: the same op (PUT or REMOVE) for the same source row, with the same
 * data, in the same bucket. A crash-and-resume that re-applies a transaction already written
 * produces these; real changes never do (each update changes the data in the tests that use this).
 */
export async function duplicatedOps(storagePool) {
  throw new Error('storage schema not documented yet (docs/storage.md); write the duplicated-op query');
}
