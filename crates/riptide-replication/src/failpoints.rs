//! Named failpoints between the storage steps of replication, for the fault-injection suite
//! (`docs/architecture.md`, "Failure modes"). They exist only with the `failpoints` feature (the `fail` crate), which
//! release builds leave off; without it [`failpoint!`] expands to nothing.
//!
//! Configured by name through `fail::cfg` or the `FAILPOINTS` environment variable (read by
//! `riptide serve` when built with the feature): `return` makes the step fail as if storage or
//! the source had (the replicator restarts), `return(exit)` ends the process on the spot (a
//! crash: nothing after the step runs, no shutdown code). The points:
//!
//! | name | between |
//! |---|---|
//! | `snapshot::after_slot` | the slot's creation and the first copied row |
//! | `snapshot::after_chunk_commit` | a committed snapshot chunk (with its progress) and the next |
//! | `snapshot::after_copy` | the last snapshot commit and the snapshot's completion (activation) |
//! | `snapshot::after_complete` | the completion and the start of streaming |
//! | `replication::after_save` | a saved chunk of a source transaction and the next step |
//! | `replication::before_commit` | a transaction's last save and its storage commit |
//! | `replication::after_commit` | a storage commit and its acknowledgement to Postgres |
//!
//! `riptide-server` adds the points of a rules switch (`deployments.rs` there).

/// Fails the enclosing function (returning `Result<_, ReplicationError>`) at the named point
/// when it is configured; nothing without the `failpoints` feature.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |action| $crate::failpoints::fire($name, action));
    };
}

pub(crate) use failpoint;

/// What a configured point does: `exit` ends the process, anything else fails the step.
#[cfg(feature = "failpoints")]
pub(crate) fn fire<T>(
    name: &'static str,
    action: Option<String>,
) -> Result<T, crate::error::ReplicationError> {
    if action.as_deref() == Some("exit") {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(86);
    }
    Err(crate::error::ReplicationError::Failpoint(name))
}
