//! The sync rules file format (classic `bucket_definitions`) read with `yaml_serde`, and
//! positions in the file: of a node (found by re-reading the document up to that node, which
//! yaml_serde reports with its location) and of a character inside a scalar (found by aligning
//! the scalar's value with its source text, for plain, quoted and block scalars).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use yaml_serde::Value;

use crate::RulesError;
use crate::compat::{Compatibility, read_config};
use crate::streams::source::{CteSource, StreamSource, read_ctes, read_streams};

/// One step of a path from the document root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// A query string of the file and where it is.
#[derive(Debug, Clone)]
pub(crate) struct QuerySource {
    pub sql: String,
    pub path: Vec<PathSeg>,
}

/// One entry of `bucket_definitions`.
#[derive(Debug, Clone)]
pub(crate) struct DefinitionSource {
    pub name: String,
    pub priority: u8,
    pub accept_dangerous: bool,
    pub parameters: Vec<QuerySource>,
    pub data: Vec<QuerySource>,
}

/// The file's content, before its SQL is looked at.
#[derive(Debug, Clone, Default)]
pub(crate) struct RulesSource {
    /// `config`: edition and compatibility options.
    pub compatibility: Compatibility,
    pub definitions: Vec<DefinitionSource>,
    /// `streams` (Sync Streams) and the global `with` block.
    pub streams: Vec<StreamSource>,
    pub ctes: Vec<CteSource>,
    /// Problems that do not stop the file from loading.
    pub warnings: Vec<RulesError>,
}

const PROBE: &str = "riptide-rules position probe";

/// Finds nodes of the source by path.
pub(crate) struct Locator<'s> {
    source: &'s str,
}

impl<'s> Locator<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        Locator { source }
    }

    /// 1-based line and column where the node at `path` starts (the key itself with `key`).
    pub(crate) fn node(&self, path: &[PathSeg], key: bool) -> (usize, usize) {
        match (Probe { path, key }).deserialize(yaml_serde::Deserializer::from_str(self.source)) {
            Err(e) if e.to_string().contains(PROBE) => {
                e.location().map_or((1, 1), |l| (l.line(), l.column()))
            }
            _ => (1, 1),
        }
    }

    /// An error at the node at `path`.
    pub(crate) fn error(
        &self,
        path: &[PathSeg],
        key: bool,
        message: impl Into<String>,
    ) -> RulesError {
        let (line, column) = self.node(path, key);
        RulesError {
            message: message.into(),
            line,
            column,
        }
    }

    /// File position of the 1-based (`line`, `column`) inside the scalar at `path`, whose value
    /// is `value`. Falls back to the scalar's start when the source cannot be aligned.
    pub(crate) fn in_scalar(
        &self,
        path: &[PathSeg],
        value: &str,
        position: Option<(usize, usize)>,
    ) -> (usize, usize) {
        let start = self.node(path, false);
        let Some((line, column)) = position else {
            return start;
        };
        // Character offset of (line, column) inside the value.
        let mut target = None;
        let (mut l, mut c) = (1, 1);
        for (i, ch) in value.chars().enumerate() {
            if l == line && c == column {
                target = Some(i);
                break;
            }
            if ch == '\n' {
                l += 1;
                c = 1;
            } else {
                c += 1;
            }
        }
        let Some(target) = target else {
            return start;
        };
        align(self.source, start, value, target).unwrap_or(start)
    }
}

/// Walks the source from the scalar's start, matching the value's characters in order, and
/// returns the source position of value character `target`.
fn align(
    source: &str,
    start: (usize, usize),
    value: &str,
    target: usize,
) -> Option<(usize, usize)> {
    // Source characters with positions, from the scalar start on.
    let mut src = Vec::new();
    let (mut line, mut col) = (1usize, 1usize);
    for ch in source.chars() {
        if (line, col) >= start {
            src.push((ch, line, col));
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    let first = src.first()?.0;
    let (mut p, skippable): (usize, &[char]) = match first {
        '|' | '>' => (src.iter().position(|(c, _, _)| *c == '\n')? + 1, &[]),
        '\'' => (1, &['\'']),
        '"' => (1, &['\\']),
        _ => (0, &[]),
    };
    for (i, ch) in value.chars().enumerate() {
        if ch.is_whitespace() {
            if i == target {
                let (_, l, c) = src.get(p)?;
                return Some((*l, *c));
            }
            continue;
        }
        loop {
            let (sc, l, c) = *src.get(p)?;
            if sc == ch {
                if i == target {
                    return Some((l, c));
                }
                p += 1;
                break;
            }
            if sc.is_whitespace() || skippable.contains(&sc) {
                p += 1;
            } else {
                return None;
            }
        }
    }
    None
}

/// Deserialises the document down `path` and fails at its node, so yaml_serde reports the
/// node's location.
struct Probe<'p> {
    path: &'p [PathSeg],
    key: bool,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ProbeVisitor(self))
    }
}

struct ProbeVisitor<'p>(Probe<'p>);

macro_rules! probe_scalar {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _v: $ty) -> Result<(), E> {
            if self.0.path.is_empty() { Err(E::custom(PROBE)) } else { Ok(()) }
        })*
    };
}

impl<'de> Visitor<'de> for ProbeVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    probe_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.0.path.is_empty() {
            Err(E::custom(PROBE))
        } else {
            Ok(())
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Probe {
            path: self.0.path,
            key: self.0.key,
        }
        .deserialize(d)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((seg, rest)) = self.0.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        let PathSeg::Key(wanted) = seg else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let fail_on_key = self.0.key && rest.is_empty();
        while let Some(k) = map.next_key_seed(KeySeed {
            fail_on: fail_on_key.then_some(wanted.as_str()),
        })? {
            if k.as_deref() == Some(wanted.as_str()) {
                map.next_value_seed(Probe {
                    path: rest,
                    key: self.0.key,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((seg, rest)) = self.0.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        let PathSeg::Index(wanted) = seg else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            if i == *wanted {
                if seq
                    .next_element_seed(Probe {
                        path: rest,
                        key: self.0.key,
                    })?
                    .is_none()
                {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// Reads a mapping key as a string (`None` for other keys), failing on `fail_on`.
struct KeySeed<'k> {
    fail_on: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        if self.fail_on == Some(v) {
            Err(E::custom(PROBE))
        } else {
            Ok(Some(v.to_string()))
        }
    }
    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<String>, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<String>, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn with(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Reads the file structure, collecting every problem.
pub(crate) fn read_rules(source: &str) -> (RulesSource, Vec<RulesError>) {
    let loc = Locator::new(source);
    let mut errors = Vec::new();
    let mut rules = RulesSource::default();
    let doc: Value = match yaml_serde::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = e.to_string();
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            errors.push(RulesError {
                message: format!("invalid YAML: {message}"),
                line,
                column,
            });
            return (rules, errors);
        }
    };
    let Value::Mapping(top) = doc else {
        errors.push(loc.error(
            &[],
            false,
            "sync rules must be a YAML mapping with `bucket_definitions`",
        ));
        return (rules, errors);
    };
    let mut saw_definitions = false;
    let mut saw_streams = false;
    let mut with_path = None;
    for (k, v) in &top {
        let Some(name) = k.as_str() else {
            errors.push(RulesError {
                message: "top-level keys must be strings".into(),
                line: 1,
                column: 1,
            });
            continue;
        };
        let path = vec![key(name)];
        match name {
            "bucket_definitions" => {
                saw_definitions = true;
                read_definitions(&loc, &path, v, &mut rules, &mut errors);
            }
            "config" => {
                rules.compatibility =
                    read_config(&loc, &path, v, &mut errors, &mut rules.warnings);
            }
            "event_definitions" => {}
            "streams" => {
                saw_streams = true;
                rules.streams = read_streams(&loc, &path, v, &mut errors, &mut rules.warnings);
            }
            "with" => {
                with_path = Some(path.clone());
                rules.ctes = read_ctes(&loc, &path, v, &mut errors);
            }
            other => errors.push(loc.error(
                &path,
                true,
                format!(
                    "unknown top-level key `{other}` (expected bucket_definitions, streams, with, config or event_definitions)"
                ),
            )),
        }
    }
    if !saw_definitions && !saw_streams {
        errors.push(loc.error(&[], false, "missing `bucket_definitions` or `streams`"));
    }
    crate::streams::source::check_edition(
        &loc,
        &mut rules,
        saw_definitions,
        with_path.as_deref(),
        &mut errors,
    );
    (rules, errors)
}

fn read_definitions(
    loc: &Locator<'_>,
    path: &[PathSeg],
    v: &Value,
    rules: &mut RulesSource,
    errors: &mut Vec<RulesError>,
) {
    let Value::Mapping(m) = v else {
        if !v.is_null() {
            errors.push(loc.error(
                path,
                false,
                format!(
                    "`bucket_definitions` must be a mapping of names to definitions, not {}",
                    type_name(v)
                ),
            ));
        }
        return;
    };
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            errors.push(loc.error(path, false, "bucket definition names must be strings"));
            continue;
        };
        let p = with(path, key(name));
        if name.is_empty() || name.contains(['[', ']', '"']) {
            errors.push(loc.error(&p, true, format!("invalid bucket definition name `{name}`")));
            continue;
        }
        let Value::Mapping(def) = v else {
            errors.push(loc.error(
                &p,
                false,
                format!("bucket definition `{name}` must be a mapping with `data`"),
            ));
            continue;
        };
        let mut d = DefinitionSource {
            name: name.to_string(),
            priority: 3,
            accept_dangerous: false,
            parameters: Vec::new(),
            data: Vec::new(),
        };
        let mut saw_data = false;
        for (k, v) in def {
            let Some(field) = k.as_str() else { continue };
            let fp = with(&p, key(field));
            match field {
                "parameters" => match v {
                    Value::String(s) => d.parameters.push(QuerySource {
                        sql: s.clone(),
                        path: fp,
                    }),
                    Value::Sequence(items) => {
                        read_queries(loc, &fp, items, &mut d.parameters, errors);
                    }
                    Value::Null => {}
                    other => errors.push(loc.error(
                        &fp,
                        false,
                        format!("`parameters` must be a query or a list of queries, not {}", type_name(other)),
                    )),
                },
                "data" => {
                    saw_data = true;
                    match v {
                        Value::Sequence(items) => read_queries(loc, &fp, items, &mut d.data, errors),
                        other => errors.push(loc.error(
                            &fp,
                            false,
                            format!("`data` must be a list of queries, not {}", type_name(other)),
                        )),
                    }
                }
                "priority" => match v.as_u64() {
                    Some(prio @ 0..=3) => d.priority = prio as u8,
                    _ => errors.push(loc.error(&fp, false, "`priority` must be an integer from 0 to 3")),
                },
                "accept_potentially_dangerous_queries" => match v.as_bool() {
                    Some(b) => d.accept_dangerous = b,
                    None => errors.push(loc.error(
                        &fp,
                        false,
                        "`accept_potentially_dangerous_queries` must be true or false",
                    )),
                },
                other => errors.push(loc.error(
                    &fp,
                    true,
                    format!(
                        "unknown key `{other}` in bucket definition `{name}` (expected parameters, data, priority, accept_potentially_dangerous_queries)"
                    ),
                )),
            }
        }
        if !saw_data {
            errors.push(loc.error(
                &p,
                true,
                format!("bucket definition `{name}` has no `data` queries"),
            ));
        }
        rules.definitions.push(d);
    }
}

fn read_queries(
    loc: &Locator<'_>,
    path: &[PathSeg],
    items: &[Value],
    out: &mut Vec<QuerySource>,
    errors: &mut Vec<RulesError>,
) {
    for (i, item) in items.iter().enumerate() {
        let p = with(path, PathSeg::Index(i));
        match item {
            Value::String(s) => out.push(QuerySource {
                sql: s.clone(),
                path: p,
            }),
            other => errors.push(loc.error(
                &p,
                false,
                format!("expected a SQL query string, not {}", type_name(other)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_path(def: &str, i: usize) -> Vec<PathSeg> {
        vec![
            key("bucket_definitions"),
            key(def),
            key("data"),
            PathSeg::Index(i),
        ]
    }

    #[test]
    fn nodes_and_keys_are_located() {
        let src =
            "bucket_definitions:\n  a:\n    data:\n      - SELECT * FROM t\n      -   'SELECT x'\n";
        let loc = Locator::new(src);
        assert_eq!(loc.node(&data_path("a", 0), false), (4, 9));
        assert_eq!(loc.node(&data_path("a", 1), false), (5, 11));
        assert_eq!(
            loc.node(&[key("bucket_definitions"), key("a")], true),
            (2, 3)
        );
        assert_eq!(loc.node(&data_path("a", 7), false), (1, 1));
    }

    #[test]
    fn positions_inside_scalars() {
        let src = concat!(
            "bucket_definitions:\n",
            "  a:\n",
            "    data:\n",
            "      - SELECT a,\n",
            "          b FROM t\n",
            "      - 'SELECT ''x'', y FROM t'\n",
            "      - |\n",
            "        SELECT *\n",
            "          FROM t\n",
            "      - >-\n",
            "        SELECT *\n",
            "        FROM t\n",
            "      - \"SELECT \\\"q\\\" FROM t\"\n",
        );
        let loc = Locator::new(src);
        let (doc, errors) = read_rules(src);
        assert!(errors.is_empty(), "{errors:?}");
        let data = &doc.definitions[0].data;
        // plain multi-line: "SELECT a, b FROM t": `b` is at 1:11 of the value.
        assert_eq!(data[0].sql, "SELECT a, b FROM t");
        assert_eq!(
            loc.in_scalar(&data[0].path, &data[0].sql, Some((1, 11))),
            (5, 11)
        );
        // single-quoted: `y` after the escaped quotes.
        assert_eq!(data[1].sql, "SELECT 'x', y FROM t");
        assert_eq!(
            loc.in_scalar(&data[1].path, &data[1].sql, Some((1, 13))),
            (6, 24)
        );
        // literal block keeps lines: FROM at 2:3.
        assert_eq!(
            loc.in_scalar(&data[2].path, &data[2].sql, Some((2, 3))),
            (9, 11)
        );
        // folded block: one line.
        assert_eq!(data[3].sql, "SELECT * FROM t");
        assert_eq!(
            loc.in_scalar(&data[3].path, &data[3].sql, Some((1, 10))),
            (12, 9)
        );
        // double-quoted with escapes.
        assert_eq!(data[4].sql, "SELECT \"q\" FROM t");
        assert_eq!(
            loc.in_scalar(&data[4].path, &data[4].sql, Some((1, 12))),
            (13, 23)
        );
        // Unknown position: the scalar's start.
        assert_eq!(loc.in_scalar(&data[0].path, &data[0].sql, None), (4, 9));
    }
}
