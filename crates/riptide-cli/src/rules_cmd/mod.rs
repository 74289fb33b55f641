//! `riptide rules …`: tools for sync rules authors.
//!
//! - `check`: parse a rules file (every problem as `FILE:LINE:COLUMN: message`) and, with a
//!   database, check tables, columns, publication and replica identity against the real schema;
//! - `explain`: the buckets a user gets from a real database, their row counts, and for one
//!   row which rule grants it or why none does.

mod check;
mod db;
mod eval;
mod explain;
mod explain_streams;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use riptide_rules::{RulesErrors, SyncRules};

pub use check::check;
pub use explain::{ExplainOptions, explain};

/// `riptide rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a sync rules file; with --database, also against the database schema.
    Check {
        /// The sync rules YAML file.
        file: PathBuf,
        /// Postgres URL of the source database to check tables and columns against.
        #[arg(long)]
        database: Option<String>,
        /// The publication replication reads.
        #[arg(long, default_value = "powersync")]
        publication: String,
    },
    /// Show the buckets a user gets from a database, and why a row is (not) synced to them.
    Explain {
        /// The sync rules YAML file.
        file: PathBuf,
        /// Postgres URL of the source database.
        #[arg(long)]
        database: String,
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Further token claims as a JSON object (e.g. '{"parameters":{"org":"o1"}}').
        #[arg(long)]
        claims: Option<String>,
        /// Client parameters as a JSON object (`request.parameters()`).
        #[arg(long)]
        params: Option<String>,
        /// A row to explain, as TABLE:ID (`schema.table:id`; schema defaults to public).
        #[arg(long)]
        row: Option<String>,
        /// A stream subscription, as STREAM or STREAM='{"param":"value"}' (repeatable).
        #[arg(long)]
        subscription: Vec<String>,
    },
    /// Evaluate a sync config over rows and connections given as a JSON job on stdin; prints
    /// JSON (used by the differential test against PowerSync's compiler).
    #[command(hide = true)]
    Eval,
    /// Rewrite a file's bucket_definitions as equivalent Sync Streams (edition 3); prints YAML.
    Migrate {
        /// The sync rules YAML file.
        file: PathBuf,
    },
}

/// Runs a `riptide rules` subcommand; `Ok(false)` when it found problems (exit code 1).
pub async fn run(command: RulesCommand) -> Result<bool> {
    match command {
        RulesCommand::Check {
            file,
            database,
            publication,
        } => check(&file, database.as_deref(), &publication).await,
        RulesCommand::Eval => eval::run(),
        RulesCommand::Migrate { file } => eval::migrate(&file),
        RulesCommand::Explain {
            file,
            database,
            user,
            claims,
            params,
            row,
            subscription,
        } => {
            explain(&ExplainOptions {
                file,
                database,
                user,
                claims,
                params,
                row,
                subscriptions: subscription,
            })
            .await
        }
    }
}

/// Reads and parses a rules file; parse errors are printed as `FILE:LINE:COLUMN: message`
/// and give `Ok(None)`.
pub(crate) fn load(file: &Path) -> Result<Option<SyncRules>> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match SyncRules::parse(&yaml) {
        Ok(rules) => {
            for w in rules.warnings() {
                println!(
                    "{}:{}:{}: warning: {}",
                    file.display(),
                    w.line,
                    w.column,
                    w.message
                );
            }
            Ok(Some(rules))
        }
        Err(RulesErrors(errors)) => {
            for e in &errors {
                println!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
            }
            println!("{} found", plural(errors.len(), "error"));
            Ok(None)
        }
    }
}

/// `1 row`, `2 rows`.
pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}
