//! One querier for one request: its bucket parameter values, given the stored lookup results.
//!
//! Lookups run in order; each lookup key is a combination of values from the request and from
//! rows of earlier lookups. A value remembers the lookup rows it came from (its provenance), so
//! values combined into one key or one bucket come from consistent rows: two outputs of one
//! lookup row stay together, as in a SQL join. Like PowerSync, a lookup with a single output
//! does not tie its values to their row, and an intersection keeps each side's provenance.
//!
//! When a lookup's results are not known yet, resolution stops and names the keys to read.

use std::collections::HashMap;

use super::evaluate::ps_truthy;
use super::plan::{Lookup, Querier, StreamSet, Value};
use crate::bucket_name::{encode_parameter, normalize_parameter};
use crate::eval::Scope;
use crate::ir::Expr;
use crate::json_fixed::json_each;
use crate::json_path::json_to_sqlite;
use crate::{ParameterLookup, RequestParameters, Row, SqliteValue};

/// Stored lookup results by [`ParameterLookup::key`].
pub type LookupResults = HashMap<Vec<u8>, Vec<Vec<u8>>>;

/// A row of a lookup a value came from: (result set, row number).
type Origin = (u32, u32);

#[derive(Debug, Clone)]
struct Cell {
    value: SqliteValue,
    provenance: Vec<Origin>,
    direct: Option<Origin>,
}

/// What resolving a querier gave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// These lookups must be read first.
    Needs(Vec<ParameterLookup>),
    /// The bucket parameter value combinations (possibly none).
    Buckets(Vec<Vec<SqliteValue>>),
}

/// Why a querier could not be resolved for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("error evaluating bucket ids: {0}")]
    Evaluation(String),
    #[error("too many lookups ({0}, at most {1})")]
    TooManyLookups(usize, usize),
}

struct Resolver<'a> {
    set: &'a StreamSet,
    request: &'a RequestParameters,
    known: &'a LookupResults,
    max_lookups: usize,
    next_set: u32,
    /// Per querier lookup: its rows as cells per output (`None` while unknown).
    rows: Vec<Option<Vec<Vec<Cell>>>>,
    lookups_used: usize,
}

fn decode(bytes: &[u8], outputs: usize) -> Option<Vec<SqliteValue>> {
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(bytes).ok()?;
    if parsed.len() != outputs {
        return None;
    }
    parsed
        .iter()
        .map(|v| normalize_parameter(&json_to_sqlite(v)))
        .collect()
}

/// Every combination taking one cell per column whose provenances agree (no result set
/// contributing two different rows).
fn combinations(columns: &[Vec<Cell>]) -> Vec<Vec<Cell>> {
    fn go(
        columns: &[Vec<Cell>],
        used: &mut HashMap<u32, u32>,
        current: &mut Vec<Cell>,
        out: &mut Vec<Vec<Cell>>,
    ) {
        let Some((first, rest)) = columns.split_first() else {
            out.push(current.clone());
            return;
        };
        for cell in first {
            let mut added = Vec::new();
            let mut ok = true;
            for (set, row) in &cell.provenance {
                match used.get(set) {
                    None => {
                        used.insert(*set, *row);
                        added.push(*set);
                    }
                    Some(r) if r == row => {}
                    Some(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                current.push(cell.clone());
                go(rest, used, current, out);
                current.pop();
            }
            for s in added {
                used.remove(&s);
            }
        }
    }
    let mut out = Vec::new();
    go(columns, &mut HashMap::new(), &mut Vec::new(), &mut out);
    out
}

/// Values present in every column, each with the provenances it came with (PowerSync's
/// intersection: a lookup row giving different values to two columns counts for neither).
fn intersection(columns: Vec<Vec<Cell>>) -> Vec<Cell> {
    let mut by_row: HashMap<Origin, Option<SqliteValue>> = HashMap::new();
    for column in &columns {
        for cell in column {
            if let Some(origin) = cell.direct {
                let entry = by_row
                    .entry(origin)
                    .or_insert_with(|| Some(cell.value.clone()));
                if entry.as_ref() != Some(&cell.value) {
                    *entry = None;
                }
            }
        }
    }
    let mut completed: Vec<Origin> = Vec::new();
    let skip = |cell: &Cell, completed: &[Origin]| match cell.direct {
        Some(origin) => {
            completed.contains(&origin)
                || by_row
                    .get(&origin)
                    .is_some_and(|v| v.as_ref() != Some(&cell.value))
        }
        None => false,
    };
    let mut result: Option<Vec<(SqliteValue, Vec<Vec<Origin>>)>> = None;
    for column in &columns {
        match &mut result {
            None => {
                let mut first: Vec<(SqliteValue, Vec<Vec<Origin>>)> = Vec::new();
                for cell in column {
                    if skip(cell, &completed) {
                        continue;
                    }
                    match first.iter_mut().find(|(v, _)| *v == cell.value) {
                        Some((_, p)) => p.push(cell.provenance.clone()),
                        None => first.push((cell.value.clone(), vec![cell.provenance.clone()])),
                    }
                    completed.extend(cell.provenance.iter().copied());
                }
                result = Some(first);
            }
            Some(current) => {
                let mut matched = vec![false; current.len()];
                for cell in column {
                    if let Some(i) = current.iter().position(|(v, _)| *v == cell.value) {
                        matched[i] = true;
                        if !skip(cell, &completed) {
                            current[i].1.push(cell.provenance.clone());
                        }
                    }
                }
                let mut i = 0;
                current.retain(|_| {
                    let keep = matched[i];
                    i += 1;
                    keep
                });
            }
        }
        if result.as_ref().is_some_and(Vec::is_empty) {
            break;
        }
    }
    result
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(value, provenances)| {
            provenances.into_iter().map(move |provenance| Cell {
                value: value.clone(),
                provenance,
                direct: None,
            })
        })
        .collect()
}

impl Resolver<'_> {
    fn fresh_set(&mut self) -> u32 {
        self.next_set += 1;
        self.next_set
    }

    fn request_scope(&self) -> Scope<'_> {
        Scope {
            row: None,
            request: Some(self.request),
        }
    }

    /// The cells a value gives; `None` when a lookup it reads is not known yet.
    fn cells(&self, v: &Value) -> Option<Vec<Cell>> {
        Some(match v {
            Value::Request(e) => normalize_parameter(&e.eval(&self.request_scope()))
                .map(|value| Cell {
                    value,
                    provenance: Vec::new(),
                    direct: None,
                })
                .into_iter()
                .collect(),
            Value::Lookup { lookup, output } => self
                .rows
                .get(*lookup)?
                .as_ref()?
                .iter()
                .filter_map(|row| row.get(*output).cloned())
                .collect(),
            Value::Intersection(inner) => {
                let columns = inner
                    .iter()
                    .map(|v| self.cells(v))
                    .collect::<Option<Vec<_>>>()?;
                intersection(columns)
            }
        })
    }

    /// Resolves lookup `i`: `Ok(None)` when keys are missing (added to `missing`).
    fn lookup(
        &mut self,
        lookup: &Lookup,
        missing: &mut Vec<ParameterLookup>,
    ) -> Result<Option<Vec<Vec<Cell>>>, ResolveError> {
        match lookup {
            Lookup::Index { source, inputs } => self.index_lookup(*source, inputs, missing),
            Lookup::Function {
                input,
                filters,
                outputs,
            } => self.function_lookup(input, filters, outputs).map(Some),
        }
    }

    /// A lookup in a parameter index: one key per combination of its inputs' values.
    fn index_lookup(
        &mut self,
        source: usize,
        inputs: &[Value],
        missing: &mut Vec<ParameterLookup>,
    ) -> Result<Option<Vec<Vec<Cell>>>, ResolveError> {
        let Some(columns) = inputs
            .iter()
            .map(|v| self.cells(v))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let source = &self.set.lookup_sources[source];
        let combos = combinations(&columns);
        // One lookup per distinct key, remembering each provenance it came with.
        let mut keys: Vec<(ParameterLookup, Vec<Vec<Origin>>)> = Vec::new();
        for combo in combos {
            let key = ParameterLookup {
                definition: source.stream.clone(),
                query_index: source.index,
                values: combo.iter().map(|c| encode_parameter(&c.value)).collect(),
            };
            let provenance: Vec<Origin> = combo
                .iter()
                .flat_map(|c| c.provenance.iter().copied())
                .collect();
            match keys.iter_mut().find(|(k, _)| *k == key) {
                Some((_, p)) => p.push(provenance),
                None => keys.push((key, vec![provenance])),
            }
        }
        self.lookups_used += keys.len();
        if self.lookups_used > self.max_lookups {
            return Err(ResolveError::TooManyLookups(
                self.lookups_used,
                self.max_lookups,
            ));
        }
        let mut unknown = false;
        for (key, _) in &keys {
            if !self.known.contains_key(&key.key()) {
                missing.push(key.clone());
                unknown = true;
            }
        }
        if unknown {
            return Ok(None);
        }
        let outputs = source.outputs.len();
        let mut rows = Vec::new();
        for (key, provenances) in keys {
            let results = self.known.get(&key.key()).map_or(&[][..], Vec::as_slice);
            for provenance in provenances {
                let set = self.fresh_set();
                for (row_number, result) in results.iter().enumerate() {
                    let Some(values) = decode(result, outputs) else {
                        continue;
                    };
                    let direct = (outputs > 1).then_some((set, row_number as u32));
                    let mut p = provenance.clone();
                    p.extend(direct);
                    rows.push(
                        values
                            .into_iter()
                            .map(|value| Cell {
                                value,
                                provenance: p.clone(),
                                direct,
                            })
                            .collect(),
                    );
                }
            }
        }
        Ok(Some(rows))
    }

    /// A table-valued function of the request (`json_each`), filtered and projected.
    fn function_lookup(
        &mut self,
        input: &Expr,
        filters: &[Expr],
        outputs: &[Expr],
    ) -> Result<Vec<Vec<Cell>>, ResolveError> {
        let elements = json_each(&input.eval(&self.request_scope()))
            .map_err(|e| ResolveError::Evaluation(e.to_string()))?;
        let set = self.fresh_set();
        let mut rows = Vec::new();
        for (row_number, (key, value)) in elements.into_iter().enumerate() {
            let mut row = Row::new();
            row.insert("key", key);
            row.insert("value", value);
            let scope = Scope {
                row: Some(&row),
                request: Some(self.request),
            };
            if !filters.iter().all(|f| ps_truthy(&f.eval(&scope))) {
                continue;
            }
            let Some(values) = outputs
                .iter()
                .map(|o| normalize_parameter(&o.eval(&scope)))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let origin = (set, row_number as u32);
            rows.push(
                values
                    .into_iter()
                    .map(|value| Cell {
                        value,
                        provenance: vec![origin],
                        direct: Some(origin),
                    })
                    .collect(),
            );
        }
        Ok(rows)
    }
}

/// Resolves `querier` for `request` with the lookup results known so far.
pub(crate) fn resolve(
    set: &StreamSet,
    querier: &Querier,
    request: &RequestParameters,
    known: &LookupResults,
    max_lookups: usize,
) -> Result<Outcome, ResolveError> {
    let scope = Scope {
        row: None,
        request: Some(request),
    };
    if !querier
        .request_filters
        .iter()
        .all(|f| ps_truthy(&f.eval(&scope)))
    {
        return Ok(Outcome::Buckets(Vec::new()));
    }
    let mut r = Resolver {
        set,
        request,
        known,
        max_lookups,
        next_set: 0,
        rows: Vec::with_capacity(querier.lookups.len()),
        lookups_used: 0,
    };
    let mut missing = Vec::new();
    for lookup in &querier.lookups {
        let rows = r.lookup(lookup, &mut missing)?;
        if rows.as_ref().is_some_and(Vec::is_empty) {
            // A lookup without rows makes the whole querier give nothing (it is a join).
            return Ok(Outcome::Buckets(Vec::new()));
        }
        r.rows.push(rows);
    }
    if !missing.is_empty() {
        return Ok(Outcome::Needs(missing));
    }
    let Some(columns) = querier
        .instantiation
        .iter()
        .map(|v| r.cells(v))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(Outcome::Needs(Vec::new()));
    };
    let mut out: Vec<Vec<SqliteValue>> = Vec::new();
    for combo in combinations(&columns) {
        let values: Vec<SqliteValue> = combo.into_iter().map(|c| c.value).collect();
        if !out.contains(&values) {
            out.push(values);
        }
    }
    Ok(Outcome::Buckets(out))
}
