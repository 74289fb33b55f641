//! Bucket storage: the per-bucket op logs, running bucket checksums, current row state (to emit
//! REMOVE ops and fill unchanged TOAST columns), parameter lookups, checkpoints, write
//! checkpoints and sync-rules deployments.
//!
//! Storage knows nothing about sync rules: the replicator evaluates rules and hands storage
//! [`RowOperation`]s saying, for each source row, its full current state and the bucket rows and
//! parameter-lookup rows it now produces. Storage diffs that against what the same source row
//! produced before and writes PUT/REMOVE ops accordingly.
//!
//! Bucket names, row keys and lookup keys of any length are accepted: longer ones are indexed
//! by a digest (`keys.rs`), callers always see the full values.
//!
//! [`PgStorage`] is the Postgres implementation (schema `riptide`, see `docs/storage.md`);
//! [`MemoryStorage`] is an in-memory one for fast unit tests of code above storage.
//!
//! Across processes, commits, write checkpoints and deployment switches are announced with
//! `NOTIFY` ([`notifications`]) and followed by one [`CheckpointListener`] per process.
//!
//! [`compaction`] rewrites superseded ops as MOVE and leading runs as CLEAR, a bucket at a time;
//! `failpoints.rs` names the points inside it where the fault suite fails or ends the process
//! (feature `failpoints`).

mod api;
pub mod compaction;
mod diff;
mod failpoints;
mod keys;
mod memory;
pub mod notifications;
mod postgres;
mod write_checkpoint;

pub use api::*;
pub use compaction::{
    CompactLimits, CompactOptions, CompactStats, CompactionCandidate, compact_deployment,
};
pub use memory::MemoryStorage;
pub use notifications::NotificationSink;
pub use postgres::{
    CHECKPOINT_CHANNEL, CheckpointListener, Fence, LISTENER_APPLICATION_NAME, LeaseRecord,
    NodeRecord, PgStorage, SCHEMA_VERSION,
};
