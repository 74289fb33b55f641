//! The initial snapshot of the tables the sync rules use, chunked and resumable.
//!
//! A new deployment's slot is created on a walsender session with `EXPORT_SNAPSHOT`; its
//! consistent point C is where streaming begins, and the exported snapshot sees exactly the
//! transactions committed before C. The tables are read on an ordinary connection in a
//! `REPEATABLE READ` transaction importing that snapshot (while the walsender session stays
//! idle: the export lives until its next command), in replica-identity key order through a
//! cursor, [`FETCH_ROWS`] rows at a time, so memory stays bounded by one chunk whatever the
//! table size. Every [`crate::StreamOptions::snapshot_commit_rows`] rows the copy is committed
//! to storage at C, with each table's progress (its last key, `progress.rs`) in the same
//! storage transaction. Nothing of it is served: a deployment's checkpoint is visible only once
//! its snapshot is complete. When every table is copied, the snapshot is complete at C: storage
//! marks it done and activates the deployment in one transaction
//! ([`riptide_storage::BucketStorage::complete_snapshot`]), and the same session streams from
//! C. Nothing is missed, nothing applied twice.
//!
//! A crash loses the exported snapshot, not the slot, which still holds every change since C.
//! The next run resumes (`initial.rs`): each table's copy goes on after its last committed key
//! (tables without a usable key order, REPLICA IDENTITY FULL, start over: re-copying a row
//! writes nothing new), read with a fresh snapshot, so rows copied after the crash may be newer
//! than C. Streaming from C then replays every change since C over them; each change sets a row
//! to its state at that change, so once the stream has passed a position the resumed copy
//! happened before (a logical message written after it), storage equals the source at that
//! position: only then is the snapshot complete and the deployment activated. This is how
//! PowerSync's resumable snapshots work too (protocol notes §8).
//!
//! The copy of a table appearing while streaming (`tables.rs`) uses the same row reader
//! ([`copy_table`]) into the one storage batch of its resync.

mod copy;
mod initial;
pub mod progress;

use pgwire_replication::ReplicationClient;
use riptide_protocol::Lsn;

use crate::connection::quote_ident;
use crate::error::ReplicationError;

/// Rows per cursor fetch.
pub const FETCH_ROWS: usize = 10_000;

pub use copy::{SnapshotContext, copy_table};
pub use initial::{Initial, Started};

/// What `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    pub snapshot_name: String,
}

/// Creates the logical slot on a gated walsender session, exporting its snapshot.
pub async fn create_slot(
    session: &mut ReplicationClient,
    slot: &str,
) -> Result<CreatedSlot, ReplicationError> {
    create_slot_with(session, slot, false).await
}

/// Like [`create_slot`]; a `temporary` slot is dropped when its session ends (used for the
/// consistent snapshot of a table copied while streaming, see `tables.rs`).
pub async fn create_slot_with(
    session: &mut ReplicationClient,
    slot: &str,
    temporary: bool,
) -> Result<CreatedSlot, ReplicationError> {
    let rows = session
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(slot),
            if temporary { " TEMPORARY" } else { "" }
        ))
        .await?;
    let row = rows.first().ok_or_else(|| {
        ReplicationError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
    })?;
    let text = |i: usize| -> Result<String, ReplicationError> {
        row.get(i)
            .and_then(|v| v.as_ref())
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                ReplicationError::Protocol(format!("CREATE_REPLICATION_SLOT column {i} missing"))
            })
    };
    let consistent_point = text(1)?
        .parse::<Lsn>()
        .map_err(|_| ReplicationError::Protocol("invalid consistent point".into()))?;
    Ok(CreatedSlot {
        consistent_point,
        snapshot_name: text(2)?,
    })
}
