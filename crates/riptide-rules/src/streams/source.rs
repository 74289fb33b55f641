//! The YAML of Sync Streams: the `streams:` mapping and the global `with:` block, read into
//! [`StreamSource`]s with the path of every query (to locate errors), before any SQL is parsed.

use yaml_serde::Value;

use crate::RulesError;
use crate::yaml::{Locator, PathSeg, QuerySource};

/// One common table expression of a `with:` block.
#[derive(Debug, Clone)]
pub(crate) struct CteSource {
    pub name: String,
    /// Path of its key (to locate "unused" warnings).
    pub key_path: Vec<PathSeg>,
    pub query: QuerySource,
}

/// One entry of `streams:`.
#[derive(Debug, Clone)]
pub(crate) struct StreamSource {
    pub name: String,
    /// Path of the stream's key.
    pub key_path: Vec<PathSeg>,
    pub auto_subscribe: bool,
    pub priority: u8,
    pub accept_dangerous: bool,
    pub queries: Vec<QuerySource>,
    /// Stream-local CTEs (they shadow global ones).
    pub ctes: Vec<CteSource>,
    /// Where `with` and `queries` are, when used (edition 2 refuses them).
    pub with_path: Option<Vec<PathSeg>>,
    pub queries_path: Option<Vec<PathSeg>>,
}

fn with(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_owned())
}

/// Names that cannot name a stream: they would make bucket ids ambiguous.
pub(crate) fn invalid_name(name: &str) -> bool {
    name.is_empty() || name.contains(['[', ']', '"', '|'])
}

/// Reads a `with:` mapping of names to queries.
pub(crate) fn read_ctes(
    loc: &Locator<'_>,
    path: &[PathSeg],
    v: &Value,
    errors: &mut Vec<RulesError>,
) -> Vec<CteSource> {
    let mut out = Vec::new();
    let Value::Mapping(m) = v else {
        if !v.is_null() {
            errors.push(loc.error(path, false, "`with` must be a mapping of names to queries"));
        }
        return out;
    };
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            errors.push(loc.error(path, false, "common table expression names must be strings"));
            continue;
        };
        let key_path = with(path, key(name));
        match v {
            Value::String(sql) => out.push(CteSource {
                name: name.to_owned(),
                key_path: key_path.clone(),
                query: QuerySource {
                    sql: sql.clone(),
                    path: key_path,
                },
            }),
            _ => errors.push(loc.error(
                &key_path,
                false,
                format!("common table expression `{name}` must be a SQL query string"),
            )),
        }
    }
    out
}

/// Reads the `streams:` mapping.
pub(crate) fn read_streams(
    loc: &Locator<'_>,
    path: &[PathSeg],
    v: &Value,
    errors: &mut Vec<RulesError>,
    warnings: &mut Vec<RulesError>,
) -> Vec<StreamSource> {
    let mut out = Vec::new();
    let Value::Mapping(m) = v else {
        if !v.is_null() {
            errors.push(loc.error(
                path,
                false,
                "`streams` must be a mapping of stream names to definitions",
            ));
        }
        return out;
    };
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            errors.push(loc.error(path, false, "stream names must be strings"));
            continue;
        };
        let key_path = with(path, key(name));
        if invalid_name(name) {
            errors.push(loc.error(
                &key_path,
                true,
                format!("invalid stream name `{name}` (no `[`, `]`, `\"` or `|`)"),
            ));
            continue;
        }
        let Value::Mapping(def) = v else {
            errors.push(loc.error(
                &key_path,
                false,
                format!("stream `{name}` must be a mapping with `query` or `queries`"),
            ));
            continue;
        };
        out.push(read_stream(loc, name, key_path, def, errors, warnings));
    }
    out
}

/// Reads one stream's mapping.
fn read_stream(
    loc: &Locator<'_>,
    name: &str,
    key_path: Vec<PathSeg>,
    def: &yaml_serde::Mapping,
    errors: &mut Vec<RulesError>,
    warnings: &mut Vec<RulesError>,
) -> StreamSource {
    let mut s = StreamSource {
        name: name.to_owned(),
        key_path: key_path.clone(),
        auto_subscribe: false,
        priority: 3,
        accept_dangerous: false,
        queries: Vec::new(),
        ctes: Vec::new(),
        with_path: None,
        queries_path: None,
    };
    let mut query_keys = 0;
    for (k, v) in def {
        let Some(field) = k.as_str() else { continue };
        let fp = with(&key_path, key(field));
        match field {
                "query" => {
                    query_keys += 1;
                    match v {
                        Value::String(sql) => s.queries.push(QuerySource {
                            sql: sql.clone(),
                            path: fp,
                        }),
                        _ => errors.push(loc.error(&fp, false, "`query` must be a SQL query string")),
                    }
                }
                "queries" => {
                    query_keys += 1;
                    s.queries_path = Some(fp.clone());
                    match v {
                        Value::Sequence(items) => {
                            for (i, item) in items.iter().enumerate() {
                                let ip = with(&fp, PathSeg::Index(i));
                                match item {
                                    Value::String(sql) => s.queries.push(QuerySource {
                                        sql: sql.clone(),
                                        path: ip,
                                    }),
                                    _ => errors.push(loc.error(
                                        &ip,
                                        false,
                                        "expected a SQL query string",
                                    )),
                                }
                            }
                        }
                        _ => errors.push(loc.error(
                            &fp,
                            false,
                            "`queries` must be a list of SQL query strings",
                        )),
                    }
                }
                "with" => {
                    s.with_path = Some(fp.clone());
                    s.ctes = read_ctes(loc, &fp, v, errors);
                }
                "auto_subscribe" => match v.as_bool() {
                    Some(b) => s.auto_subscribe = b,
                    None => errors.push(loc.error(&fp, false, "`auto_subscribe` must be true or false")),
                },
                "priority" => match v.as_u64() {
                    Some(p @ 0..=3) => s.priority = p as u8,
                    _ => errors.push(loc.error(&fp, false, "`priority` must be an integer from 0 to 3")),
                },
                "accept_potentially_dangerous_queries" => match v.as_bool() {
                    Some(b) => s.accept_dangerous = b,
                    None => errors.push(loc.error(
                        &fp,
                        false,
                        "`accept_potentially_dangerous_queries` must be true or false",
                    )),
                },
                other => warnings.push(loc.error(
                    &fp,
                    true,
                    format!(
                        "unknown key `{other}` in stream `{name}` is ignored (expected query, queries, with, auto_subscribe, priority, accept_potentially_dangerous_queries)"
                    ),
                )),
            }
    }
    if query_keys != 1 {
        errors.push(loc.error(
            &key_path,
            true,
            format!("stream `{name}` needs exactly one of `query` or `queries`"),
        ));
    }
    s
}

/// PowerSync's edition rules: edition 3 compiles streams and refuses `bucket_definitions`;
/// before it, streams are the alpha version (edition 2 only, one `query`, no `with`).
pub(crate) fn check_edition(
    loc: &Locator<'_>,
    rules: &mut crate::yaml::RulesSource,
    saw_definitions: bool,
    global_with: Option<&[PathSeg]>,
    errors: &mut Vec<RulesError>,
) {
    for s in &rules.streams {
        if rules.definitions.iter().any(|d| d.name == s.name) {
            errors.push(loc.error(
                &s.key_path,
                true,
                format!("a bucket definition is already named `{}`", s.name),
            ));
        }
    }
    let edition = rules.compatibility.edition();
    if edition >= 3 {
        if saw_definitions {
            errors.push(loc.error(
                &[key("bucket_definitions")],
                true,
                "`bucket_definitions` are not supported in edition 3: write them as `streams` (`riptide rules migrate FILE` rewrites them)",
            ));
        }
        if rules.streams.is_empty() && !errors.iter().any(|e| e.message.contains("`streams`")) {
            errors.push(loc.error(&[], false, "edition 3 needs `streams`"));
        }
        return;
    }
    if let Some(p) = global_with {
        errors.push(loc.error(p, true, "a global `with` block needs `config: edition: 3`"));
    }
    if rules.streams.is_empty() {
        return;
    }
    if edition < 2 {
        for s in &rules.streams {
            errors.push(loc.error(
                &s.key_path,
                true,
                format!(
                    "stream `{}`: Sync Streams need `config: edition: 3` (or 2 for the alpha version)",
                    s.name
                ),
            ));
        }
        return;
    }
    rules.warnings.push(loc.error(
        &[key("streams")],
        true,
        "these are the alpha version of Sync Streams (edition 2): `config: edition: 3` is recommended",
    ));
    for s in &rules.streams {
        if let Some(p) = &s.with_path {
            errors.push(loc.error(
                p,
                true,
                format!("stream `{}`: `with` needs `config: edition: 3`", s.name),
            ));
        }
        if let Some(p) = &s.queries_path {
            errors.push(loc.error(
                p,
                true,
                format!("stream `{}`: `queries` needs `config: edition: 3`", s.name),
            ));
        }
    }
}
