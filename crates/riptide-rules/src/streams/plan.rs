//! The compiled form of Sync Streams: what replication evaluates on rows and what a request
//! resolves, shared by every stream of a file.
//!
//! - A [`DataSource`] is the table a stream query syncs, with its filters and the expressions
//!   that partition rows into buckets; evaluated per row during replication, like a classic data
//!   query. Several buckets (of one or several streams) may use the same source.
//! - A [`LookupSource`] indexes another table a query joins (through a subquery, a JOIN or a
//!   CTE): per row, the key its partition expressions give and the outputs the query needs;
//!   evaluated per row during replication into parameter lookups, like a classic parameter
//!   query, so a membership row inserted or deleted changes who gets which bucket.
//! - A [`Querier`] turns a request (token, connection parameters, one subscription's parameters)
//!   into bucket parameter values: request expressions, lookups in dependency order (each one's
//!   key made of request values or outputs of earlier lookups), and the values of the bucket's
//!   parameters.
//!
//! Expressions of a [`Processor`] read the row with `Column(name)` and the current row of its
//! `k`-th `json_each` with `Column("\u{1f}<k>\u{1f}<name>")`; request expressions read only the
//! request (and, in a [`Lookup::Function`], the `json_each` row as `Column("key"|"value")`).

use std::collections::{BTreeSet, HashMap};

use crate::ir::Expr;
use crate::yaml::QuerySource;
use crate::{TablePattern, TableRef};

/// The name of column `name` of the `k`-th `json_each` of a processor.
pub(crate) fn function_column(k: usize, name: &str) -> String {
    format!("\u{1f}{k}\u{1f}{name}")
}

/// Rows of one table (or table pattern) evaluated during replication.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Processor {
    pub table: TablePattern,
    /// Inputs of `json_each` calls on the row; each row is evaluated once per combination of
    /// their elements.
    pub functions: Vec<Expr>,
    /// All must be true (PowerSync truthiness) for the row (combination) to count.
    pub filters: Vec<Expr>,
    /// The values that partition rows: bucket parameters, or lookup keys.
    pub partitions: Vec<Expr>,
}

/// An output column of a data source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    /// Every column of the row.
    Star,
    Named(String, Expr),
}

/// A table a stream syncs rows of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataSource {
    pub processor: Processor,
    pub columns: Vec<Column>,
    /// The synced table name; `None`: the source table's own name (an unaliased wildcard).
    pub output_table: Option<String>,
}

/// A table indexed for lookups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LookupSource {
    pub processor: Processor,
    pub outputs: Vec<Expr>,
    /// Its storage key prefix: the stream that first needed it and a number within it.
    pub stream: String,
    pub index: usize,
}

/// A value for a bucket parameter or a lookup key, resolved per request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An expression over request values.
    Request(Expr),
    /// Output `output` of the querier's lookup `lookup`.
    Lookup { lookup: usize, output: usize },
    /// Values every one of these gives.
    Intersection(Vec<Value>),
}

/// One lookup of a querier.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// Rows of lookup source `source` under the key made of `inputs`.
    Index { source: usize, inputs: Vec<Value> },
    /// `json_each(input)` over request values, filtered, with the outputs the query needs.
    Function {
        input: Expr,
        filters: Vec<Expr>,
        outputs: Vec<Expr>,
    },
}

/// How a request gets one bucket (family) of a stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Querier {
    /// All must be true for the request.
    pub request_filters: Vec<Expr>,
    /// In dependency order: a lookup's inputs only read earlier lookups.
    pub lookups: Vec<Lookup>,
    /// Index into [`StreamSet::buckets`].
    pub bucket: usize,
    /// The bucket parameters' values, in the order of the data sources' partitions.
    pub instantiation: Vec<Value>,
    /// `subscription.parameter('<name>')` names its request values read.
    pub subscription_parameters: BTreeSet<String>,
}

/// A family of buckets: one per parameter value combination.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    /// `<stream>|<n>`: bucket ids are this (after the deployment prefix) + the JSON array of
    /// the parameter values.
    pub name: String,
    /// Indexes into [`StreamSet::data_sources`]; all partition rows the same way.
    pub sources: Vec<usize>,
}

/// A column a query reads: table, column, and the text (the query's or a CTE's) and position
/// (1-based line and column in that text) of the reference.
pub(crate) type ColumnUse = (TablePattern, String, QuerySource, Option<(usize, usize)>);

/// What one query of a stream reads, for tools.
#[derive(Debug, Clone)]
pub(crate) struct QueryTables {
    /// The table it syncs rows of.
    pub synced: TablePattern,
    /// Tables it joins (subqueries, JOINs, CTEs).
    pub joined: Vec<TablePattern>,
    /// Columns read: table, column, and the text and position (1-based line/column in that
    /// text) of the reference; the text is the query's or a CTE's.
    pub columns: Vec<ColumnUse>,
}

/// One compiled stream.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub name: String,
    pub auto_subscribe: bool,
    pub priority: u8,
    pub queriers: Vec<Querier>,
    /// Where its queries are in the file.
    pub queries: Vec<QuerySource>,
    /// What each query reads (same order as `queries`; empty when compilation failed).
    pub tables: Vec<QueryTables>,
}

/// Every stream of a file, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamSet {
    pub data_sources: Vec<DataSource>,
    pub lookup_sources: Vec<LookupSource>,
    pub buckets: Vec<Bucket>,
    pub streams: Vec<Stream>,
    /// Which sources read which table (replication looks them up per row).
    pub index: SourceIndex,
}

/// Sources by the exact table they read, and those reading wildcard patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceIndex {
    pub data: HashMap<TableRef, Vec<usize>>,
    pub data_patterns: Vec<usize>,
    pub lookups: HashMap<TableRef, Vec<usize>>,
    pub lookup_patterns: Vec<usize>,
}

impl SourceIndex {
    fn add(
        exact: &mut HashMap<TableRef, Vec<usize>>,
        patterns: &mut Vec<usize>,
        table: &TablePattern,
        i: usize,
    ) {
        match table.exact() {
            Some(t) => exact.entry(t).or_default().push(i),
            None => patterns.push(i),
        }
    }

    /// Data sources that may read `table` (check the pattern of those from wildcards).
    pub(crate) fn data_for<'s>(&'s self, table: &TableRef) -> impl Iterator<Item = usize> + 's {
        let exact = self.data.get(table).map_or(&[][..], Vec::as_slice);
        exact.iter().chain(&self.data_patterns).copied()
    }

    /// Lookup sources that may read `table`.
    pub(crate) fn lookups_for<'s>(&'s self, table: &TableRef) -> impl Iterator<Item = usize> + 's {
        let exact = self.lookups.get(table).map_or(&[][..], Vec::as_slice);
        exact.iter().chain(&self.lookup_patterns).copied()
    }
}

impl StreamSet {
    /// Builds [`StreamSet::index`] once every source is known.
    pub(crate) fn build_index(&mut self) {
        let mut index = SourceIndex::default();
        for (i, d) in self.data_sources.iter().enumerate() {
            SourceIndex::add(
                &mut index.data,
                &mut index.data_patterns,
                &d.processor.table,
                i,
            );
        }
        for (i, l) in self.lookup_sources.iter().enumerate() {
            SourceIndex::add(
                &mut index.lookups,
                &mut index.lookup_patterns,
                &l.processor.table,
                i,
            );
        }
        self.index = index;
    }

    /// The exact tables (not wildcard patterns) the sources read, in first-use order.
    pub(crate) fn tables(&self) -> Vec<crate::TableRef> {
        let mut out: Vec<crate::TableRef> = Vec::new();
        let processors = self
            .data_sources
            .iter()
            .map(|d| &d.processor)
            .chain(self.lookup_sources.iter().map(|l| &l.processor));
        for p in processors {
            if let Some(t) = p.table.exact()
                && !out.contains(&t)
            {
                out.push(t);
            }
        }
        out
    }

    /// The wildcard patterns the sources read.
    pub(crate) fn patterns(&self) -> Vec<TablePattern> {
        let mut out: Vec<TablePattern> = Vec::new();
        let processors = self
            .data_sources
            .iter()
            .map(|d| &d.processor)
            .chain(self.lookup_sources.iter().map(|l| &l.processor));
        for p in processors {
            if p.table.is_wildcard() && !out.contains(&p.table) {
                out.push(p.table.clone());
            }
        }
        out
    }
}
