//! The resolution of one `AND` branch starting from the synced table: filters, partition keys
//! and the values they take, and the lookups (in dependency order) those values need.

use std::collections::HashMap;

use super::plan::Value;
use super::sets::{Located, SetId, SetInfo};
use super::terms::{Dep, Side, Term, target};
use crate::ir::Expr;
use crate::sql::lower::SqlError;

#[derive(Debug, Default)]
pub(super) struct Resolved {
    pub(super) filters: Vec<Expr>,
    /// Partition expressions with the values they take.
    pub(super) keys: Vec<(Expr, Vec<Value>)>,
}

#[derive(Debug)]
pub(super) enum PendingKind {
    Point(Resolved),
    Function { filters: Vec<Expr> },
}

#[derive(Debug)]
pub(super) struct PendingLookup {
    pub(super) set: SetId,
    pub(super) kind: PendingKind,
    pub(super) outputs: Vec<Expr>,
}

/// The resolution of one `AND` branch, starting from the synced table.
pub(super) struct Path<'s> {
    pub(super) sets: &'s [SetInfo],
    pub(super) pending: Vec<Option<Term>>,
    pub(super) lookups: Vec<PendingLookup>,
    pub(super) lookup_of_set: HashMap<SetId, usize>,
    pub(super) stack: Vec<SetId>,
}

impl<'s> Path<'s> {
    pub(super) fn in_stack(&self, set: SetId) -> bool {
        let t = target(self.sets, set);
        self.stack.iter().any(|s| *s == set || *s == t)
    }

    pub(super) fn resolve_set(&mut self, source: SetId) -> Result<Resolved, Located> {
        self.stack.push(source);
        let mut resolved = Resolved::default();
        for i in 0..self.pending.len() {
            let Some(term) = self.pending[i].clone() else {
                continue;
            };
            match term {
                Term::Single(side, _) => {
                    if let Dep::Set(s) = side.dep
                        && target(self.sets, s) == source
                    {
                        resolved.filters.push(side.expr);
                        self.pending[i] = None;
                    }
                }
                Term::Equals(l, r, _) => {
                    let on_source = |s: &Side| match s.dep {
                        Dep::Set(x) => x == source || target(self.sets, x) == source,
                        _ => false,
                    };
                    let (this, other) = if matches!(l.dep, Dep::Set(x) if x == source) {
                        (l, r)
                    } else if matches!(r.dep, Dep::Set(x) if x == source) {
                        (r, l)
                    } else if on_source(&l) {
                        (l, r)
                    } else if on_source(&r) {
                        (r, l)
                    } else {
                        continue;
                    };
                    if let Dep::Set(os) = other.dep
                        && self.in_stack(os)
                    {
                        // Seen again from the other side, where this one is an output.
                        continue;
                    }
                    self.pending[i] = None;
                    let value = match other.dep {
                        Dep::Set(os) => {
                            let lookup = self.resolve_expanding(os)?;
                            let output = self.add_output(lookup, other.expr);
                            Value::Lookup { lookup, output }
                        }
                        _ => Value::Request(other.expr),
                    };
                    match resolved.keys.iter_mut().find(|(k, _)| *k == this.expr) {
                        Some((_, values)) => values.push(value),
                        None => resolved.keys.push((this.expr, vec![value])),
                    }
                }
            }
        }
        self.stack.pop();
        Ok(resolved)
    }

    pub(super) fn add_output(&mut self, lookup: usize, expr: Expr) -> usize {
        let outputs = &mut self.lookups[lookup].outputs;
        match outputs.iter().position(|o| *o == expr) {
            Some(i) => i,
            None => {
                outputs.push(expr);
                outputs.len() - 1
            }
        }
    }

    /// The lookup reading `set` (created on first use, after the lookups it needs).
    pub(super) fn resolve_expanding(&mut self, set: SetId) -> Result<usize, Located> {
        let set = target(self.sets, set);
        if let Some(&l) = self.lookup_of_set.get(&set) {
            return Ok(l);
        }
        let resolved = self.resolve_set(set)?;
        let kind = if self.sets[set].is_table() {
            PendingKind::Point(resolved)
        } else {
            if !resolved.keys.is_empty() {
                return Err(Located {
                    origin: None,
                    error: SqlError::unlocated(
                        "a json_each over request values can't be compared with two other tables (it can't partition data); rewrite the query without `=` on it",
                    ),
                });
            }
            PendingKind::Function {
                filters: resolved.filters,
            }
        };
        self.lookups.push(PendingLookup {
            set,
            kind,
            outputs: Vec::new(),
        });
        let index = self.lookups.len() - 1;
        self.lookup_of_set.insert(set, index);
        Ok(index)
    }

    /// Tables that must merely have a matching row: `<request value> IN (SELECT …)` and
    /// conditions on joined tables no partition reached.
    pub(super) fn exists_checks(&mut self) -> Result<(), Located> {
        let snapshot: Vec<Term> = self.pending.iter().flatten().cloned().collect();
        for term in snapshot {
            match term {
                Term::Equals(l, r, _) => {
                    let other = if l.dep == Dep::Request {
                        Some(r)
                    } else if r.dep == Dep::Request {
                        Some(l)
                    } else {
                        None
                    };
                    if let Some(Side {
                        dep: Dep::Set(s), ..
                    }) = other
                    {
                        self.resolve_expanding(s)?;
                    }
                }
                Term::Single(side, _) => {
                    if let Dep::Set(s) = side.dep {
                        self.resolve_expanding(s)?;
                    }
                }
            }
        }
        Ok(())
    }
}
