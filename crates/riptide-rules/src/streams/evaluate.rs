//! Source rows through compiled streams during replication: data sources give bucket rows,
//! lookup sources give parameter-lookup entries. A processor with `json_each` calls on the row
//! evaluates once per combination of their elements (a row whose array is empty goes nowhere).

use std::borrow::Cow;

use super::plan::{Column, DataSource, LookupSource, Processor, StreamSet, function_column};
use crate::bucket_name::{
    bucket_name, encode_parameter, normalize_parameter, push_json, push_json_array,
    push_json_string,
};
use crate::cast::to_text;
use crate::eval::Scope;
use crate::json_fixed::{JsonEachError, json_each};
use crate::{
    EvaluatedParameters, EvaluatedRow, EvaluationError, ParameterLookup, Row, SqliteValue, TableRef,
};

/// Whether PowerSync counts a value as true in a condition: a non-zero number, or text whose
/// leading integer (JavaScript's `parseInt`) is non-zero; NULL, blobs and NaN are false.
pub(crate) fn ps_truthy(v: &SqliteValue) -> bool {
    match v {
        SqliteValue::Null | SqliteValue::Blob(_) => false,
        SqliteValue::Integer(i) => *i != 0,
        SqliteValue::Real(f) => *f != 0.0 && !f.is_nan(),
        SqliteValue::Text(s) => js_parse_int_nonzero(s),
    }
}

/// `parseInt(s)` is a number other than 0 (NaN counts as zero).
fn js_parse_int_nonzero(s: &str) -> bool {
    let s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    digits
        .chars()
        .take_while(|c| c.is_digit(radix))
        .any(|c| c != '0')
}

/// The rows a processor evaluates `row` as: the row itself, or one per combination of its
/// `json_each` elements (columns `\u{1f}<k>\u{1f}key`/`value`) that passes its filters.
fn combinations<'r>(p: &Processor, row: &'r Row) -> Result<Vec<Cow<'r, Row>>, JsonEachError> {
    let mut combos: Vec<Cow<'r, Row>> = vec![Cow::Borrowed(row)];
    for (k, input) in p.functions.iter().enumerate() {
        let elements = json_each(&input.eval(&Scope {
            row: Some(row),
            request: None,
        }))?;
        let mut next = Vec::with_capacity(combos.len() * elements.len());
        for c in &combos {
            for (key, value) in &elements {
                let mut r = c.clone().into_owned();
                r.insert(function_column(k, "key"), key.clone());
                r.insert(function_column(k, "value"), value.clone());
                next.push(Cow::Owned(r));
            }
        }
        combos = next;
    }
    combos.retain(|c| {
        let scope = Scope {
            row: Some(c),
            request: None,
        };
        p.filters.iter().all(|f| ps_truthy(&f.eval(&scope)))
    });
    Ok(combos)
}

/// The partition values of one combination (`None` when one is NULL or unusable).
pub(crate) fn partition_values_of(p: &Processor, scope: &Scope<'_>) -> Option<Vec<SqliteValue>> {
    p.partitions
        .iter()
        .map(|e| normalize_parameter(&e.eval(scope)))
        .collect()
}

/// `castAsText` of a number as JavaScript prints it (ids of non-text types).
fn id_text(v: &SqliteValue) -> String {
    match v {
        SqliteValue::Text(s) => s.clone(),
        SqliteValue::Real(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        SqliteValue::Null => String::new(),
        other => to_text(other).map(Cow::into_owned).unwrap_or_default(),
    }
}

fn set_field<'a>(
    fields: &mut Vec<(&'a str, Cow<'a, SqliteValue>)>,
    k: &'a str,
    v: Cow<'a, SqliteValue>,
) {
    match fields.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => fields.push((k, v)),
    }
}

/// The synced row: `*` copies the row, a named column sets (or replaces) one; blobs are left
/// out. Its id is the `id` column as text (`""` when missing or NULL).
fn output_row(source: &DataSource, row: &Row) -> (String, String) {
    let scope = Scope {
        row: Some(row),
        request: None,
    };
    let mut fields: Vec<(&str, Cow<'_, SqliteValue>)> = Vec::with_capacity(row.0.len());
    for c in &source.columns {
        match c {
            Column::Star => {
                for (k, v) in &row.0 {
                    if !matches!(v, SqliteValue::Blob(_)) {
                        set_field(&mut fields, k.as_str(), Cow::Borrowed(v));
                    }
                }
            }
            Column::Named(name, e) => {
                let v = e.eval(&scope);
                if !matches!(*v, SqliteValue::Blob(_)) {
                    set_field(&mut fields, name.as_str(), v);
                }
            }
        }
    }
    let id = fields
        .iter()
        .find(|(k, _)| *k == "id")
        .map_or_else(String::new, |(_, v)| id_text(v));
    let mut data = String::with_capacity(64 + fields.len() * 16);
    data.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        push_json_string(&mut data, k);
        data.push(':');
        push_json(&mut data, v);
    }
    data.push('}');
    (id, data)
}

impl StreamSet {
    /// The bucket rows `row` of `table` goes to, with bucket names prefixed by `prefix`.
    pub(crate) fn evaluate_row(
        &self,
        table: &TableRef,
        row: &Row,
        prefix: &str,
        rows: &mut Vec<EvaluatedRow>,
        errors: &mut Vec<EvaluationError>,
    ) {
        for index in self.index.data_for(table) {
            let source = &self.data_sources[index];
            if !source.processor.table.matches(table) {
                continue;
            }
            let combos = match combinations(&source.processor, row) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(EvaluationError {
                        message: format!("row of {}: {e}", table.qualified()),
                    });
                    continue;
                }
            };
            let mut value_sets: Vec<Vec<SqliteValue>> = Vec::new();
            for c in &combos {
                let scope = Scope {
                    row: Some(c),
                    request: None,
                };
                if let Some(values) = partition_values_of(&source.processor, &scope)
                    && !value_sets.contains(&values)
                {
                    value_sets.push(values);
                }
            }
            if value_sets.is_empty() {
                continue;
            }
            let (id, data) = output_row(source, row);
            let output_table = source
                .output_table
                .clone()
                .unwrap_or_else(|| table.name.clone());
            for bucket in self.buckets.iter().filter(|b| b.sources.contains(&index)) {
                for values in &value_sets {
                    let mut name = bucket_name(&bucket.name, values);
                    name.insert_str(0, prefix);
                    let new = EvaluatedRow {
                        bucket: name,
                        table: output_table.clone(),
                        id: id.clone(),
                        data: data.clone(),
                    };
                    // Two queries of one bucket giving the same row: the later one's version
                    // wins, as PowerSync's later op would on the client.
                    match rows
                        .iter_mut()
                        .find(|r| r.bucket == new.bucket && r.table == new.table && r.id == new.id)
                    {
                        Some(existing) => *existing = new,
                        None => rows.push(new),
                    }
                }
            }
        }
    }

    /// The parameter-lookup entries `row` of `table` gives.
    pub(crate) fn evaluate_parameter_row(
        &self,
        table: &TableRef,
        row: &Row,
        out: &mut Vec<EvaluatedParameters>,
    ) {
        for index in self.index.lookups_for(table) {
            let source = &self.lookup_sources[index];
            if !source.processor.table.matches(table) {
                continue;
            }
            for entry in lookup_entries(source, row) {
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
}

/// The `(key, outputs)` entries of one lookup source for one row; none when its `json_each`
/// fails (as PowerSync skips the row).
pub(crate) fn lookup_entries(source: &LookupSource, row: &Row) -> Vec<EvaluatedParameters> {
    let Ok(combos) = combinations(&source.processor, row) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &combos {
        let scope = Scope {
            row: Some(c),
            request: None,
        };
        let Some(key) = partition_values_of(&source.processor, &scope) else {
            continue;
        };
        let Some(outputs) = source
            .outputs
            .iter()
            .map(|e| normalize_parameter(&e.eval(&scope)))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let mut result = String::new();
        push_json_array(&mut result, &outputs);
        let entry = EvaluatedParameters {
            lookup: ParameterLookup {
                definition: source.stream.clone(),
                query_index: source.index,
                values: key.iter().map(encode_parameter).collect(),
            },
            result: result.into_bytes(),
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_is_powersyncs() {
        let t = |s: &str| SqliteValue::Text(s.into());
        for (v, expected) in [
            (SqliteValue::Null, false),
            (SqliteValue::Integer(2), true),
            (SqliteValue::Integer(0), false),
            (SqliteValue::Real(0.5), true),
            (SqliteValue::Real(f64::NAN), false),
            (t("1"), true),
            (t(" 12abc"), true),
            (t("0.5"), false),
            (t("-3"), true),
            (t("0x10"), true),
            (t("abc"), false),
            (t(""), false),
            (SqliteValue::Blob(vec![1]), false),
        ] {
            assert_eq!(ps_truthy(&v), expected, "{v:?}");
        }
    }

    #[test]
    fn ids_print_like_javascript() {
        assert_eq!(id_text(&SqliteValue::Integer(12)), "12");
        assert_eq!(id_text(&SqliteValue::Real(3.0)), "3");
        assert_eq!(id_text(&SqliteValue::Real(1.5)), "1.5");
        assert_eq!(id_text(&SqliteValue::Null), "");
        assert_eq!(id_text(&SqliteValue::Text("a".into())), "a");
    }
}
