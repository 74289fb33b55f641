//! Tooling over streams (`riptide rules check/explain`, `riptide schema`): the streams, where
//! each query and each column it reads is, and for one row which stream bucket it goes to or
//! why it goes to none.

use super::evaluate::{partition_values_of, ps_truthy};
use super::plan::{DataSource, function_column};
use crate::eval::Scope;
use crate::json_fixed::json_each;
use crate::sync_rules::introspect::{ColumnRef, QueryInfo, QueryKind};
use crate::yaml::Locator;
use crate::{Row, SqliteValue, SyncRules, TablePattern, TableRef};

/// A table clients receive (for client schemas): its name, the source table it comes from and
/// its columns. One per data query and per stream query; tables from wildcard patterns are not
/// listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTable {
    pub name: String,
    pub source: TableRef,
    pub columns: Vec<OutputColumn>,
    /// The bucket definition or stream it comes from.
    pub definition: String,
}

/// A column of an [`OutputTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputColumn {
    /// `*`: every column of the source table.
    All,
    /// A named column; `source_column` when it copies one column of the source table.
    Named {
        name: String,
        source_column: Option<String>,
    },
}

fn output_column(name: &str, e: &crate::ir::Expr) -> OutputColumn {
    OutputColumn::Named {
        name: name.to_owned(),
        source_column: match e {
            crate::ir::Expr::Column(c) => Some(c.to_string()),
            _ => None,
        },
    }
}

/// A stream of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub auto_subscribe: bool,
    pub priority: u8,
    pub queries: usize,
}

/// What a stream does with one source row.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRowOutcome {
    pub stream: String,
    /// The bucket it puts the row in (name and parameter values), or why it puts it in none.
    pub result: Result<(String, Vec<SqliteValue>), String>,
}

fn table_of(pattern: &TablePattern) -> Option<TableRef> {
    pattern.exact()
}

impl SyncRules {
    /// The streams, in file order.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams
            .streams
            .iter()
            .map(|s| StreamInfo {
                name: s.name.clone(),
                auto_subscribe: s.auto_subscribe,
                priority: s.priority,
                queries: s.queries.len(),
            })
            .collect()
    }

    /// The tables clients receive, in file order (classic data queries, then streams).
    pub fn output_tables(&self) -> Vec<OutputTable> {
        let mut out = Vec::new();
        for def in &self.definitions {
            for dq in &def.data_queries {
                if dq.table.name.ends_with('%') {
                    continue;
                }
                let columns = dq
                    .parts()
                    .columns
                    .iter()
                    .map(|c| match c {
                        crate::sql::projection::Projected::Star => OutputColumn::All,
                        crate::sql::projection::Projected::Named(n, e) => output_column(n, e),
                    })
                    .collect();
                out.push(OutputTable {
                    name: dq.output_table.clone(),
                    source: dq.table.clone(),
                    columns,
                    definition: def.name.clone(),
                });
            }
        }
        for (index, source) in self.streams.data_sources.iter().enumerate() {
            let (Some(name), Some(table)) = (&source.output_table, source.processor.table.exact())
            else {
                continue;
            };
            let Some(bucket) = self
                .streams
                .buckets
                .iter()
                .find(|b| b.sources.contains(&index))
            else {
                continue;
            };
            let stream = bucket
                .name
                .rsplit_once('|')
                .map_or("", |(s, _)| s)
                .to_owned();
            let columns = source
                .columns
                .iter()
                .map(|c| match c {
                    super::plan::Column::Star => OutputColumn::All,
                    super::plan::Column::Named(n, e) => output_column(n, e),
                })
                .collect();
            out.push(OutputTable {
                name: name.clone(),
                source: table,
                columns,
                definition: stream,
            });
        }
        out
    }

    /// Stream queries as [`QueryInfo`]s: a data query of the table each syncs, a parameter
    /// query of each table it joins (wildcard patterns have no table).
    pub(crate) fn stream_queries(&self) -> Vec<QueryInfo> {
        let loc = Locator::new(&self.source);
        let mut out = Vec::new();
        for s in &self.streams.streams {
            for (index, (q, tables)) in s.queries.iter().zip(&s.tables).enumerate() {
                let (line, column) = loc.node(&q.path, false);
                let info = |kind, table| QueryInfo {
                    definition: s.name.clone(),
                    stream: true,
                    kind,
                    index,
                    table,
                    sql: q.sql.clone(),
                    line,
                    column,
                };
                out.push(info(QueryKind::Data, table_of(&tables.synced)));
                for t in &tables.joined {
                    out.push(info(QueryKind::Parameter, table_of(t)));
                }
            }
        }
        out
    }

    /// Columns stream queries read, located in the file.
    pub(crate) fn stream_columns(&self) -> Vec<ColumnRef> {
        let loc = Locator::new(&self.source);
        let mut out = Vec::new();
        for s in &self.streams.streams {
            for (index, tables) in s.tables.iter().enumerate() {
                for (pattern, column, source, position) in &tables.columns {
                    let Some(table) = table_of(pattern) else {
                        continue;
                    };
                    let (line, column_no) = loc.in_scalar(&source.path, &source.sql, *position);
                    let kind = if *pattern == tables.synced {
                        QueryKind::Data
                    } else {
                        QueryKind::Parameter
                    };
                    out.push(ColumnRef {
                        table,
                        column: column.clone(),
                        definition: s.name.clone(),
                        stream: true,
                        kind,
                        query_index: index,
                        line,
                        column_no,
                    });
                }
            }
        }
        out
    }

    /// For each stream bucket a data source of `table` feeds: the bucket `row` goes to, or why
    /// it goes to none. Combine with [`SyncRules::resolve_request`] for a user and
    /// subscription to tell whether the row is granted.
    pub fn explain_stream_row(&self, table: &TableRef, row: &Row) -> Vec<StreamRowOutcome> {
        let mut out = Vec::new();
        for (index, source) in self.streams.data_sources.iter().enumerate() {
            if !source.processor.table.matches(table) {
                continue;
            }
            let results = explain_source(source, row);
            for bucket in self
                .streams
                .buckets
                .iter()
                .filter(|b| b.sources.contains(&index))
            {
                let stream = bucket
                    .name
                    .rsplit_once('|')
                    .map_or("", |(s, _)| s)
                    .to_owned();
                for r in &results {
                    out.push(StreamRowOutcome {
                        stream: stream.clone(),
                        result: r.clone().map(|values| {
                            let mut name = crate::bucket_name::bucket_name(&bucket.name, &values);
                            name.insert_str(0, &self.bucket_prefix);
                            (name, values)
                        }),
                    });
                }
            }
        }
        out
    }
}

/// The partition values a data source gives `row` (one set per bucket), or why none.
fn explain_source(source: &DataSource, row: &Row) -> Vec<Result<Vec<SqliteValue>, String>> {
    let p = &source.processor;
    if p.functions.is_empty() {
        let scope = Scope {
            row: Some(row),
            request: None,
        };
        if !p.filters.iter().all(|f| ps_truthy(&f.eval(&scope))) {
            return vec![Err("its WHERE conditions on the row are false".into())];
        }
        return vec![partition_values_of(p, &scope).ok_or_else(|| {
            "a value that partitions it (a column compared with request values or another table) is NULL".to_owned()
        })];
    }
    // With json_each calls: one outcome per combination that passes.
    let mut rows = vec![row.clone()];
    for (k, input) in p.functions.iter().enumerate() {
        let scope = Scope {
            row: Some(row),
            request: None,
        };
        let elements = match json_each(&input.eval(&scope)) {
            Ok(e) => e,
            Err(e) => return vec![Err(format!("its json_each fails: {e}"))],
        };
        let mut next = Vec::new();
        for r in &rows {
            for (key, value) in &elements {
                let mut r = r.clone();
                r.insert(function_column(k, "key"), key.clone());
                r.insert(function_column(k, "value"), value.clone());
                next.push(r);
            }
        }
        rows = next;
    }
    let mut out = Vec::new();
    for r in &rows {
        let scope = Scope {
            row: Some(r),
            request: None,
        };
        if p.filters.iter().all(|f| ps_truthy(&f.eval(&scope)))
            && let Some(values) = partition_values_of(p, &scope)
            && !out.contains(&Ok(values.clone()))
        {
            out.push(Ok(values));
        }
    }
    if out.is_empty() {
        out.push(Err(
            "no element of its json_each passes its conditions with usable values".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::{LookupResults, RequestParameters, StreamRequest, Subscription};

    const RULES: &str = "config:
  edition: 3
streams:
  list_todos:
    query: |
      SELECT * FROM todos
        WHERE list_id = subscription.parameter('list_id')
          AND list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())
          AND NOT archived
";

    fn rules() -> SyncRules {
        match SyncRules::parse(RULES) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn streams_are_listed_for_tools() {
        let r = rules();
        assert_eq!(
            r.streams(),
            vec![StreamInfo {
                name: "list_todos".into(),
                auto_subscribe: false,
                priority: 3,
                queries: 1
            }]
        );
        let q: Vec<_> = r
            .queries()
            .into_iter()
            .map(|q| {
                (
                    q.definition,
                    q.stream,
                    q.kind,
                    q.table.map(|t| t.qualified()),
                )
            })
            .collect();
        assert_eq!(
            q,
            vec![
                (
                    "list_todos".into(),
                    true,
                    QueryKind::Data,
                    Some("public.todos".into())
                ),
                (
                    "list_todos".into(),
                    true,
                    QueryKind::Parameter,
                    Some("public.list_members".into())
                ),
            ]
        );
        let cols: Vec<_> = r
            .referenced_columns()
            .into_iter()
            .map(|c| (c.table.name, c.column, c.line, c.column_no))
            .collect();
        assert_eq!(
            cols,
            vec![
                ("todos".into(), "id".into(), 6, 14),
                ("todos".into(), "list_id".into(), 7, 15),
                ("todos".into(), "list_id".into(), 8, 15),
                ("list_members".into(), "list_id".into(), 8, 34),
                ("list_members".into(), "user_id".into(), 8, 66),
                ("todos".into(), "archived".into(), 9, 19),
            ]
        );
    }

    #[test]
    fn output_tables_for_client_schemas() {
        let r = match SyncRules::parse(
            "config:\n  edition: 2\nbucket_definitions:\n  b:\n    data:\n      - SELECT id, done AS finished, upper(x) AS y FROM todos AS items\nstreams:\n  s:\n    query: SELECT * FROM lists WHERE owner = auth.user_id()\n",
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let named = |n: &str, c: Option<&str>| OutputColumn::Named {
            name: n.into(),
            source_column: c.map(Into::into),
        };
        assert_eq!(
            r.output_tables(),
            vec![
                OutputTable {
                    name: "items".into(),
                    source: TableRef::new("public", "todos"),
                    columns: vec![
                        named("id", Some("id")),
                        named("finished", Some("done")),
                        named("y", None)
                    ],
                    definition: "b".into(),
                },
                OutputTable {
                    name: "lists".into(),
                    source: TableRef::new("public", "lists"),
                    columns: vec![OutputColumn::All],
                    definition: "s".into(),
                },
            ]
        );
    }

    #[test]
    fn explain_names_the_bucket_or_the_reason() {
        let r = rules();
        let mut row = Row::new();
        row.insert("id", SqliteValue::Text("t1".into()));
        row.insert("list_id", SqliteValue::Text("L1".into()));
        row.insert("archived", SqliteValue::Integer(0));
        let out = r.explain_stream_row(&TableRef::new("public", "todos"), &row);
        assert_eq!(
            out,
            vec![StreamRowOutcome {
                stream: "list_todos".into(),
                result: Ok((
                    r#"list_todos|0["L1"]"#.into(),
                    vec![SqliteValue::Text("L1".into())]
                )),
            }]
        );
        // Whether a user has it: the bucket is among what their subscription resolves to.
        let Ok(serde_json::Value::Object(jwt)) = serde_json::from_value(json!({"sub": "u1"}))
        else {
            panic!("object");
        };
        let mut params = Map::new();
        params.insert("list_id".into(), json!("L1"));
        let request = StreamRequest {
            request: RequestParameters::new(jwt, Map::new()),
            include_defaults: true,
            subscriptions: vec![Subscription {
                stream: "list_todos".into(),
                parameters: Some(params),
                override_priority: None,
            }],
        };
        let mut known = LookupResults::new();
        let missing = r.resolve_request(&request, &known).missing_lookups;
        for l in missing {
            known.insert(l.key(), Vec::new());
        }
        assert!(r.resolve_request(&request, &known).buckets.is_empty());
        row.insert("archived", SqliteValue::Integer(1));
        assert_eq!(
            r.explain_stream_row(&TableRef::new("public", "todos"), &row)[0].result,
            Err("its WHERE conditions on the row are false".into())
        );
        row.insert("archived", SqliteValue::Integer(0));
        row.insert("list_id", SqliteValue::Null);
        assert!(
            r.explain_stream_row(&TableRef::new("public", "todos"), &row)[0]
                .result
                .as_ref()
                .is_err_and(|e| e.contains("NULL"))
        );
    }
}
