//! The platform's Postgres steps, on riptide-pg connections (TLS per the URL's `sslmode`,
//! `sslrootcert`, `channel_binding`, ...).

use riptide_pg::PgConnection;
pub use riptide_pg::uri::redact;
pub(crate) use riptide_pg::{install_default_crypto_provider, quote_ident};

use crate::PlatformError;

/// Connects to `url`; the connection task runs in the background.
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, PlatformError> {
    let connection = PgConnection::from_uri(url).map_err(|e| {
        // The parser's own words (which option, which value) are in the chain.
        let mut message = format!("{}: {e}", redact(url));
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        PlatformError::InvalidUrl(message)
    })?;
    connection
        .connect()
        .await
        .map_err(|source| PlatformError::Connect {
            target: redact(url),
            source,
        })
}

/// `url` with its database name replaced by `dbname` (query parameters kept).
pub(crate) fn with_dbname(url: &str, dbname: &str) -> Result<String, PlatformError> {
    riptide_pg::uri::with_dbname(url, dbname).map_err(|e| match e {
        riptide_pg::PgError::InvalidUrl { reason } => PlatformError::InvalidUrl(reason),
        other => PlatformError::InvalidUrl(other.to_string()),
    })
}

/// The server's `wal_level`.
pub(crate) async fn wal_level(client: &tokio_postgres::Client) -> Result<String, PlatformError> {
    let row = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(PlatformError::pg("cannot read wal_level"))?;
    Ok(row.get(0))
}

/// Whether database `dbname` exists on the server `client` is connected to.
pub(crate) async fn database_exists(
    client: &tokio_postgres::Client,
    dbname: &str,
) -> Result<bool, PlatformError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .map_err(PlatformError::pg("cannot list databases"))?
        .is_some())
}

/// Drops `dbname`, forcing other sessions out (used to undo a half-made step).
pub(crate) async fn drop_database(client: &tokio_postgres::Client, dbname: &str) {
    let sql = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(dbname)
    );
    if let Err(e) = client.batch_execute(&sql).await {
        tracing::warn!(error = %e, dbname, "could not drop a database while undoing a failed step");
    }
}
