//! Failpoints of a rules switch for the fault-injection suite (`docs/architecture.md`, "Failure modes"), next to the
//! replicator's (`riptide_replication`'s `failpoints.rs`): only with the `failpoints` feature,
//! which release builds leave off.
//!
//! | name | between |
//! |---|---|
//! | `deployments::after_activation` | the next deployment's activation and the old one's retirement |
//! | `deployments::after_slot_drop` | the old deployment's slot drop and its storage's removal |
//!
//! `return` skips the rest of the step (as if the process had stopped there), `return(exit)`
//! ends the process.

/// Returns from the enclosing function (returning `()`) at the named point when configured;
/// nothing without the `failpoints` feature.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |action| $crate::failpoints::fire($name, action));
    };
}

pub(crate) use failpoint;

/// What a configured point does: `exit` ends the process; anything else returns.
#[cfg(feature = "failpoints")]
pub(crate) fn fire(name: &'static str, action: Option<String>) {
    if action.as_deref() == Some("exit") {
        eprintln!("failpoint {name}: exiting");
        std::process::exit(86);
    }
    tracing::warn!(failpoint = name, "failpoint fired");
}

/// Configures failpoints from `FAILPOINTS` (`name=action;…`), for `riptide serve` built with
/// the `failpoints` feature; does nothing otherwise.
pub fn setup() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}
