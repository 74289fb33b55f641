//! `riptide rules migrate`: classic `bucket_definitions` rewritten as equivalent Sync Streams
//! (edition 3).
//!
//! Each definition becomes an auto-subscribed stream (classic buckets are always synced) with
//! its priority; each pair of a data query and a parameter query becomes one query of it. The
//! SQL is printed from the lowered rules, not copied, so it means exactly what the classic
//! query meant: identifiers are quoted where streams would fold their case, `bucket.<p>` is
//! replaced by the request value it stood for (`auth.user_id()`, …) or by a join with the
//! parameter query's table, and classic SQL semantics are spelled out where streams differ
//! (`NOT` and `!=` on NULL, `IN (…)` lists, `a IS b`). The `config` block keeps every
//! compatibility option at the value the classic file had, so synced values do not change,
//! with one exception: `upper()`/`lower()` of non-ASCII text (SQLite's ASCII-only functions in
//! classic rules, PowerSync's Unicode ones in streams). Bucket ids do change (they are per
//! stream), so clients download the data again.

use crate::compat::CompatibilityOption;
use crate::functions::Function;
use crate::ir::{BinOp, Expr, RequestValue};
use crate::sql::parameter_query::{ParameterQuery, ParameterSource};
use crate::sql::projection::Projected;
use crate::yaml::read_rules;
use crate::{RulesErrors, SqliteValue, SyncRules};

/// Why a file cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The classic rules do not parse.
    #[error(transparent)]
    Rules(#[from] RulesErrors),
    /// The file already uses streams.
    #[error("the file already defines `streams`; only `bucket_definitions` are migrated")]
    AlreadyStreams,
    /// A construct streams cannot express, with the definition it is in.
    #[error("bucket definition `{definition}` cannot be migrated: {reason}")]
    Unsupported { definition: String, reason: String },
}

/// Postgres's reserved words: they cannot name a column unquoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "is",
    "join",
    "lateral",
    "leading",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// Quotes an identifier unless streams read it as written.
fn ident(name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if simple && !RESERVED.contains(&name) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn literal(v: &SqliteValue) -> Result<String, String> {
    Ok(match v {
        SqliteValue::Null => "NULL".into(),
        SqliteValue::Integer(i) if *i < 0 => format!("({i})"),
        SqliteValue::Integer(i) => i.to_string(),
        SqliteValue::Real(f) if f.is_finite() => {
            let text = format!("{f:?}");
            if *f < 0.0 { format!("({text})") } else { text }
        }
        SqliteValue::Text(s) => format!("'{}'", s.replace('\'', "''")),
        other => return Err(format!("the literal {other:?} has no stream form")),
    })
}

fn function_name(f: Function) -> Result<&'static str, String> {
    Ok(match f {
        Function::Upper | Function::UpperUnicode => "upper",
        Function::Lower | Function::LowerUnicode => "lower",
        Function::Substring => "substring",
        Function::Hex => "hex",
        Function::Length => "length",
        Function::Base64 => "base64",
        Function::Typeof => "typeof",
        Function::Ifnull => "ifnull",
        Function::Iif => "iif",
        Function::Instr => "instr",
        Function::JsonExtract => "json_extract",
        Function::JsonArrayLength => "json_array_length",
        Function::JsonKeys => "json_keys",
        Function::UuidBlob => "uuid_blob",
        Function::Unixepoch => "unixepoch",
        Function::Datetime => "datetime",
        Function::StAsGeojson => "st_asgeojson",
        Function::StAsText => "st_astext",
        Function::StX => "st_x",
        Function::StY => "st_y",
        Function::JsonValid => return Err("json_valid() is not available in streams".into()),
    })
}

/// Prints IR as stream SQL; row columns are qualified with `row` (or printed bare).
struct Printer<'a> {
    /// Qualifier of the row's columns.
    row: &'a str,
}

impl Printer<'_> {
    fn column(&self, name: &str) -> String {
        if self.row.is_empty() {
            ident(name)
        } else {
            format!("{}.{}", self.row, ident(name))
        }
    }

    fn request(&self, r: &RequestValue) -> String {
        match r {
            RequestValue::UserId => "auth.user_id()".into(),
            RequestValue::Jwt => "auth.parameters()".into(),
            RequestValue::Parameters => "connection.parameters()".into(),
            RequestValue::TokenParameter(k) if &**k == "user_id" => "auth.user_id()".into(),
            RequestValue::TokenParameter(k) => format!(
                "(auth.parameters() -> 'parameters' ->> {})",
                literal(&SqliteValue::Text(k.to_string())).unwrap_or_default()
            ),
            RequestValue::UserParameter(k) => format!(
                "connection.parameter({})",
                literal(&SqliteValue::Text(k.to_string())).unwrap_or_default()
            ),
            RequestValue::SubscriptionParameters => "subscription.parameters()".into(),
        }
    }

    fn expr(&self, e: &Expr) -> Result<String, String> {
        let p = |x: &Expr| self.expr(x);
        Ok(match e {
            Expr::Literal(v) => literal(v)?,
            Expr::Column(c) => self.column(c),
            Expr::Request(r) => self.request(r),
            Expr::Bucket(_) => return Err("bucket parameter outside a binding".into()),
            // Classic NOT is SQL's: NULL stays NULL (false in a condition).
            Expr::Not(x) => format!("(NOT {0} AND {0} IS NOT NULL)", p(x)?),
            Expr::Negate(x) => format!("(0 - {})", p(x)?),
            Expr::And(a, b) => format!("({} AND {})", p(a)?, p(b)?),
            Expr::Or(a, b) => format!("({} OR {})", p(a)?, p(b)?),
            Expr::IsNull(x, false) => format!("({} IS NULL)", p(x)?),
            Expr::IsNull(x, true) => format!("({} IS NOT NULL)", p(x)?),
            Expr::Is(a, b, negated) => {
                let (a, b) = (p(a)?, p(b)?);
                let is = format!("({a} = {b} OR ({a} IS NULL AND {b} IS NULL))");
                if *negated { format!("(NOT {is})") } else { is }
            }
            Expr::InList(x, items, negated) => {
                let items = items.iter().map(p).collect::<Result<Vec<_>, _>>()?;
                let x = p(x)?;
                let list = format!("({x} IN ARRAY[{}])", items.join(", "));
                if *negated {
                    format!("(NOT {list} AND {x} IS NOT NULL)")
                } else {
                    list
                }
            }
            Expr::InJson(x, array, negated) => {
                let (x, array) = (p(x)?, p(array)?);
                if *negated {
                    format!("({x} NOT IN {array} AND {x} IS NOT NULL AND {array} IS NOT NULL)")
                } else {
                    format!("({x} IN {array})")
                }
            }
            Expr::Cast(x, ty) => format!("CAST({} AS {})", p(x)?, format!("{ty:?}").to_lowercase()),
            Expr::Call(f, args) => {
                let args = args.iter().map(p).collect::<Result<Vec<_>, _>>()?;
                format!("{}({})", function_name(*f)?, args.join(", "))
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (p(a)?, p(b)?);
                match op {
                    // `!=` in streams is true for NULL: keep SQL's.
                    BinOp::NotEq => format!("({a} != {b} AND {a} IS NOT NULL AND {b} IS NOT NULL)"),
                    other => format!("({a} {} {b})", operator(*other)),
                }
            }
            Expr::Case { .. } => return Err("CASE has no classic form".into()),
        })
    }
}

fn operator(op: BinOp) -> &'static str {
    match op {
        BinOp::Eq => "=",
        BinOp::NotEq => "!=",
        BinOp::Lt => "<",
        BinOp::LtEq => "<=",
        BinOp::Gt => ">",
        BinOp::GtEq => ">=",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Concat => "||",
        BinOp::Arrow | BinOp::ArrowFixed => "->",
        BinOp::LongArrow | BinOp::LongArrowFixed => "->>",
    }
}

/// One stream query from a data query and (optionally) a parameter query; a table-based
/// parameter query with one column becomes `IN (SELECT …)` when `subquery_form`, a join
/// otherwise.
fn stream_query(
    rules: &SyncRules,
    di: usize,
    data_index: usize,
    parameter: Option<&ParameterQuery>,
    subquery_form: bool,
) -> Result<String, String> {
    let def = &rules.definitions[di];
    let dq = &def.data_queries[data_index];
    let parts = dq.parts();
    let aliased = dq.output_table != dq.table.name;
    let qualifier = ident(if aliased {
        &dq.output_table
    } else {
        &dq.table.name
    });
    let row = Printer { row: &qualifier };
    let table = table_name(&dq.table);
    let mut from = if aliased {
        format!("{table} AS {qualifier}")
    } else {
        table
    };
    let mut columns = Vec::new();
    for c in parts.columns {
        columns.push(match c {
            Projected::Star => format!("{qualifier}.*"),
            Projected::Named(name, e) => format!("{} AS {}", row.expr(e)?, ident(name)),
        });
    }
    let mut conditions: Vec<String> = parts
        .filter
        .map(|f| row.expr(f))
        .transpose()?
        .into_iter()
        .collect();
    if subquery_form && let Some(condition) = subquery_condition(&row, &parts, parameter)? {
        conditions.push(condition);
        return Ok(finish(&columns, &from, &conditions));
    }
    // The value each bucket parameter takes, as SQL.
    let values: Vec<String> = match parameter.map(|p| (p, &p.source)) {
        None => Vec::new(),
        Some((pq, ParameterSource::Static { filter })) => {
            let request = Printer { row: "" };
            if let Some(f) = filter {
                conditions.push(request.expr(f)?);
            }
            pq.columns
                .iter()
                .map(|(_, e)| request.expr(e))
                .collect::<Result<_, _>>()?
        }
        Some((pq, ParameterSource::JsonEach { array, filter })) => {
            let p = if qualifier == "p" { "p2" } else { "p" };
            from.push_str(&format!(
                ", json_each({}) AS {p}",
                Printer { row: "" }.expr(array)?
            ));
            let each = Printer { row: p };
            if let Some(f) = filter {
                conditions.push(each.expr(f)?);
            }
            pq.columns
                .iter()
                .map(|(_, e)| each.expr(e))
                .collect::<Result<_, _>>()?
        }
        Some((
            pq,
            ParameterSource::Table {
                table,
                lookups,
                row_filter,
                request_filter,
                ..
            },
        )) => {
            let p = if qualifier == "p" { "p2" } else { "p" };
            from.push_str(&format!(", {} AS {p}", table_name(table)));
            let other = Printer { row: p };
            conditions.extend(table_conditions(
                &other,
                lookups,
                row_filter,
                request_filter,
            )?);
            pq.columns
                .iter()
                .map(|(_, e)| other.expr(e))
                .collect::<Result<_, _>>()?
        }
    };
    let bind = |e: &Expr, each: bool, value: &str| -> Result<String, String> {
        let e = row.expr(e)?;
        Ok(if each {
            format!("{value} IN {e}")
        } else {
            format!("{e} = {value}")
        })
    };
    for (i, (e, each)) in parts.bucket_values.iter().enumerate() {
        let value = values.get(i).ok_or("a bucket parameter without a value")?;
        conditions.push(bind(e, *each, value)?);
    }
    for (i, e, each) in &parts.bucket_checks {
        let value = values.get(*i).ok_or("a bucket parameter without a value")?;
        conditions.push(bind(e, *each, value)?);
    }
    if conditions
        .iter()
        .chain(columns.iter())
        .any(|c| c.contains("_table_suffix"))
    {
        return Err("`_table_suffix` is not available in streams".into());
    }
    Ok(finish(&columns, &from, &conditions))
}

/// `<row> IN (SELECT <column> FROM <table> WHERE …)` for a table parameter query with one
/// column and a data query binding it once with `=` (`None` otherwise: use a join).
fn subquery_condition(
    row: &Printer<'_>,
    parts: &crate::sql::data_query::DataQueryParts<'_>,
    parameter: Option<&ParameterQuery>,
) -> Result<Option<String>, String> {
    let Some(pq) = parameter else {
        return Ok(None);
    };
    let ParameterSource::Table {
        table,
        lookups,
        row_filter,
        request_filter,
        ..
    } = &pq.source
    else {
        return Ok(None);
    };
    let ([(e, false)], [], [(_, column)]) = (
        parts.bucket_values.as_slice(),
        parts.bucket_checks.as_slice(),
        pq.columns.as_slice(),
    ) else {
        return Ok(None);
    };
    let inner = Printer { row: "" };
    let inner_conditions = table_conditions(&inner, lookups, row_filter, request_filter)?;
    let mut subquery = format!("SELECT {} FROM {}", inner.expr(column)?, table_name(table));
    if !inner_conditions.is_empty() {
        subquery.push_str(" WHERE ");
        subquery.push_str(&inner_conditions.join(" AND "));
    }
    Ok(Some(format!("{} IN ({subquery})", row.expr(e)?)))
}

fn table_name(table: &crate::TableRef) -> String {
    if table.schema == "public" {
        ident(&table.name)
    } else {
        format!("{}.{}", ident(&table.schema), ident(&table.name))
    }
}

/// A table parameter query's conditions: its lookups and filters, printed with `p`.
fn table_conditions(
    p: &Printer<'_>,
    lookups: &[crate::sql::parameter_query::Lookup],
    row_filter: &Option<Expr>,
    request_filter: &Option<Expr>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for l in lookups {
        let (r, q) = (p.expr(&l.row)?, p.expr(&l.request)?);
        out.push(if l.in_array {
            format!("{r} IN {q}")
        } else if l.row_array {
            format!("{q} IN {r}")
        } else {
            format!("{r} = {q}")
        });
    }
    for f in row_filter.iter().chain(request_filter.iter()) {
        out.push(p.expr(f)?);
    }
    Ok(out)
}

fn finish(columns: &[String], from: &str, conditions: &[String]) -> String {
    let mut sql = format!("SELECT {} FROM {from}", columns.join(", "));
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql
}

fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Rewrites a classic sync rules file as an edition-3 streams file (YAML text).
pub fn migrate_to_streams(yaml: &str) -> Result<String, MigrateError> {
    let rules = SyncRules::parse(yaml)?;
    if !rules.streams.streams.is_empty() {
        return Err(MigrateError::AlreadyStreams);
    }
    let (source, _) = read_rules(yaml);
    let compat = rules.compatibility_options();
    let mut out = String::from(
        "# Migrated from bucket_definitions by `riptide rules migrate`: every definition is an\n# auto-subscribed stream; the compatibility options keep the values the rules had.\nconfig:\n  edition: 3\n",
    );
    for option in CompatibilityOption::ALL {
        if option == CompatibilityOption::UnstableSqliteExpressionEngine {
            continue;
        }
        out.push_str(&format!(
            "  {}: {}\n",
            option.name(),
            compat.is_enabled(option)
        ));
    }
    if let Some(p) = compat.max_time_precision() {
        out.push_str(&format!("  timestamp_max_precision: {}\n", p.name()));
    }
    if let Some(v) = compat.storage_version() {
        out.push_str(&format!("  storage_version: {v}\n"));
    }
    out.push_str("streams:\n");
    for (di, def) in rules.definitions.iter().enumerate() {
        let unsupported = |reason: String| MigrateError::Unsupported {
            definition: def.name.clone(),
            reason,
        };
        let mut queries = Vec::new();
        for qi in 0..def.data_queries.len() {
            if def.parameter_queries.is_empty() {
                queries.push(stream_query(&rules, di, qi, None, true).map_err(unsupported)?);
            }
            for pq in &def.parameter_queries {
                queries.push(stream_query(&rules, di, qi, Some(pq), true).map_err(unsupported)?);
            }
        }
        let plain = def
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        let key = if plain {
            def.name.clone()
        } else {
            yaml_string(&def.name)
        };
        out.push_str(&format!("  {key}:\n    auto_subscribe: true\n"));
        if def.priority != 3 {
            out.push_str(&format!("    priority: {}\n", def.priority));
        }
        let accept = source
            .definitions
            .iter()
            .any(|d| d.name == def.name && d.accept_dangerous);
        if accept
            || def
                .parameter_queries
                .iter()
                .any(|q| q.uses_untrusted_values)
        {
            out.push_str("    accept_potentially_dangerous_queries: true\n");
        }
        if queries.is_empty() {
            return Err(unsupported("it has no data queries".into()));
        }
        out.push_str("    queries:\n");
        for q in queries {
            out.push_str(&format!("      - {}\n", yaml_string(&q)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
