//! Postgres logical replication into bucket storage.
//!
//! - [`Replicator::check_source`]: is the source set up (`wal_level`, slots, publication,
//!   tables, replica identity)? Every problem says how to fix it ([`SourceError`]).
//! - [`Replicator::run`]: for a new deployment, creates its slot exporting a snapshot, copies
//!   the tables the sync rules use as of that snapshot (`snapshot/`), committing in chunks at
//!   the slot's consistent point, completes the snapshot and activates the deployment in one
//!   storage transaction, then streams pgoutput from the slot (`streaming.rs`, `stream/`):
//!   one storage batch per source transaction (or per burst of consecutive ones: group
//!   commit), acknowledged to Postgres only after storage committed it. With Postgres 14+ a
//!   large transaction is streamed while it runs (pgoutput protocol 2) and written to its own
//!   batch before its commit (`stream/streamed.rs`). A restart resumes at the stored LSN; an
//!   interrupted snapshot resumes after its last committed chunk.
//! - The stream has an idle deadline (a heartbeat message through the slot), connections and
//!   queries between transactions have timeouts (`connection.rs`), and
//!   [`ReplicationStatus`] keeps the error replication fails on for the probes and metrics.
//! - `failpoints.rs`: named failpoints between storage steps (feature `failpoints`).
//! - `tables.rs`: live table-set changes while streaming (a referenced table created,
//!   published, renamed, dropped or unpublished) through catalog checks, a consistent copy
//!   from a temporary slot's snapshot and per-relation gates.
//! - `pgoutput/` decodes the wire messages, `values.rs` maps Postgres text values to SQLite
//!   values, `row_image.rs` builds rows and replica-identity keys.

mod batch;
mod connection;
mod error;
mod evaluate;
mod failpoints;
pub mod pg_array;
pub mod pgoutput;
mod replicator;
mod row_image;
mod schema;
mod slot;
mod snapshot;
mod source;
mod status;
mod stream;
mod streaming;
mod tables;
pub mod values;

pub use error::ReplicationError;
pub use replicator::{ReplicationSource, Replicator};
pub use slot::SlotInfo;
// Connections, table schemas and row mapping exactly as the replicator uses them, for tools
// (`riptide rules explain`) that read rows the same way.
pub use connection::connect;
pub use row_image::text_row;
pub use schema::{Column, TableSchema, TypeMap};
pub use source::SourceError;
pub use status::{Problem, ReplicationStatus, StatusSnapshot};
pub use stream::{CHECKPOINT_MESSAGE_PREFIX, StreamOptions};
// The pseudo source table holding the replicator's tracked tables in storage (not a table of
// the source), for tools and tests that look at stored rows.
pub use tables::TRACKED_SOURCE;

/// Whether `source_table` is one of the replicator's pseudo tables in storage (its tracked
/// tables, its snapshot progress), not a table of the source.
pub fn is_pseudo_table(source_table: &str) -> bool {
    source_table.starts_with("riptide:")
}
