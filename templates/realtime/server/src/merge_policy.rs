//! # The merge policy: how an uploaded write meets the row already in Postgres
//!
//! **This is the module to edit to customise conflict handling.** Everything else in the upload
//! path (parsing, type checks, authorisation, the one transaction per batch) stays as it is.
//!
//! The default is *last write wins*, by arrival order at this server:
//!
//! - `PUT` inserts the row, or overwrites every column the client sent (an upsert);
//! - `PATCH` updates the columns the client sent;
//! - `DELETE` deletes the row.
//!
//! A `PATCH` or `DELETE` of a row that does not exist (for example deleted meanwhile by someone
//! else) changes nothing and is not an error: the client's queue must not get stuck on it, and
//! the sync service will bring the client the row's real state.
//!
//! ## Customising
//!
//! Each function builds the default statement with [`sql`] and may add conditions before running
//! it. The existing row is `t`; `stmt.incoming("column")` is the uploaded value. A write whose
//! condition fails changes nothing and the batch goes on (the client then receives the winning
//! row through sync).
//!
//! "Newest `updated_at` wins" instead of "last arrival wins", given an `updated_at timestamptz`
//! column the client sets on every write:
//!
//! ```no_run
//! # use app_server::upload::{convert::Write, sql};
//! # use tokio_postgres::Transaction;
//! async fn patch(tx: &Transaction<'_>, write: &Write<'_>) -> Result<(), tokio_postgres::Error> {
//!     let Some(mut stmt) = sql::update(write) else { return Ok(()) };
//!     if let Some(incoming) = stmt.incoming("updated_at").map(str::to_owned) {
//!         stmt = stmt.and_where(format!(r#"t."updated_at" IS NULL OR t."updated_at" <= {incoming}"#));
//!     }
//!     stmt.execute(tx).await?;
//!     Ok(())
//! }
//! ```
//!
//! (the same `and_where` on [`sql::upsert`] guards the overwrite of an existing row in `put`).
//! Other policies fit here too: per table (`write.table.name == "todos"`), per column (keep
//! `completed = true` once set: `t."completed" IS NOT TRUE`), or refusing a write with an error.

use tokio_postgres::Transaction;

use crate::upload::convert::Write;
use crate::upload::entry::Op;
use crate::upload::sql;

/// Applies one authorised, type-checked write inside the batch's transaction.
pub async fn apply(tx: &Transaction<'_>, write: &Write<'_>) -> Result<(), tokio_postgres::Error> {
    match write.op {
        Op::Put => put(tx, write).await,
        Op::Patch => patch(tx, write).await,
        Op::Delete => delete(tx, write).await,
    }
}

/// `PUT`: insert, or overwrite the given columns of the existing row.
async fn put(tx: &Transaction<'_>, write: &Write<'_>) -> Result<(), tokio_postgres::Error> {
    if let Some(stmt) = sql::upsert(write) {
        stmt.execute(tx).await?;
    }
    Ok(())
}

/// `PATCH`: update the given columns; a missing row is left missing.
async fn patch(tx: &Transaction<'_>, write: &Write<'_>) -> Result<(), tokio_postgres::Error> {
    if let Some(stmt) = sql::update(write) {
        stmt.execute(tx).await?;
    }
    Ok(())
}

/// `DELETE`: delete the row if it is there.
async fn delete(tx: &Transaction<'_>, write: &Write<'_>) -> Result<(), tokio_postgres::Error> {
    if let Some(stmt) = sql::delete(write) {
        stmt.execute(tx).await?;
    }
    Ok(())
}
