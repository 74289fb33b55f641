//! Sync rules: the classic `bucket_definitions` YAML and Sync Streams (`streams:`), their SQL
//! parsed with `sqlparser` and lowered into our own IR, and the evaluation of that IR. Pure: no
//! IO. Streams are compiled as PowerSync's edition-3 compiler does (`docs/sync-streams.md`).
//!
//! Three evaluations drive everything else:
//! - [`SyncRules::evaluate_row`]: a source row → the bucket rows it belongs to (replication);
//! - [`SyncRules::evaluate_parameter_row`]: a source row → parameter-lookup entries
//!   (replication; e.g. a `list_members` row grants a list's bucket to a user);
//! - [`SyncRules::parameter_lookups`] + [`SyncRules::resolve_buckets`]: a request (JWT claims and
//!   client parameters) → the buckets it may sync (stream sessions), for classic rules;
//! - [`SyncRules::resolve_request`]: a request with its stream subscriptions → buckets with the
//!   subscriptions they serve, the checkpoint's `streams` and per-subscription errors, asking
//!   for parameter lookups a step at a time (classic definitions are default streams there).
//!
//! # Trust
//! `request.user_id()`, `request.jwt()` and `token_parameters.*` come from the verified token.
//! `request.parameters()` and `user_parameters.*` are sent by the client and are **not trusted**:
//! they may filter (e.g. `WHERE … AND request.parameters() ->> 'archived' = 1`), but a parameter
//! query whose bucket parameters or lookup values come from them is rejected unless its
//! definition sets `accept_potentially_dangerous_queries: true`, because a client could then
//! name any bucket it likes.
//!
//! # Layout
//! - `yaml`: the file format, and positions of nodes and of characters inside scalars;
//! - `sql::select` / `sql::lower` / `sql::projection`: sqlparser AST → IR (`ir`), with located
//!   errors for everything outside the supported subset;
//! - `sql::data_query`, `sql::parameter_query`: the two query kinds and their evaluation;
//! - `eval`, `compare`, `cast`, `functions`, `json_path`, `time_functions`: SQLite semantics;
//!   `geometry`: the `st_*` functions over PostGIS (E)WKB;
//! - `bucket_name`: parameter value normalisation and bucket names;
//! - `compat`: the `config` block (edition, compatibility options, timestamp precision);
//! - `streams`: Sync Streams (YAML, lowering, compilation, evaluation, requests, tooling);
//!   `json_fixed`: PowerSync's `fixed_json_extract` paths and `json_each`;
//! - `table_pattern`, `sync_rules::wildcard`: `"todos_%"` tables;
//! - `migrate`: classic rules → streams; `job`: whole-config JSON jobs (`riptide rules eval`).

mod bucket_name;
mod cast;
mod compare;
mod compat;
mod eval;
mod functions;
mod geometry;
mod ir;
pub mod job;
mod json_fixed;
mod json_path;
mod migrate;
mod request;
mod sql;
mod streams;
mod sync_rules;
mod table_pattern;
mod time_functions;
mod value;
mod yaml;

pub use compat::{Compatibility, CompatibilityOption, TimePrecision};
pub use migrate::{MigrateError, migrate_to_streams};
pub use request::RequestParameters;
pub use streams::introspect::{OutputColumn, OutputTable, StreamInfo, StreamRowOutcome};
pub use streams::request::{
    BucketReason, RequestLimits, Resolution, ResolvedBucket, StreamRequest, StreamStatus,
    Subscription, SubscriptionError,
};
pub use streams::resolve::LookupResults;
pub use sync_rules::introspect::{ColumnRef, DataQueryOutcome, QueryInfo, QueryKind, sql_literal};
pub use sync_rules::{
    BucketDescription, EvaluatedParameters, EvaluatedRow, EvaluationError, ParameterLookup,
    RowEvaluation, RulesError, RulesErrors, SyncRules, TableRef,
};
pub use table_pattern::TablePattern;
pub use value::{Row, RowDecodeError, SqliteValue};
