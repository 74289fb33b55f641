//! Introspection for tooling (`riptide rules check/explain`): where each query and each
//! column it reads is in the file, which bucket each data query puts a row in (or why none),
//! and what a user would need to be granted a bucket.

use std::fmt;

use super::{SyncRules, column_values, passes};
use crate::bucket_name::{bucket_name, normalize_parameter};
use crate::eval::Scope;
use crate::json_path::array_elements;
use crate::sql::data_query::Miss;
use crate::sql::parameter_query::ParameterSource;
use crate::yaml::Locator;
use crate::{RequestParameters, Row, SqliteValue, TableRef};

/// The two kinds of queries of a bucket definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    Parameter,
    Data,
}

impl fmt::Display for QueryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QueryKind::Parameter => "parameter query",
            QueryKind::Data => "data query",
        })
    }
}

/// One query of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryInfo {
    /// The bucket definition, or the stream (see `stream`).
    pub definition: String,
    /// Whether `definition` is a stream: its query is listed as a data query of the table it
    /// syncs, and as a parameter query of each table it joins.
    pub stream: bool,
    pub kind: QueryKind,
    /// 0-based among the definition's queries of this kind.
    pub index: usize,
    /// The table it reads (`None` for parameter queries without a table).
    pub table: Option<TableRef>,
    pub sql: String,
    /// 1-based position of the query in the YAML file.
    pub line: usize,
    pub column: usize,
}

/// A source column a query reads, located in the YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub table: TableRef,
    pub column: String,
    pub definition: String,
    /// Whether `definition` is a stream.
    pub stream: bool,
    pub kind: QueryKind,
    pub query_index: usize,
    /// 1-based line and column of the reference in the YAML file.
    pub line: usize,
    pub column_no: usize,
}

/// What one data query does with one source row.
#[derive(Debug, Clone, PartialEq)]
pub struct DataQueryOutcome {
    pub definition: String,
    pub query_index: usize,
    /// The bucket the row goes to (name and parameter values in bucket order), or why the
    /// query puts it in no bucket. A query with `bucket.p IN <row JSON array>` has one
    /// outcome per bucket.
    pub result: Result<(String, Vec<SqliteValue>), String>,
}

/// `value` as an SQL literal, for messages.
pub fn sql_literal(value: &SqliteValue) -> String {
    match value {
        SqliteValue::Null => "NULL".into(),
        SqliteValue::Integer(i) => i.to_string(),
        SqliteValue::Real(r) => r.to_string(),
        SqliteValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
        SqliteValue::Blob(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02X}")).collect();
            format!("X'{hex}'")
        }
    }
}

fn table_name(table: &TableRef) -> String {
    if table.schema == "public" {
        table.name.clone()
    } else {
        table.qualified()
    }
}

impl SyncRules {
    /// Every query in file order, with its position in the file.
    pub fn queries(&self) -> Vec<QueryInfo> {
        let loc = Locator::new(&self.source);
        let mut out = Vec::new();
        for def in &self.definitions {
            for (i, (pq, src)) in def
                .parameter_queries
                .iter()
                .zip(&def.parameter_sources)
                .enumerate()
            {
                let (line, column) = loc.node(&src.path, false);
                out.push(QueryInfo {
                    definition: def.name.clone(),
                    stream: false,
                    kind: QueryKind::Parameter,
                    index: i,
                    table: pq.table().cloned(),
                    sql: src.sql.clone(),
                    line,
                    column,
                });
            }
            for (i, (dq, src)) in def.data_queries.iter().zip(&def.data_sources).enumerate() {
                let (line, column) = loc.node(&src.path, false);
                out.push(QueryInfo {
                    definition: def.name.clone(),
                    stream: false,
                    kind: QueryKind::Data,
                    index: i,
                    table: Some(dq.table.clone()),
                    sql: src.sql.clone(),
                    line,
                    column,
                });
            }
        }
        out.extend(self.stream_queries());
        out.sort_by_key(|q| (q.line, q.column));
        out
    }

    /// Every source column a data or table-based parameter query reads (in its select list or
    /// WHERE clause; `*` without an explicit id reads `id`), located in the file, in file order.
    pub fn referenced_columns(&self) -> Vec<ColumnRef> {
        let loc = Locator::new(&self.source);
        let mut out = Vec::new();
        for def in &self.definitions {
            let parameters = def
                .parameter_queries
                .iter()
                .zip(&def.parameter_sources)
                .enumerate()
                .filter_map(|(i, (pq, src))| {
                    let table = pq.table()?;
                    Some((QueryKind::Parameter, i, table, &pq.column_refs, src))
                });
            let data = def
                .data_queries
                .iter()
                .zip(&def.data_sources)
                .enumerate()
                .map(|(i, (dq, src))| (QueryKind::Data, i, &dq.table, &dq.column_refs, src));
            for (kind, query_index, table, refs, src) in parameters.chain(data) {
                for (column, position) in refs {
                    let (line, column_no) = loc.in_scalar(&src.path, &src.sql, *position);
                    out.push(ColumnRef {
                        table: table.clone(),
                        column: column.to_string(),
                        definition: def.name.clone(),
                        stream: false,
                        kind,
                        query_index,
                        line,
                        column_no,
                    });
                }
            }
        }
        out.extend(self.stream_columns());
        out.sort_by_key(|c| (c.line, c.column_no));
        out
    }

    /// What each data query reading `table` does with `row`: the bucket it puts it in, or why
    /// it puts it in none.
    pub fn explain_row(&self, table: &TableRef, row: &Row) -> Vec<DataQueryOutcome> {
        let Some(queries) = self.data_by_table.get(table) else {
            return Vec::new();
        };
        let scope = Scope {
            row: Some(row),
            request: None,
        };
        queries
            .iter()
            .flat_map(|&(di, qi)| {
                let def = &self.definitions[di];
                let param = |i: usize| {
                    def.bucket_parameters
                        .get(i)
                        .map_or("?", String::as_str)
                        .to_owned()
                };
                let outcome = |result| DataQueryOutcome {
                    definition: def.name.clone(),
                    query_index: qi,
                    result,
                };
                let result = match def.data_queries[qi].bucket_parameters(&scope) {
                    // One outcome per bucket (`bucket.p IN <row array>` gives several).
                    Ok(sets) => {
                        return sets
                            .into_iter()
                            .map(|values| outcome(Ok((bucket_name(&def.name, &values), values))))
                            .collect::<Vec<_>>();
                    }
                    Err(Miss::Filter) => Err("its WHERE conditions are false for this row".into()),
                    Err(Miss::Parameter(i)) => Err(format!(
                        "bucket parameter `{}` is NULL (or not a usable value) for this row",
                        param(i)
                    )),
                    Err(Miss::Check(i)) => Err(format!(
                        "its conditions on `bucket.{}` give different values for this row",
                        param(i)
                    )),
                };
                vec![outcome(result)]
            })
            .collect()
    }

    /// For each parameter query of `definition`, what `request` would need for the bucket with
    /// parameter `values` (in bucket order), e.g. `parameter query 1 needs a list_members row
    /// with user_id = 'u2' and list_id = 'L1'`. Empty for an unknown definition.
    pub fn grant_requirements(
        &self,
        definition: &str,
        values: &[SqliteValue],
        request: &RequestParameters,
    ) -> Vec<String> {
        let Some(def) = self.definitions.iter().find(|d| d.name == definition) else {
            return Vec::new();
        };
        if def.parameter_queries.is_empty() {
            return vec!["the definition has no parameter queries: every user gets it".into()];
        }
        let request_scope = Scope {
            row: None,
            request: Some(request),
        };
        let wanted = bucket_name(&def.name, values);
        let mut out = Vec::new();
        for (qi, pq) in def.parameter_queries.iter().enumerate() {
            let n = qi + 1;
            let line = match &pq.source {
                ParameterSource::Static { filter } => {
                    if !passes(filter, &request_scope) {
                        format!(
                            "parameter query {n} (from the token) does not apply: its WHERE conditions are false for this user"
                        )
                    } else {
                        match column_values(pq, &request_scope) {
                            Some(v) => format!(
                                "parameter query {n} (from the token) gives this user {}, not {wanted}",
                                bucket_name(&def.name, &v)
                            ),
                            None => format!(
                                "parameter query {n} (from the token) gives a NULL bucket parameter for this user"
                            ),
                        }
                    }
                }
                ParameterSource::JsonEach { array, .. } => {
                    let count = array_elements(&array.eval(&request_scope)).map_or(0, |e| e.len());
                    format!(
                        "parameter query {n} (json_each over request values, {count} elements for this user) does not give {wanted}"
                    )
                }
                ParameterSource::Table {
                    table,
                    lookups,
                    request_filter,
                    row_filter_sql,
                    ..
                } => {
                    if !passes(request_filter, &request_scope) {
                        out.push(format!(
                            "parameter query {n} does not apply: its conditions on request values are false for this user"
                        ));
                        continue;
                    }
                    let mut conditions = Vec::new();
                    let mut null_request = None;
                    for l in lookups {
                        let v = l.request.eval(&request_scope);
                        if l.in_array {
                            conditions.push(format!("{} IN {}", l.row_sql, sql_literal(&v)));
                        } else if l.row_array {
                            match normalize_parameter(&v) {
                                Some(v) => {
                                    conditions.push(format!("{} IN {}", sql_literal(&v), l.row_sql))
                                }
                                None => null_request = Some(l.request_sql.clone()),
                            }
                        } else {
                            match normalize_parameter(&v) {
                                Some(v) => {
                                    conditions.push(format!("{} = {}", l.row_sql, sql_literal(&v)))
                                }
                                None => null_request = Some(l.request_sql.clone()),
                            }
                        }
                    }
                    if let Some(sql) = null_request {
                        out.push(format!(
                            "parameter query {n} cannot match: `{sql}` is NULL for this user"
                        ));
                        continue;
                    }
                    for ((name, _), v) in pq.columns.iter().zip(values) {
                        let sql = pq
                            .column_sql
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or_else(|| name.to_string(), |(_, s)| s.clone());
                        conditions.push(format!("{sql} = {}", sql_literal(v)));
                    }
                    conditions.extend(row_filter_sql.iter().cloned());
                    format!(
                        "parameter query {n} needs a {} row with {}",
                        table_name(table),
                        conditions.join(" and ")
                    )
                }
            };
            out.push(line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    const RULES: &str = "bucket_definitions:
  user_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT id, name FROM lists WHERE owner_id = bucket.user_id
  shared_lists:
    parameters: SELECT list_id FROM list_members WHERE user_id = request.user_id() AND active
    data:
      - SELECT * FROM lists WHERE id = bucket.list_id AND NOT archived
  by_tag:
    parameters: |
      SELECT tag
        FROM app.tag_follows t
        WHERE t.follower = request.user_id()
    data:
      - SELECT l.id AS id FROM lists l WHERE l.tag = bucket.tag
";

    fn rules() -> SyncRules {
        match SyncRules::parse(RULES) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn request(user: &str) -> RequestParameters {
        let jwt = match json!({ "sub": user }) {
            serde_json::Value::Object(m) => m,
            _ => Map::new(),
        };
        RequestParameters::new(jwt, Map::new())
    }

    fn t(name: &str) -> TableRef {
        TableRef::new("public", name)
    }

    #[test]
    fn queries_are_listed_with_positions() {
        let q = rules().queries();
        let summary: Vec<_> = q
            .iter()
            .map(|q| {
                (
                    q.definition.as_str(),
                    q.kind,
                    q.index,
                    q.table.as_ref().map(TableRef::qualified),
                    q.line,
                    q.column,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("user_lists", QueryKind::Parameter, 0, None, 3, 17),
                (
                    "user_lists",
                    QueryKind::Data,
                    0,
                    Some("public.lists".into()),
                    5,
                    9
                ),
                (
                    "shared_lists",
                    QueryKind::Parameter,
                    0,
                    Some("public.list_members".into()),
                    7,
                    17
                ),
                (
                    "shared_lists",
                    QueryKind::Data,
                    0,
                    Some("public.lists".into()),
                    9,
                    9
                ),
                (
                    "by_tag",
                    QueryKind::Parameter,
                    0,
                    Some("app.tag_follows".into()),
                    11,
                    17
                ),
                (
                    "by_tag",
                    QueryKind::Data,
                    0,
                    Some("public.lists".into()),
                    16,
                    9
                ),
            ]
        );
    }

    #[test]
    fn referenced_columns_are_located_in_the_file() {
        let cols: Vec<_> = rules()
            .referenced_columns()
            .into_iter()
            .map(|c| (c.table.qualified(), c.column, c.kind, c.line, c.column_no))
            .collect();
        let p = QueryKind::Parameter;
        let d = QueryKind::Data;
        let s = |x: &str| x.to_string();
        assert_eq!(
            cols,
            vec![
                (s("public.lists"), s("id"), d, 5, 16),
                (s("public.lists"), s("name"), d, 5, 20),
                (s("public.lists"), s("owner_id"), d, 5, 42),
                (s("public.list_members"), s("list_id"), p, 7, 24),
                (s("public.list_members"), s("user_id"), p, 7, 56),
                (s("public.list_members"), s("active"), p, 7, 88),
                // `*` without an explicit id reads `id`.
                (s("public.lists"), s("id"), d, 9, 16),
                (s("public.lists"), s("id"), d, 9, 35),
                (s("public.lists"), s("archived"), d, 9, 63),
                (s("app.tag_follows"), s("tag"), p, 12, 14),
                (s("app.tag_follows"), s("follower"), p, 14, 17),
                (s("public.lists"), s("id"), d, 16, 18),
                (s("public.lists"), s("tag"), d, 16, 48),
            ]
        );
    }

    #[test]
    fn explain_row_gives_buckets_and_reasons() {
        let r = rules();
        let mut row = Row::new();
        row.insert("id", SqliteValue::Text("L1".into()));
        row.insert("name", SqliteValue::Text("Groceries".into()));
        row.insert("owner_id", SqliteValue::Text("u1".into()));
        row.insert("archived", SqliteValue::Integer(1));
        row.insert("tag", SqliteValue::Null);
        let out = r.explain_row(&t("lists"), &row);
        let results: Vec<_> = out
            .iter()
            .map(|o| (o.definition.as_str(), o.query_index, o.result.clone()))
            .collect();
        assert_eq!(
            results,
            vec![
                (
                    "user_lists",
                    0,
                    Ok((
                        r#"user_lists["u1"]"#.to_string(),
                        vec![SqliteValue::Text("u1".into())]
                    ))
                ),
                (
                    "shared_lists",
                    0,
                    Err("its WHERE conditions are false for this row".to_string())
                ),
                (
                    "by_tag",
                    0,
                    Err(
                        "bucket parameter `tag` is NULL (or not a usable value) for this row"
                            .to_string()
                    )
                ),
            ]
        );
        assert!(r.explain_row(&t("nothing"), &row).is_empty());
    }

    #[test]
    fn grant_requirements_name_the_missing_rows() {
        let r = rules();
        let l1 = [SqliteValue::Text("L1".into())];
        assert_eq!(
            r.grant_requirements("shared_lists", &l1, &request("u2")),
            vec![
                "parameter query 1 needs a list_members row with user_id = 'u2' and list_id = 'L1' and active"
                    .to_string()
            ]
        );
        assert_eq!(
            r.grant_requirements("by_tag", &[SqliteValue::Text("o'k".into())], &request("u2")),
            vec![
                "parameter query 1 needs a app.tag_follows row with t.follower = 'u2' and tag = 'o''k'"
                    .to_string()
            ]
        );
        assert_eq!(
            r.grant_requirements("user_lists", &[SqliteValue::Text("u1".into())], &request("u2")),
            vec![
                r#"parameter query 1 (from the token) gives this user user_lists["u2"], not user_lists["u1"]"#
                    .to_string()
            ]
        );
        let anonymous = RequestParameters::new(Map::new(), Map::new());
        assert_eq!(
            r.grant_requirements("shared_lists", &l1, &anonymous),
            vec![
                "parameter query 1 cannot match: `request.user_id()` is NULL for this user"
                    .to_string()
            ]
        );
        assert!(r.grant_requirements("missing", &l1, &anonymous).is_empty());
    }
}
