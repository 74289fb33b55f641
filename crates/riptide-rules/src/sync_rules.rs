//! PLACEHOLDER: the rules helper replaces this file with the real implementation (same API).

use std::collections::HashMap;

use crate::{RequestParameters, Row};

/// A source table reference (`schema.name`; schema defaults to `public`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    pub schema: String,
    pub name: String,
}

impl TableRef {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableRef {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `schema.name`, the form storage uses as `source_table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// One problem in a sync rules file, located at a 1-based line and column of the YAML file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct RulesError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// All problems found in a sync rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sync rules: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RulesErrors(pub Vec<RulesError>);

/// A bucket a request may sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketDescription {
    /// Bucket name: definition name + JSON array of parameter values, e.g. `user_lists["u1"]`.
    pub name: String,
    /// The bucket definition it comes from.
    pub definition: String,
    /// 0 (highest) ..= 3 (default).
    pub priority: u8,
}

/// A row as it goes into one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedRow {
    pub bucket: String,
    /// Output table name (after `FROM t AS name` renaming).
    pub table: String,
    /// Output `id` as text.
    pub id: String,
    /// Output row as JSON object text; blobs dropped.
    pub data: String,
}

/// A problem evaluating one row (e.g. no usable `id`): the row is skipped for that query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvaluationError {
    pub message: String,
}

/// Results of evaluating data queries on one row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowEvaluation {
    pub rows: Vec<EvaluatedRow>,
    pub errors: Vec<EvaluationError>,
}

/// A parameter-lookup key: which table-based parameter query, and the values the request side
/// must match (e.g. `["shared_lists", 0, ["u1"]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParameterLookup {
    pub definition: String,
    pub query_index: usize,
    /// The row-side values, canonically encoded.
    pub values: Vec<String>,
}

impl ParameterLookup {
    /// Canonical bytes used as the storage key.
    pub fn key(&self) -> Vec<u8> {
        unimplemented_placeholder()
    }
}

/// A lookup entry produced by one source row: under `lookup`, the result row `result` (encoded
/// bucket parameter values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedParameters {
    pub lookup: ParameterLookup,
    pub result: Vec<u8>,
}

/// Parsed and validated sync rules.
#[derive(Debug, Clone)]
pub struct SyncRules {}

impl SyncRules {
    /// Parses sync rules YAML, reporting every problem with its line and column.
    pub fn parse(_yaml: &str) -> Result<SyncRules, RulesErrors> {
        unimplemented_placeholder()
    }

    /// Every table a data or parameter query reads, without duplicates.
    pub fn source_tables(&self) -> Vec<TableRef> {
        unimplemented_placeholder()
    }

    /// The bucket rows a source row produces.
    pub fn evaluate_row(&self, _table: &TableRef, _row: &Row) -> RowEvaluation {
        unimplemented_placeholder()
    }

    /// The parameter-lookup entries a source row produces.
    pub fn evaluate_parameter_row(
        &self,
        _table: &TableRef,
        _row: &Row,
    ) -> Vec<EvaluatedParameters> {
        unimplemented_placeholder()
    }

    /// The lookups a request needs resolved before [`SyncRules::resolve_buckets`].
    pub fn parameter_lookups(&self, _request: &RequestParameters) -> Vec<ParameterLookup> {
        unimplemented_placeholder()
    }

    /// The buckets a request may sync, given the stored results of its lookups (keyed by
    /// [`ParameterLookup::key`]). Sorted by name, without duplicates.
    pub fn resolve_buckets(
        &self,
        _request: &RequestParameters,
        _lookup_results: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        unimplemented_placeholder()
    }

    /// Bucket definition names with their priorities, in file order.
    pub fn definitions(&self) -> Vec<(String, u8)> {
        unimplemented_placeholder()
    }
}

fn unimplemented_placeholder() -> ! {
    panic!("riptide-rules is not implemented yet")
}
