//! `storage`: where bucket data lives (Postgres only); without a connection, a database on the
//! source server.

use serde::Deserialize;

use super::{Ignored, Resolver, Str};
use crate::config::connection::{self, ConnectionKeys, PgConnection};
use crate::config::{ConfigError, Env};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Storage {
    #[serde(rename = "type")]
    kind: Str,
    uri: Option<Str>,
    hostname: Option<Str>,
    port: Option<Env<u16>>,
    database: Option<Str>,
    username: Option<Str>,
    password: Option<Str>,
    sslmode: Option<Str>,
    max_pool_size: Option<Ignored>,
    default_storage_version: Option<Ignored>,
    cacert: Option<Str>,
    tls_servername: Option<Ignored>,
    connect_timeout: Option<Ignored>,
}

/// The storage connection; `None`: the default database on the source server.
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    storage: Option<Storage>,
) -> Result<Option<PgConnection>, ConfigError> {
    let Some(s) = storage else {
        return Ok(None);
    };
    if s.kind.0 != "postgresql" {
        return Err(r.invalid(format!(
            "storage.type: {:?} is not supported; Riptide stores buckets in Postgres \
             (`type: postgresql`)",
            s.kind.0
        )));
    }
    r.ignore("storage.max_pool_size", &s.max_pool_size);
    r.ignore(
        "storage.default_storage_version",
        &s.default_storage_version,
    );
    r.ignore("storage.cacert", &s.cacert);
    r.ignore("storage.tls_servername", &s.tls_servername);
    r.ignore("storage.connect_timeout", &s.connect_timeout);
    if s.uri.is_none() && s.hostname.is_none() {
        return Ok(None);
    }
    let keys = ConnectionKeys {
        uri: s.uri,
        hostname: s.hostname,
        port: s.port,
        database: s.database,
        username: s.username,
        password: s.password,
        sslmode: s.sslmode,
        cacert: s.cacert,
        client_certificate: None,
        client_private_key: None,
    };
    connection::resolve(r, "storage", keys).map(Some)
}
