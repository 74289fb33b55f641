//! The public face of the crate: parsed [`SyncRules`] and what their evaluation produces.

use std::collections::{BTreeMap, HashMap};

use crate::bucket_name::{
    bucket_name, encode_parameter, normalize_parameter, push_json_array, push_json_string,
};
use crate::compat::{Compatibility, CompatibilityOption, TimePrecision};
use crate::eval::Scope;
use crate::json_path::{array_elements, json_to_sqlite};
use crate::sql::data_query::DataQuery;
use crate::sql::lower::SqlError;
use crate::sql::parameter_query::{Lookup, ParameterQuery, ParameterSource};
use crate::streams::plan::StreamSet;
use crate::yaml::{DefinitionSource, Locator, QuerySource, read_rules};
use crate::{RequestParameters, Row, SqliteValue};

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
    /// Canonical bytes used as the storage key: the JSON text
    /// `["<definition>",<query index>,[<values>…]]`, e.g. `["shared_lists",0,["u1"]]`.
    pub fn key(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.definition.len() + 16);
        out.push('[');
        push_json_string(&mut out, &self.definition);
        out.push(',');
        out.push_str(&self.query_index.to_string());
        out.push_str(",[");
        out.push_str(&self.values.join(","));
        out.push_str("]]");
        out.into_bytes()
    }
}

/// A lookup entry produced by one source row: under `lookup`, the result row `result` (encoded
/// bucket parameter values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedParameters {
    pub lookup: ParameterLookup,
    pub result: Vec<u8>,
}

/// Most lookups one request may expand into through `IN <array>` terms.
const MAX_LOOKUP_COMBINATIONS: usize = 1000;

/// One bucket definition, lowered.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub(crate) name: String,
    pub(crate) priority: u8,
    /// Bucket parameter names in bucket-name order (the first parameter query's columns).
    bucket_parameters: Vec<String>,
    pub(crate) parameter_queries: Vec<ParameterQuery>,
    pub(crate) data_queries: Vec<DataQuery>,
    /// Where each query is in the file (same order as the queries).
    parameter_sources: Vec<QuerySource>,
    data_sources: Vec<QuerySource>,
}

impl Definition {
    /// Parses one definition's queries, pushing every problem to `errors`. `None` when its
    /// bucket parameters are unknown (every parameter query failed), so its data queries
    /// cannot be checked.
    fn parse(
        def: &DefinitionSource,
        loc: &Locator<'_>,
        errors: &mut Vec<RulesError>,
    ) -> Option<Definition> {
        let parameters = ParameterQueries::parse(def, loc, errors);
        if parameters.failed && parameters.bucket_parameters.is_none() {
            // The bucket parameters are unknown: checking data queries against them
            // would only report follow-on errors.
            return None;
        }
        let bucket_parameters = parameters.bucket_parameters.unwrap_or_default();
        let mut data_queries = Vec::new();
        let mut data_sources = Vec::new();
        for q in &def.data {
            match DataQuery::parse(&q.sql, &bucket_parameters) {
                Ok(dq) => {
                    data_queries.push(dq);
                    data_sources.push(q.clone());
                }
                Err(e) => errors.push(located(loc, q, e, &def.name)),
            }
        }
        Some(Definition {
            name: def.name.clone(),
            priority: def.priority,
            bucket_parameters,
            parameter_queries: parameters.queries,
            data_queries,
            parameter_sources: parameters.sources,
            data_sources,
        })
    }
}

/// The parameter queries of a definition that parsed and agree on their columns.
struct ParameterQueries {
    queries: Vec<ParameterQuery>,
    sources: Vec<QuerySource>,
    /// A query did not parse.
    failed: bool,
    /// The columns of the first query that parsed, in its order (the others are reordered
    /// to it); `None` if none did.
    bucket_parameters: Option<Vec<String>>,
}

impl ParameterQueries {
    fn parse(
        def: &DefinitionSource,
        loc: &Locator<'_>,
        errors: &mut Vec<RulesError>,
    ) -> ParameterQueries {
        let mut out = ParameterQueries {
            queries: Vec::new(),
            sources: Vec::new(),
            failed: false,
            bucket_parameters: None,
        };
        for q in &def.parameters {
            let mut pq = match ParameterQuery::parse(&q.sql) {
                Ok(pq) => pq,
                Err(e) => {
                    out.failed = true;
                    errors.push(located(loc, q, e, &def.name));
                    continue;
                }
            };
            if pq.uses_untrusted_values && !def.accept_dangerous {
                errors.push(located(
                    loc,
                    q,
                    SqlError::unlocated(
                        "potentially dangerous query: bucket parameters come from client-controlled `request.parameters()`/`user_parameters`; set `accept_potentially_dangerous_queries: true` if that is intended",
                    ),
                    &def.name,
                ));
                continue;
            }
            let names = pq.column_names();
            match &out.bucket_parameters {
                None => out.bucket_parameters = Some(names),
                Some(expected) => {
                    let mut a = names.clone();
                    let mut b = expected.clone();
                    a.sort();
                    b.sort();
                    if a != b {
                        errors.push(located(
                            loc,
                            q,
                            SqlError::at(
                                pq.projection_span,
                                format!(
                                    "every parameter query of a definition must return the same columns ({})",
                                    expected.join(", ")
                                ),
                            ),
                            &def.name,
                        ));
                        continue;
                    }
                    pq.reorder(expected);
                }
            }
            out.queries.push(pq);
            out.sources.push(q.clone());
        }
        out
    }
}

/// Parsed and validated sync rules.
#[derive(Debug, Clone)]
pub struct SyncRules {
    /// `config`: edition and compatibility options.
    compat: Compatibility,
    pub(crate) definitions: Vec<Definition>,
    /// The compiled `streams` (empty for classic rules).
    pub(crate) streams: StreamSet,
    /// Problems that did not stop the file from loading.
    warnings: Vec<RulesError>,
    /// Per source table, the data queries reading it: (definition, query) indexes.
    data_by_table: HashMap<TableRef, Vec<(usize, usize)>>,
    /// Per source table, the table-based parameter queries reading it.
    parameters_by_table: HashMap<TableRef, Vec<(usize, usize)>>,
    source_tables: Vec<TableRef>,
    /// The YAML text, to locate queries and columns on demand ([`SyncRules::queries`]).
    pub(crate) source: String,
    /// Prepended to every bucket name (see [`SyncRules::with_bucket_prefix`]).
    pub(crate) bucket_prefix: String,
}

fn located(loc: &Locator<'_>, q: &QuerySource, e: SqlError, definition: &str) -> RulesError {
    let (line, column) = loc.in_scalar(&q.path, &q.sql, e.position);
    RulesError {
        message: format!("{} (bucket definition `{definition}`)", e.message),
        line,
        column,
    }
}

fn encode_result(values: &[SqliteValue]) -> Vec<u8> {
    let mut s = String::new();
    push_json_array(&mut s, values);
    s.into_bytes()
}

fn decode_result(bytes: &[u8], expected: usize) -> Option<Vec<SqliteValue>> {
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    if parsed.len() != expected {
        return None;
    }
    parsed
        .iter()
        .map(|v| normalize_parameter(&json_to_sqlite(v)))
        .collect()
}

/// Evaluates output columns into normalised bucket parameter values (`None` if any is unusable).
fn column_values(query: &ParameterQuery, scope: &Scope<'_>) -> Option<Vec<SqliteValue>> {
    query
        .columns
        .iter()
        .map(|(_, e)| normalize_parameter(&e.eval(scope)))
        .collect()
}

fn passes(filter: &Option<crate::ir::Expr>, scope: &Scope<'_>) -> bool {
    filter.as_ref().is_none_or(|f| f.passes(scope))
}

/// The request-side value sets of a table-based query's lookups (one set per combination).
fn request_lookup_values(lookups: &[Lookup], scope: &Scope<'_>) -> Vec<Vec<String>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::with_capacity(lookups.len())];
    for l in lookups {
        let v = l.request.eval(scope);
        let candidates: Vec<String> = if l.in_array {
            array_elements(&v)
                .unwrap_or_default()
                .iter()
                .filter_map(normalize_parameter)
                .map(|v| encode_parameter(&v))
                .collect()
        } else {
            normalize_parameter(&v)
                .map(|v| encode_parameter(&v))
                .into_iter()
                .collect()
        };
        let mut next = Vec::new();
        for combo in &combos {
            for c in &candidates {
                if next.len() >= MAX_LOOKUP_COMBINATIONS {
                    break;
                }
                let mut n = combo.clone();
                n.push(c.clone());
                next.push(n);
            }
        }
        combos = next;
    }
    combos
}

/// The row-side value sets a table-based query's lookups index a row under: one set, or one
/// per element combination for `<request value> IN <row JSON array>` terms (distinct, at most
/// [`MAX_LOOKUP_COMBINATIONS`]). Empty when a value is NULL or unusable.
fn row_lookup_values(lookups: &[Lookup], scope: &Scope<'_>) -> Vec<Vec<String>> {
    let mut combos: Vec<Vec<String>> = vec![Vec::with_capacity(lookups.len())];
    for l in lookups {
        let v = l.row.eval(scope);
        let mut candidates: Vec<String> = Vec::new();
        if l.row_array {
            for element in array_elements(&v).unwrap_or_default() {
                if let Some(e) = normalize_parameter(&element) {
                    let encoded = encode_parameter(&e);
                    if !candidates.contains(&encoded) {
                        candidates.push(encoded);
                    }
                }
            }
        } else {
            candidates.extend(normalize_parameter(&v).map(|v| encode_parameter(&v)));
        }
        let mut next = Vec::new();
        for combo in &combos {
            for c in &candidates {
                if next.len() >= MAX_LOOKUP_COMBINATIONS {
                    break;
                }
                let mut n = combo.clone();
                n.push(c.clone());
                next.push(n);
            }
        }
        combos = next;
    }
    combos
}

/// `->`/`->>` of every query under `fixed_json_extract`.
fn fix_json_extract(definitions: &mut [Definition]) {
    for def in definitions {
        let parameters = def.parameter_queries.iter_mut().flat_map(|q| q.exprs_mut());
        let data = def.data_queries.iter_mut().flat_map(|q| q.exprs_mut());
        parameters
            .chain(data)
            .for_each(crate::json_fixed::fix_operators);
    }
}

impl SyncRules {
    /// Parses sync rules YAML, reporting every problem with its line and column.
    pub fn parse(yaml: &str) -> Result<SyncRules, RulesErrors> {
        let (mut source, mut errors) = read_rules(yaml);
        let loc = Locator::new(yaml);
        let mut warnings = std::mem::take(&mut source.warnings);
        let streams = crate::streams::compile(&source, &loc, &mut errors, &mut warnings);
        // 1. Each definition's queries, parsed and checked; every problem is collected.
        let mut definitions: Vec<Definition> = source
            .definitions
            .iter()
            .filter_map(|def| Definition::parse(def, &loc, &mut errors))
            .collect();
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(RulesErrors(errors));
        }
        if source
            .compatibility
            .is_enabled(CompatibilityOption::FixedJsonExtract)
        {
            fix_json_extract(&mut definitions);
        }
        // 2. Which queries read which table.
        let mut data_by_table: HashMap<TableRef, Vec<(usize, usize)>> = HashMap::new();
        let mut parameters_by_table: HashMap<TableRef, Vec<(usize, usize)>> = HashMap::new();
        let mut source_tables: Vec<TableRef> = Vec::new();
        let mut note = |t: &TableRef| {
            // Wildcards (`"todos_%"`) are patterns, not tables: see `table_patterns`.
            if !source_tables.contains(t) && wildcard::pattern_of(t).is_none() {
                source_tables.push(t.clone());
            }
        };
        for (di, def) in definitions.iter().enumerate() {
            for (qi, pq) in def.parameter_queries.iter().enumerate() {
                if let Some(table) = pq.table() {
                    note(table);
                    parameters_by_table
                        .entry(table.clone())
                        .or_default()
                        .push((di, qi));
                }
            }
            for (qi, dq) in def.data_queries.iter().enumerate() {
                note(&dq.table);
                data_by_table
                    .entry(dq.table.clone())
                    .or_default()
                    .push((di, qi));
            }
        }
        for table in streams.tables() {
            note(&table);
        }
        warnings.sort_by_key(|e| (e.line, e.column));
        Ok(SyncRules {
            compat: source.compatibility.clone(),
            definitions,
            streams,
            warnings,
            data_by_table,
            parameters_by_table,
            source_tables,
            source: yaml.to_owned(),
            bucket_prefix: String::new(),
        })
    }

    /// Prefixes every bucket name this deployment produces and resolves, e.g. `"2#"` gives
    /// `2#user_lists["u1"]` (like the official `versioned_bucket_ids`): buckets of two
    /// deployments of the rules are never confused, so a client's positions in one never apply
    /// to the other. Applies to [`SyncRules::evaluate_row`] and [`SyncRules::resolve_buckets`].
    pub fn with_bucket_prefix(mut self, prefix: impl Into<String>) -> SyncRules {
        self.bucket_prefix = prefix.into();
        self
    }

    /// The bucket-name prefix (empty unless set with [`SyncRules::with_bucket_prefix`]).
    pub fn bucket_prefix(&self) -> &str {
        &self.bucket_prefix
    }

    /// The `config: edition` of the file (1 when absent).
    pub fn edition(&self) -> u8 {
        self.compat.edition()
    }

    /// The file's edition and compatibility options.
    pub fn compatibility_options(&self) -> &Compatibility {
        &self.compat
    }

    /// Whether the compatibility option named `option` (PowerSync's name, e.g.
    /// `timestamps_iso8601`, `custom_postgres_types`, `versioned_bucket_ids`,
    /// `fixed_json_extract`) is on: the `config` value when given, otherwise the edition's
    /// default (like the official `CompatibilityContext`). Unknown names are off.
    pub fn compatibility(&self, option: &str) -> bool {
        CompatibilityOption::from_name(option).is_some_and(|o| self.compat.is_enabled(o))
    }

    /// Timestamps in ISO 8601 (`T` separator, 6 sub-second digits): the `timestamps_iso8601`
    /// option, on from edition 2.
    pub fn timestamps_iso8601(&self) -> bool {
        self.compat
            .is_enabled(CompatibilityOption::TimestampsIso8601)
    }

    /// Domains, composites and ranges mapped to structured values: the
    /// `custom_postgres_types` option, on from edition 2.
    pub fn custom_types(&self) -> bool {
        self.compat
            .is_enabled(CompatibilityOption::CustomPostgresTypes)
    }

    /// `timestamp_max_precision`: the most sub-second digits ISO 8601 time values keep.
    pub fn timestamp_max_precision(&self) -> Option<TimePrecision> {
        self.compat.max_time_precision()
    }

    /// Problems that did not stop the file from loading (e.g. alpha streams, unused CTEs,
    /// streams whose parameters all come from the client), located like errors.
    pub fn warnings(&self) -> &[RulesError] {
        &self.warnings
    }

    /// Every table a data or parameter query reads, without duplicates.
    pub fn source_tables(&self) -> Vec<TableRef> {
        self.source_tables.clone()
    }

    /// The bucket rows a source row produces.
    pub fn evaluate_row(&self, table: &TableRef, row: &Row) -> RowEvaluation {
        let mut ev = RowEvaluation::default();
        let queries = self.data_by_table.get(table).map_or(&[][..], Vec::as_slice);
        let exact = queries.iter().map(|q| (*q, None));
        for ((di, qi), pattern) in exact.chain(self.wildcard_queries(&self.data_by_table, table)) {
            let def = &self.definitions[di];
            let before = ev.rows.len();
            // One query can add several rows (`bucket.p IN <row JSON array>`: one per element).
            match &pattern {
                None => def.data_queries[qi].evaluate(&def.name, row, &mut ev.rows, &mut ev.errors),
                Some(p) => {
                    wildcard::evaluate(&def.data_queries[qi], &def.name, p, table, row, &mut ev)
                }
            }
            if !self.bucket_prefix.is_empty() {
                for new in &mut ev.rows[before..] {
                    new.bucket.insert_str(0, &self.bucket_prefix);
                }
            }
            // The same row can reach the same bucket through two queries: keep it once.
            let mut i = before;
            while i < ev.rows.len() {
                let new = &ev.rows[i];
                if ev.rows[..before]
                    .iter()
                    .any(|r| r.bucket == new.bucket && r.table == new.table && r.id == new.id)
                {
                    ev.rows.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        self.streams.evaluate_row(
            table,
            row,
            &self.bucket_prefix,
            &mut ev.rows,
            &mut ev.errors,
        );
        ev
    }

    /// The parameter-lookup entries a source row produces.
    pub fn evaluate_parameter_row(&self, table: &TableRef, row: &Row) -> Vec<EvaluatedParameters> {
        let mut out = Vec::new();
        self.streams.evaluate_parameter_row(table, row, &mut out);
        let queries = self
            .parameters_by_table
            .get(table)
            .map_or(&[][..], Vec::as_slice);
        let scope = Scope {
            row: Some(row),
            request: None,
        };
        let wildcards = self.wildcard_queries(&self.parameters_by_table, table);
        for (di, qi) in queries.iter().copied().chain(wildcards.map(|(q, _)| q)) {
            let def = &self.definitions[di];
            let pq = &def.parameter_queries[qi];
            let ParameterSource::Table {
                lookups,
                row_filter,
                ..
            } = &pq.source
            else {
                continue;
            };
            if !passes(row_filter, &scope) {
                continue;
            }
            let Some(result) = column_values(pq, &scope) else {
                continue;
            };
            let result = encode_result(&result);
            for values in row_lookup_values(lookups, &scope) {
                out.push(EvaluatedParameters {
                    lookup: ParameterLookup {
                        definition: def.name.clone(),
                        query_index: qi,
                        values,
                    },
                    result: result.clone(),
                });
            }
        }
        out
    }

    /// The lookups a request needs resolved before [`SyncRules::resolve_buckets`].
    pub fn parameter_lookups(&self, request: &RequestParameters) -> Vec<ParameterLookup> {
        let mut out: Vec<ParameterLookup> = Vec::new();
        for (di, def) in self.definitions.iter().enumerate() {
            for qi in 0..def.parameter_queries.len() {
                for l in self.lookups_of(di, qi, request) {
                    if !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
        out
    }

    fn lookups_of(
        &self,
        di: usize,
        qi: usize,
        request: &RequestParameters,
    ) -> Vec<ParameterLookup> {
        let def = &self.definitions[di];
        let ParameterSource::Table {
            lookups,
            request_filter,
            ..
        } = &def.parameter_queries[qi].source
        else {
            return Vec::new();
        };
        let scope = Scope {
            row: None,
            request: Some(request),
        };
        if !passes(request_filter, &scope) {
            return Vec::new();
        }
        request_lookup_values(lookups, &scope)
            .into_iter()
            .map(|values| ParameterLookup {
                definition: def.name.clone(),
                query_index: qi,
                values,
            })
            .collect()
    }

    /// The buckets a request may sync, given the stored results of its lookups (keyed by
    /// [`ParameterLookup::key`]). Sorted by name, without duplicates.
    pub fn resolve_buckets(
        &self,
        request: &RequestParameters,
        lookup_results: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        let mut out: BTreeMap<String, BucketDescription> = BTreeMap::new();
        let request_scope = Scope {
            row: None,
            request: Some(request),
        };
        for (di, def) in self.definitions.iter().enumerate() {
            let mut add = |values: &[SqliteValue]| {
                let mut name = bucket_name(&def.name, values);
                name.insert_str(0, &self.bucket_prefix);
                out.entry(name.clone())
                    .or_insert_with(|| BucketDescription {
                        name,
                        definition: def.name.clone(),
                        priority: def.priority,
                    });
            };
            if def.parameter_queries.is_empty() {
                add(&[]);
                continue;
            }
            for (qi, pq) in def.parameter_queries.iter().enumerate() {
                match &pq.source {
                    ParameterSource::Static { filter } => {
                        if passes(filter, &request_scope)
                            && let Some(values) = column_values(pq, &request_scope)
                        {
                            add(&values);
                        }
                    }
                    ParameterSource::JsonEach { array, filter } => {
                        let elements =
                            array_elements(&array.eval(&request_scope)).unwrap_or_default();
                        for element in elements {
                            let mut row = Row::new();
                            row.insert("value", element);
                            let scope = Scope {
                                row: Some(&row),
                                request: Some(request),
                            };
                            if passes(filter, &scope)
                                && let Some(values) = column_values(pq, &scope)
                            {
                                add(&values);
                            }
                        }
                    }
                    ParameterSource::Table { .. } => {
                        for lookup in self.lookups_of(di, qi, request) {
                            let Some(results) = lookup_results.get(&lookup.key()) else {
                                continue;
                            };
                            for r in results {
                                if let Some(values) = decode_result(r, def.bucket_parameters.len())
                                {
                                    add(&values);
                                }
                            }
                        }
                    }
                }
            }
        }
        out.into_values().collect()
    }

    /// Bucket definition names with their priorities, in file order.
    pub fn definitions(&self) -> Vec<(String, u8)> {
        self.definitions
            .iter()
            .map(|d| (d.name.clone(), d.priority))
            .collect()
    }
}

pub(crate) mod introspect;
#[cfg(test)]
mod tests;
mod wildcard;
