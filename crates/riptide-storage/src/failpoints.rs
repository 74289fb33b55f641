//! Named failpoints inside compaction, for the fault-injection suite (`docs/architecture.md`,
//! "Failure modes"), beside the replicator's and the rules switch's. They exist only with the
//! `failpoints` feature (the `fail` crate), which release builds leave off; without it
//! [`failpoint!`] expands to nothing.
//!
//! `return` fails the step with [`StorageError::Failpoint`](crate::StorageError::Failpoint)
//! (an open transaction is dropped, so it rolls back; the compaction run ends with the error),
//! `return(exit)` ends the process on the spot (Postgres rolls back what was not committed).
//! The points (`postgres/compact.rs`):
//!
//! | name | between |
//! |---|---|
//! | `compaction::before_move_commit` | a chunk's MOVE rewrite and its commit |
//! | `compaction::after_move_commit` | a committed chunk of MOVEs and the next step (mid-bucket) |
//! | `compaction::before_clear` | the bucket's last MOVE commit and its first CLEAR |
//! | `compaction::before_clear_commit` | a CLEAR batch's delete and insert and its commit |
//! | `compaction::after_clear_commit` | a committed CLEAR batch and the next step (mid-bucket) |
//! | `compaction::before_counter` | the last CLEAR and the lowering of the superseded counter |

/// Fails the enclosing function (returning `Result<_, StorageError>`) at the named point when
/// it is configured; nothing without the `failpoints` feature.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |action| $crate::failpoints::fire($name, action));
    };
}

pub(crate) use failpoint;

/// What a configured point does: `exit` ends the process, anything else fails the step.
#[cfg(feature = "failpoints")]
pub(crate) fn fire<T>(name: &'static str, action: Option<String>) -> crate::Result<T> {
    if action.as_deref() == Some("exit") {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(86);
    }
    Err(crate::StorageError::Failpoint(name))
}
