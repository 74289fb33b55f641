//! Table patterns in classic rules: `FROM "todos_%"` reads every table whose name starts with
//! `todos_`. Data queries see the matched rest of the name as the column `_table_suffix` (which
//! `*` does not copy); an unaliased pattern syncs rows under their own table's name. Parameter
//! queries match the pattern too (without `_table_suffix`, as in PowerSync).

use std::collections::HashMap;

use super::SyncRules;
use crate::sql::data_query::DataQuery;
use crate::{Row, RowEvaluation, SqliteValue, TablePattern, TableRef};

const SUFFIX: &str = "_table_suffix";

/// The pattern a query's table names, when it is a wildcard.
pub(crate) fn pattern_of(table: &TableRef) -> Option<TablePattern> {
    table
        .name
        .ends_with('%')
        .then(|| TablePattern::new(table.schema.clone(), table.name.clone()))
}

/// Evaluates a wildcard data query on a row of `table`.
pub(crate) fn evaluate(
    query: &DataQuery,
    definition: &str,
    pattern: &TablePattern,
    table: &TableRef,
    row: &Row,
    ev: &mut RowEvaluation,
) {
    let mut with_suffix = row.clone();
    with_suffix.insert(SUFFIX, SqliteValue::Text(pattern.suffix(table).to_owned()));
    let before = ev.rows.len();
    query.evaluate(definition, &with_suffix, &mut ev.rows, &mut ev.errors);
    let unaliased = query.output_table == pattern.pattern;
    let selected = query.outputs_column(SUFFIX);
    for new in &mut ev.rows[before..] {
        if unaliased {
            new.table.clone_from(&table.name);
        }
        if !selected
            && let Ok(serde_json::Value::Object(mut data)) = serde_json::from_str(&new.data)
        {
            data.shift_remove(SUFFIX);
            new.data = serde_json::Value::Object(data).to_string();
        }
    }
}

impl SyncRules {
    /// The queries of wildcard patterns (keys of `by_table`) that `table` matches.
    pub(crate) fn wildcard_queries<'s>(
        &'s self,
        by_table: &'s HashMap<TableRef, Vec<(usize, usize)>>,
        table: &'s TableRef,
    ) -> impl Iterator<Item = ((usize, usize), Option<TablePattern>)> + 's {
        by_table.iter().flat_map(move |(key, queries)| {
            let pattern = pattern_of(key).filter(|p| p.matches(table));
            let queries = if pattern.is_some() {
                queries.as_slice()
            } else {
                &[]
            };
            queries.iter().map(move |q| (*q, pattern.clone()))
        })
    }

    /// The wildcard table patterns (`"todos_%"`) the rules read; replication must resolve
    /// them against the catalog. [`SyncRules::source_tables`] lists the exact tables.
    pub fn table_patterns(&self) -> Vec<TablePattern> {
        let mut out: Vec<TablePattern> = self
            .data_by_table
            .keys()
            .chain(self.parameters_by_table.keys())
            .filter_map(pattern_of)
            .collect();
        for p in self.streams.patterns() {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether any query reads `table` (by name or through a pattern).
    pub fn reads_table(&self, table: &TableRef) -> bool {
        self.source_tables.contains(table) || self.table_patterns().iter().any(|p| p.matches(table))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Map, json};

    use super::*;
    use crate::RequestParameters;

    fn row(values: &[(&str, &str)]) -> Row {
        let mut r = Row::new();
        for (k, v) in values {
            r.insert(*k, SqliteValue::Text((*v).into()));
        }
        r
    }

    #[test]
    fn classic_wildcards_match_prefixes_and_see_the_suffix() {
        let rules = match SyncRules::parse(
            "bucket_definitions:\n  b:\n    parameters: SELECT id AS p FROM \"users_%\" WHERE id = request.user_id()\n    data:\n      - SELECT * FROM \"todos_%\" WHERE owner = bucket.p AND _table_suffix != 'x'\n      - SELECT id, _table_suffix AS s FROM \"todos_%\" AS t WHERE owner = bucket.p\n      - SELECT * FROM plain WHERE owner = bucket.p\n",
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            rules.source_tables(),
            vec![TableRef::new("public", "plain")]
        );
        assert_eq!(
            rules.table_patterns(),
            vec![
                TablePattern::new("public", "todos_%"),
                TablePattern::new("public", "users_%")
            ]
        );
        assert!(rules.reads_table(&TableRef::new("public", "todos_2024")));
        assert!(!rules.reads_table(&TableRef::new("public", "todo")));
        let r = row(&[("id", "1"), ("owner", "u1")]);
        let out: Vec<(String, String, String)> = rules
            .evaluate_row(&TableRef::new("public", "todos_a"), &r)
            .rows
            .into_iter()
            .map(|o| (o.bucket, o.table, o.data))
            .collect();
        assert_eq!(
            out,
            vec![
                (
                    r#"b["u1"]"#.into(),
                    "todos_a".into(),
                    r#"{"id":"1","owner":"u1"}"#.into()
                ),
                (
                    r#"b["u1"]"#.into(),
                    "t".into(),
                    r#"{"id":"1","s":"a"}"#.into()
                ),
            ]
        );
        assert!(
            rules
                .evaluate_row(&TableRef::new("public", "todos_x"), &r)
                .rows
                .iter()
                .all(|o| o.table == "t")
        );
        let params = rules
            .evaluate_parameter_row(&TableRef::new("public", "users_eu"), &row(&[("id", "u1")]));
        assert_eq!(params.len(), 1);
        let mut store: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
        for p in params {
            store.entry(p.lookup.key()).or_default().push(p.result);
        }
        let Ok(serde_json::Value::Object(jwt)) = serde_json::from_value(json!({"sub": "u1"}))
        else {
            panic!("object");
        };
        let request = RequestParameters::new(jwt, Map::new());
        let buckets = rules.resolve_buckets(&request, &store);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].name, r#"b["u1"]"#);
    }
}
