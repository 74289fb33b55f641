//! The `config` block of a sync config: its edition, storage version, timestamp precision and
//! PowerSync's compatibility options, under PowerSync's own names and with its defaults.
//!
//! A compatibility option fixes a historical quirk of the PowerSync service in a way that would
//! break existing apps, so each is off in edition 1 and on from the edition that fixed it; the
//! `config` block can override each one. `timestamp_max_precision` caps the sub-second digits of
//! ISO 8601 time values (it needs `timestamps_iso8601`). Everything else under `config` is
//! refused, located, as PowerSync's schema refuses it.

use yaml_serde::Value;

use crate::RulesError;
use crate::yaml::{Locator, PathSeg};

/// A PowerSync compatibility option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompatibilityOption {
    /// `timestamps_iso8601`: time values with a `T` separator and a fixed number of sub-second
    /// digits (edition 1: a space, and the digits the source sent).
    TimestampsIso8601,
    /// `versioned_bucket_ids`: bucket ids carry the deployment's version.
    VersionedBucketIds,
    /// `fixed_json_extract`: `->`/`->>` with a path not starting with `$` read one key
    /// (`'a.b'` is the key `a.b`), and a JSON `null` extracted with `->>` is SQL NULL.
    FixedJsonExtract,
    /// `custom_postgres_types`: domains, composites and ranges are mapped to structured values
    /// instead of their raw text.
    CustomPostgresTypes,
    /// `unstable_sqlite_expression_engine`: PowerSync's experimental evaluation of Sync Streams
    /// with SQLite. Only `false` is accepted here.
    UnstableSqliteExpressionEngine,
}

impl CompatibilityOption {
    /// Every option, in PowerSync's order.
    pub const ALL: [CompatibilityOption; 5] = [
        CompatibilityOption::TimestampsIso8601,
        CompatibilityOption::VersionedBucketIds,
        CompatibilityOption::FixedJsonExtract,
        CompatibilityOption::CustomPostgresTypes,
        CompatibilityOption::UnstableSqliteExpressionEngine,
    ];

    /// The option's name in a sync config.
    pub fn name(self) -> &'static str {
        match self {
            CompatibilityOption::TimestampsIso8601 => "timestamps_iso8601",
            CompatibilityOption::VersionedBucketIds => "versioned_bucket_ids",
            CompatibilityOption::FixedJsonExtract => "fixed_json_extract",
            CompatibilityOption::CustomPostgresTypes => "custom_postgres_types",
            CompatibilityOption::UnstableSqliteExpressionEngine => {
                "unstable_sqlite_expression_engine"
            }
        }
    }

    /// The option called `name` in a sync config.
    pub fn from_name(name: &str) -> Option<CompatibilityOption> {
        CompatibilityOption::ALL
            .into_iter()
            .find(|o| o.name() == name)
    }

    /// The first edition in which the option is on by default (`None`: never on by default).
    pub fn default_from(self) -> Option<u8> {
        match self {
            CompatibilityOption::UnstableSqliteExpressionEngine => None,
            _ => Some(2),
        }
    }
}

/// The most sub-second digits time values keep (`timestamp_max_precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimePrecision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl TimePrecision {
    /// Every precision, coarsest first.
    pub const ALL: [TimePrecision; 4] = [
        TimePrecision::Seconds,
        TimePrecision::Milliseconds,
        TimePrecision::Microseconds,
        TimePrecision::Nanoseconds,
    ];

    /// The name a sync config uses.
    pub fn name(self) -> &'static str {
        match self {
            TimePrecision::Seconds => "seconds",
            TimePrecision::Milliseconds => "milliseconds",
            TimePrecision::Microseconds => "microseconds",
            TimePrecision::Nanoseconds => "nanoseconds",
        }
    }

    /// The precision called `name`.
    pub fn from_name(name: &str) -> Option<TimePrecision> {
        TimePrecision::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Sub-second digits: 0, 3, 6 or 9.
    pub fn sub_second_digits(self) -> u8 {
        match self {
            TimePrecision::Seconds => 0,
            TimePrecision::Milliseconds => 3,
            TimePrecision::Microseconds => 6,
            TimePrecision::Nanoseconds => 9,
        }
    }
}

/// The edition and options a sync config chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    edition: u8,
    /// Options set in `config`, in file order (a later entry of the same option wins).
    overrides: Vec<(CompatibilityOption, bool)>,
    max_time_precision: Option<TimePrecision>,
    storage_version: Option<u8>,
}

impl Default for Compatibility {
    fn default() -> Self {
        Compatibility::legacy()
    }
}

impl Compatibility {
    /// Edition 1 without overrides: every quirk kept (a file without `config`).
    pub fn legacy() -> Compatibility {
        Compatibility {
            edition: 1,
            overrides: Vec::new(),
            max_time_precision: None,
            storage_version: None,
        }
    }

    /// An edition without overrides.
    pub fn for_edition(edition: u8) -> Compatibility {
        Compatibility {
            edition,
            ..Compatibility::legacy()
        }
    }

    /// `config: edition` (1 when absent).
    pub fn edition(&self) -> u8 {
        self.edition
    }

    /// Whether `option` is on: the `config` value when given, otherwise the edition's default.
    pub fn is_enabled(&self, option: CompatibilityOption) -> bool {
        self.overrides
            .iter()
            .rev()
            .find(|(o, _)| *o == option)
            .map_or_else(
                || option.default_from().is_some_and(|e| self.edition >= e),
                |(_, on)| *on,
            )
    }

    /// `timestamp_max_precision`, when set.
    pub fn max_time_precision(&self) -> Option<TimePrecision> {
        self.max_time_precision
    }

    /// `storage_version`, when set.
    pub fn storage_version(&self) -> Option<u8> {
        self.storage_version
    }

    /// The options set explicitly in `config`, in file order.
    pub fn overrides(&self) -> &[(CompatibilityOption, bool)] {
        &self.overrides
    }
}

fn known_keys() -> String {
    let mut keys = vec!["edition", "storage_version", "timestamp_max_precision"];
    keys.extend(CompatibilityOption::ALL.iter().map(|o| o.name()));
    keys.join(", ")
}

/// Reads the `config` mapping at `path`, reporting problems at their node.
pub(crate) fn read_config(
    loc: &Locator<'_>,
    path: &[PathSeg],
    v: &Value,
    errors: &mut Vec<RulesError>,
    warnings: &mut Vec<RulesError>,
) -> Compatibility {
    let mut out = Compatibility::legacy();
    let Value::Mapping(m) = v else {
        if !v.is_null() {
            errors.push(loc.error(path, false, "`config` must be a mapping"));
        }
        return out;
    };
    let mut precision_at = None;
    for (k, v) in m {
        let Some(name) = k.as_str() else {
            errors.push(loc.error(path, false, "`config` keys must be strings"));
            continue;
        };
        let mut p = path.to_vec();
        p.push(PathSeg::Key(name.to_owned()));
        match name {
            "edition" => match v.as_u64() {
                Some(e @ 1..=3) => out.edition = e as u8,
                _ => errors.push(loc.error(&p, false, "`edition` must be 1, 2 or 3")),
            },
            "storage_version" => match v.as_u64() {
                Some(2) => out.storage_version = Some(2),
                Some(3) => {
                    out.storage_version = Some(3);
                    warnings.push(loc.error(
                        &p,
                        false,
                        "storage version 3 is unstable in PowerSync and may change in any release",
                    ));
                }
                Some(n) => errors.push(loc.error(
                    &p,
                    false,
                    format!("storage version {n} is not supported (use 2, or 3)"),
                )),
                None => errors.push(loc.error(&p, false, "`storage_version` must be a number")),
            },
            "timestamp_max_precision" => match v.as_str().and_then(TimePrecision::from_name) {
                Some(precision) => {
                    out.max_time_precision = Some(precision);
                    precision_at = Some(p);
                }
                None => errors.push(loc.error(
                    &p,
                    false,
                    "`timestamp_max_precision` must be one of seconds, milliseconds, microseconds, nanoseconds",
                )),
            },
            _ => match CompatibilityOption::from_name(name) {
                Some(option) => match v.as_bool() {
                    Some(true) if option == CompatibilityOption::UnstableSqliteExpressionEngine => {
                        errors.push(loc.error(
                            &p,
                            false,
                            "`unstable_sqlite_expression_engine` (PowerSync's experimental SQLite evaluation) is not supported: remove it or set it to false",
                        ));
                    }
                    Some(on) => out.overrides.push((option, on)),
                    None => errors.push(loc.error(
                        &p,
                        false,
                        format!("`{name}` must be true or false"),
                    )),
                },
                None => {
                    let hint = match name {
                        "custom_types" => "; PowerSync calls this option `custom_postgres_types`",
                        "sync_config_compiler" => {
                            "; the Sync Streams compiler is chosen with `edition: 3`"
                        }
                        _ => "",
                    };
                    errors.push(loc.error(
                        &p,
                        true,
                        format!(
                            "unknown config option `{name}` (expected {}){hint}",
                            known_keys()
                        ),
                    ));
                }
            },
        }
    }
    if let Some(p) = precision_at
        && !out.is_enabled(CompatibilityOption::TimestampsIso8601)
    {
        errors.push(loc.error(
            &p,
            true,
            "`timestamp_max_precision` requires `timestamps_iso8601` (on from edition 2)",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (Compatibility, Vec<RulesError>, Vec<RulesError>) {
        let loc = Locator::new(yaml);
        let doc: Value = match yaml_serde::from_str(yaml) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let config = doc.get("config").cloned().unwrap_or(Value::Null);
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let c = read_config(
            &loc,
            &[PathSeg::Key("config".into())],
            &config,
            &mut errors,
            &mut warnings,
        );
        (c, errors, warnings)
    }

    #[test]
    fn options_default_by_edition_and_can_be_overridden() {
        use CompatibilityOption::*;
        let legacy = Compatibility::legacy();
        let three = Compatibility::for_edition(3);
        for o in [
            TimestampsIso8601,
            VersionedBucketIds,
            FixedJsonExtract,
            CustomPostgresTypes,
        ] {
            assert!(!legacy.is_enabled(o), "{o:?}");
            assert!(three.is_enabled(o), "{o:?}");
            assert!(Compatibility::for_edition(2).is_enabled(o), "{o:?}");
        }
        assert!(!three.is_enabled(UnstableSqliteExpressionEngine));
        let (c, errors, _) = read(
            "config:\n  edition: 2\n  custom_postgres_types: false\n  fixed_json_extract: true\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.edition(), 2);
        assert!(!c.is_enabled(CustomPostgresTypes));
        assert!(c.is_enabled(TimestampsIso8601));
        let (c, errors, _) = read("config:\n  custom_postgres_types: true\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(c.is_enabled(CustomPostgresTypes));
        assert!(!c.is_enabled(TimestampsIso8601));
    }

    #[test]
    fn precision_and_storage_version() {
        let (c, errors, warnings) = read(
            "config:\n  edition: 2\n  timestamp_max_precision: milliseconds\n  storage_version: 3\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.max_time_precision(), Some(TimePrecision::Milliseconds));
        assert_eq!(c.storage_version(), Some(3));
        assert_eq!(warnings.len(), 1);
        assert_eq!((warnings[0].line, warnings[0].column), (4, 20));
    }

    #[test]
    fn refusals_are_located() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            (
                "config:\n  custom_types: true\n",
                (2, 3),
                "custom_postgres_types",
            ),
            (
                "config:\n  nope: 1\n",
                (2, 3),
                "unknown config option `nope`",
            ),
            (
                "config:\n  sync_config_compiler: true\n",
                (2, 3),
                "edition: 3",
            ),
            (
                "config:\n  timestamp_max_precision: 3\n",
                (2, 28),
                "one of seconds",
            ),
            (
                "config:\n  timestamp_max_precision: seconds\n",
                (2, 3),
                "requires `timestamps_iso8601`",
            ),
            (
                "config:\n  edition: 3\n  timestamps_iso8601: false\n  timestamp_max_precision: seconds\n",
                (4, 3),
                "requires `timestamps_iso8601`",
            ),
            ("config:\n  storage_version: 1\n", (2, 20), "not supported"),
            (
                "config:\n  storage_version: x\n",
                (2, 20),
                "must be a number",
            ),
            (
                "config:\n  fixed_json_extract: 1\n",
                (2, 23),
                "true or false",
            ),
            (
                "config:\n  edition: 3\n  unstable_sqlite_expression_engine: true\n",
                (3, 38),
                "not supported",
            ),
            ("config: [1]\n", (1, 9), "must be a mapping"),
            ("config:\n  edition: 4\n", (2, 12), "1, 2 or 3"),
        ];
        for (yaml, (line, column), fragment) in cases {
            let (_, errors, _) = read(yaml);
            assert!(
                errors.iter().any(|e| e.message.contains(fragment)
                    && (e.line, e.column) == (*line, *column)),
                "{yaml}: expected {fragment:?} at {line}:{column}, got {errors:?}"
            );
        }
        let (_, errors, _) = read("config:\n  unstable_sqlite_expression_engine: false\n");
        assert!(errors.is_empty(), "{errors:?}");
    }
}
