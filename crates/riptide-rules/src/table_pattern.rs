//! Table patterns: `FROM "todos_%"` reads every table of the schema whose name starts with
//! `todos_` (PowerSync's wildcard tables, e.g. for partitioned or per-tenant tables). A pattern
//! without a trailing `%` is one table.

use std::fmt;

use crate::TableRef;

/// A table name, or a name prefix when it ends with `%`, in one schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TablePattern {
    pub schema: String,
    /// The name as written, with its trailing `%` for a wildcard.
    pub pattern: String,
}

impl TablePattern {
    pub fn new(schema: impl Into<String>, pattern: impl Into<String>) -> Self {
        TablePattern {
            schema: schema.into(),
            pattern: pattern.into(),
        }
    }

    /// Whether the pattern names several tables (ends with `%`).
    pub fn is_wildcard(&self) -> bool {
        self.pattern.ends_with('%')
    }

    /// The one table a pattern without `%` names.
    pub fn exact(&self) -> Option<TableRef> {
        (!self.is_wildcard()).then(|| TableRef::new(self.schema.clone(), self.pattern.clone()))
    }

    /// The name prefix of a wildcard (the name itself otherwise).
    pub fn prefix(&self) -> &str {
        self.pattern.strip_suffix('%').unwrap_or(&self.pattern)
    }

    /// Whether `table` is one the pattern names.
    pub fn matches(&self, table: &TableRef) -> bool {
        table.schema == self.schema
            && if self.is_wildcard() {
                table.name.starts_with(self.prefix())
            } else {
                table.name == self.pattern
            }
    }

    /// What the wildcard matched in `table`'s name (`_table_suffix`): `"2024"` for
    /// `todos_2024` under `todos_%`; empty for an exact pattern.
    pub fn suffix<'t>(&self, table: &'t TableRef) -> &'t str {
        if self.is_wildcard() {
            table.name.get(self.prefix().len()..).unwrap_or_default()
        } else {
            ""
        }
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_by_prefix_in_one_schema() {
        let p = TablePattern::new("public", "todos_%");
        assert!(p.is_wildcard());
        assert!(p.matches(&TableRef::new("public", "todos_2024")));
        assert!(p.matches(&TableRef::new("public", "todos_")));
        assert!(!p.matches(&TableRef::new("public", "todos")));
        assert!(!p.matches(&TableRef::new("app", "todos_2024")));
        assert_eq!(p.suffix(&TableRef::new("public", "todos_2024")), "2024");
        assert_eq!(p.exact(), None);
        let exact = TablePattern::new("public", "todos");
        assert!(exact.matches(&TableRef::new("public", "todos")));
        assert!(!exact.matches(&TableRef::new("public", "todos_1")));
        assert_eq!(exact.exact(), Some(TableRef::new("public", "todos")));
        assert_eq!(exact.suffix(&TableRef::new("public", "todos")), "");
    }
}
