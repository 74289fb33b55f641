//! `replication.connections`: the source database, and the prefix of its slot names.

use serde::Deserialize;

use super::{Ignored, Resolver, Str};
use crate::config::connection::{self, ConnectionKeys, PgConnection};
use crate::config::{ConfigError, Env};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Replication {
    connections: Vec<Connection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Connection {
    #[serde(rename = "type")]
    kind: Str,
    uri: Option<Str>,
    hostname: Option<Str>,
    port: Option<Env<u16>>,
    database: Option<Str>,
    username: Option<Str>,
    password: Option<Str>,
    sslmode: Option<Str>,
    slot_name_prefix: Option<Str>,
    id: Option<Ignored>,
    tag: Option<Ignored>,
    cacert: Option<Str>,
    client_certificate: Option<Str>,
    client_private_key: Option<Str>,
    tls_servername: Option<Ignored>,
    reject_ip_ranges: Option<Ignored>,
    max_pool_size: Option<Ignored>,
    connect_timeout: Option<Ignored>,
    debug_api: Option<Env<bool>>,
    snapshot_socket_timeout: Option<Ignored>,
    heartbeat_interval_seconds: Option<Ignored>,
}

/// The source connection and, when given, `slot_name_prefix`.
pub(super) struct Source {
    pub connection: PgConnection,
    pub slot_name_prefix: Option<String>,
    /// `debug_api`: whether the admin API's `execute-sql` runs queries.
    pub debug_api: bool,
}

const AT: &str = "replication.connections[0]";

pub(super) fn resolve(
    r: &mut Resolver<'_>,
    replication: Option<Replication>,
) -> Result<Source, ConfigError> {
    let replication = replication
        .ok_or_else(|| r.invalid("missing `replication.connections`: the source Postgres"))?;
    let [conn] = <[Connection; 1]>::try_from(replication.connections).map_err(|v| {
        r.invalid(format!(
            "replication.connections must list exactly one connection, found {}",
            v.len()
        ))
    })?;
    if conn.kind.0 != "postgresql" {
        return Err(r.invalid(format!(
            "{AT}.type: {:?} is not supported; use `postgresql`",
            conn.kind.0
        )));
    }
    ignore_unused_keys(r, &conn);
    let slot_name_prefix = conn.slot_name_prefix.map(Env::into_inner);
    let debug_api = conn.debug_api.is_some_and(Env::into_inner);
    if let Some(prefix) = &slot_name_prefix {
        check_slot_name_prefix(r, prefix)?;
    }
    let connection = connection::resolve(
        r,
        AT,
        ConnectionKeys {
            uri: conn.uri,
            hostname: conn.hostname,
            port: conn.port,
            database: conn.database,
            username: conn.username,
            password: conn.password,
            sslmode: conn.sslmode,
            cacert: conn.cacert,
            client_certificate: conn.client_certificate,
            client_private_key: conn.client_private_key,
        },
    )?;
    Ok(Source {
        connection,
        slot_name_prefix,
        debug_api,
    })
}

/// PowerSync keys without effect here; the TLS keys are kept but not applied yet.
fn ignore_unused_keys(r: &mut Resolver<'_>, conn: &Connection) {
    let present = |v: &Option<Ignored>| v.is_some();
    let given = |v: &Option<Str>| v.is_some();
    for (key, is_set) in [
        ("id", present(&conn.id)),
        ("tag", present(&conn.tag)),
        ("cacert", given(&conn.cacert)),
        ("client_certificate", given(&conn.client_certificate)),
        ("client_private_key", given(&conn.client_private_key)),
        ("tls_servername", present(&conn.tls_servername)),
        ("reject_ip_ranges", present(&conn.reject_ip_ranges)),
        ("max_pool_size", present(&conn.max_pool_size)),
        ("connect_timeout", present(&conn.connect_timeout)),
        (
            "snapshot_socket_timeout",
            present(&conn.snapshot_socket_timeout),
        ),
        (
            "heartbeat_interval_seconds",
            present(&conn.heartbeat_interval_seconds),
        ),
    ] {
        if is_set {
            r.ignored.push(format!("{AT}.{key}"));
        }
    }
}

/// Slot names are `<prefix><deployment>`: Postgres allows a-z, 0-9 and _ (63 bytes).
fn check_slot_name_prefix(r: &Resolver<'_>, prefix: &str) -> Result<(), ConfigError> {
    let allowed = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !allowed || prefix.len() > 40 {
        return Err(r.invalid(format!(
            "{AT}.slot_name_prefix may hold only a-z, 0-9 and _ (at most 40)"
        )));
    }
    Ok(())
}
