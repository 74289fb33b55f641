//! The result sets of a stream query and the names in scope: tables, `json_each` calls, inlined
//! subqueries and CTEs; columns in their query-wide form (`<set>\u{1f}<name>`); positions in
//! the texts of a stream; what an expression reads.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use sqlparser::ast;
use sqlparser::tokenizer::Span;

use crate::TablePattern;
use crate::ir::Expr;
use crate::sql::lower::SqlError;

/// Index of a result set among those of one query (including nested subqueries and CTEs).
pub(crate) type SetId = usize;

const SEP: char = '\u{1f}';

/// A column of a result set, in the query-wide form.
pub(crate) fn column(set: SetId, name: &str) -> Expr {
    Expr::Column(format!("{set}{SEP}{name}").into())
}

/// The result set and column name of a query-wide column.
pub(crate) fn split_column(name: &str) -> Option<(SetId, &str)> {
    let (set, column) = name.split_once(SEP)?;
    Some((set.parse().ok()?, column))
}

/// Which source text a position refers to: the stream query (`None`) or a named CTE.
pub(crate) type Origin = Option<Rc<str>>;

/// A position in one of the texts of a stream.
#[derive(Debug, Clone)]
pub(crate) struct At {
    pub origin: Origin,
    pub span: Span,
}

/// A problem in a stream query, in the text it was found in.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub origin: Origin,
    pub error: SqlError,
}

/// What a `json_each` result set's inputs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    /// Only constants so far: evaluated with the request, or with the first table an
    /// expression combines it with.
    Floating,
    /// Request values (auth, subscription, connection).
    Request,
    /// The row of this table.
    Table(SetId),
}

#[derive(Debug, Clone)]
pub(crate) enum SetKind {
    /// A source table (or table pattern).
    Table {
        pattern: TablePattern,
        /// The name synced rows get: the alias, or the name as written.
        output_name: String,
        aliased: bool,
    },
    /// `json_each(<input>)`.
    Function { input: Expr, attach: Cell<Attach> },
}

#[derive(Debug, Clone)]
pub(crate) struct SetInfo {
    pub kind: SetKind,
    /// How messages name it.
    pub description: String,
}

impl SetInfo {
    pub(crate) fn is_table(&self) -> bool {
        matches!(self.kind, SetKind::Table { .. })
    }
}

/// A validated common table expression.
#[derive(Debug)]
pub(crate) struct Cte {
    pub query: Box<ast::Query>,
    /// The columns it returns (for `x IN cte`).
    pub columns: Vec<String>,
    pub used: Cell<bool>,
}

/// The CTEs a stream query can use: the global `with` block, then the stream's own (which
/// shadow global ones of the same name).
#[derive(Debug, Default)]
pub(crate) struct Ctes {
    pub map: HashMap<String, Rc<Cte>>,
    /// CTEs that failed to parse: using them reports nothing new.
    pub invalid: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Set(SetId),
    /// An inlined subquery or CTE: its columns by name.
    Subquery(Rc<Vec<(String, Expr)>>),
}

/// Names in scope at one level of a query.
pub(crate) struct Scope<'p> {
    pub(crate) entries: Vec<(String, Entry)>,
    pub(crate) parent: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    pub(crate) fn root() -> Scope<'static> {
        Scope {
            entries: Vec::new(),
            parent: None,
        }
    }

    pub(crate) fn child(parent: &'p Scope<'p>) -> Scope<'p> {
        Scope {
            entries: Vec::new(),
            parent: Some(parent),
        }
    }

    pub(crate) fn default_entry(&self) -> Result<Option<&Entry>, ()> {
        match self.entries.as_slice() {
            [] => match self.parent {
                Some(p) => p.default_entry(),
                None => Ok(None),
            },
            [(_, e)] => Ok(Some(e)),
            _ => Err(()),
        }
    }

    pub(crate) fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
            .or_else(|| self.parent.and_then(|p| p.find(name)))
    }
}

/// What an expression reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Deps {
    /// Result sets, sorted, without duplicates.
    pub sets: Vec<SetId>,
    /// Request values.
    pub request: bool,
}

pub(crate) fn collect_deps(e: &Expr, out: &mut Deps) {
    match e {
        Expr::Column(name) => {
            if let Some((set, _)) = split_column(name)
                && let Err(i) = out.sets.binary_search(&set)
            {
                out.sets.insert(i, set);
            }
        }
        Expr::Request(_) => out.request = true,
        other => {
            for c in other.children() {
                collect_deps(c, out);
            }
        }
    }
}

impl super::query::Builder<'_> {
    pub(crate) fn deps(&self, e: &Expr) -> Deps {
        let mut d = Deps::default();
        collect_deps(e, &mut d);
        d
    }
}
