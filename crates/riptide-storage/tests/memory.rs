//! The behavioural suite against [`MemoryStorage`].

use riptide_storage::MemoryStorage;

async fn make() -> (MemoryStorage, ()) {
    (MemoryStorage::new(), ())
}

storage_suite!(make();
    puts_and_removes,
    same_row_twice_in_one_batch,
    checksums_match_sent_ops,
    bucket_data_paging,
    dropped_batch_leaves_nothing,
    truncate_removes_table_rows,
    parameter_lookups,
    write_checkpoints,
    deployments_lifecycle,
    migrate_twice,
    large_batch,
    one_writer_per_deployment,
    random_workload_matches_client_model,
    concurrent_writers,
    op_ids_continue_across_deployments,
    events_carry_small_commits,
    compaction_rewrites_superseded_ops,
    compaction_moves_ops_behind_a_live_row,
    compaction_in_small_steps_matches_one_step,
    compaction_random_workload_converges,
    compaction_does_not_wait_for_replication,
    compaction_concurrent_with_replication_loses_nothing,
    compaction_of_a_bucket_with_a_long_name,
    keys_of_any_length,
);
