//! Sync rules: the classic `bucket_definitions` YAML, its SQL parsed with `sqlparser` and lowered
//! into our own IR, and the evaluation of that IR. Pure: no IO.
//!
//! Three evaluations drive everything else:
//! - [`SyncRules::evaluate_row`]: a source row → the bucket rows it belongs to (replication);
//! - [`SyncRules::evaluate_parameter_row`]: a source row → parameter-lookup entries
//!   (replication; e.g. a `list_members` row grants a list's bucket to a user);
//! - [`SyncRules::parameter_lookups`] + [`SyncRules::resolve_buckets`]: a request (JWT claims and
//!   client parameters) → the buckets it may sync (stream sessions).

mod request;
mod sync_rules;
mod value;

pub use request::RequestParameters;
pub use sync_rules::{
    BucketDescription, EvaluatedParameters, EvaluatedRow, EvaluationError, ParameterLookup,
    RowEvaluation, RulesError, RulesErrors, SyncRules, TableRef,
};
pub use value::{Row, RowDecodeError, SqliteValue};
