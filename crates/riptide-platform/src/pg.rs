//! Small Postgres helpers: connecting, quoting, URLs.

use crate::PlatformError;

/// Connects to `url`; the connection task runs in the background.
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, PlatformError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|source| PlatformError::Connect {
            target: redact(url),
            source,
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `url` with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// `url` with its database name replaced by `dbname` (query parameters kept).
pub(crate) fn with_dbname(url: &str, dbname: &str) -> Result<String, PlatformError> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
        .ok_or_else(|| {
            PlatformError::InvalidUrl(format!(
                "{} is not a postgres:// or postgresql:// URL",
                redact(url)
            ))
        })?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.ends_with('@') {
        return Err(PlatformError::InvalidUrl(format!(
            "{} names no host",
            redact(url)
        )));
    }
    let mut out = format!("{scheme}://{authority}/{dbname}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbname_is_replaced() {
        assert_eq!(
            with_dbname("postgres://u:p@h:5432/postgres?sslmode=require", "app").unwrap(),
            "postgres://u:p@h:5432/app?sslmode=require"
        );
        assert_eq!(
            with_dbname("postgresql://h", "app").unwrap(),
            "postgresql://h/app"
        );
        assert!(with_dbname("mysql://h/x", "app").is_err());
        assert!(with_dbname("postgres:///x", "app").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
