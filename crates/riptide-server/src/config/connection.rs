//! A Postgres connection of the config (`replication.connections[0]`, `storage`): either a
//! `uri` or separate fields, with PowerSync's TLS keys (`sslmode`, `cacert`,
//! `client_certificate`, `client_private_key`, each PEM inline or a file path; `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey` and `channel_binding` inside the `uri`), resolved by
//! riptide-pg's [`riptide_pg::ConnectionKeys`] into a [`PgConnection`]. Without `sslmode` a
//! config connection is `verify-full`, PowerSync's default.

pub use riptide_pg::PgConnection;
use riptide_pg::PgError;

use super::ConfigError;
use super::env_value::Env;
use super::file::{Resolver, Str};

/// User, port and database of a connection given by `hostname` without them.
const DEFAULT_USER: &str = "postgres";
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_DATABASE: &str = "postgres";

/// The keys a connection section shares, as read from the file.
pub(super) struct ConnectionKeys {
    pub uri: Option<Str>,
    pub hostname: Option<Str>,
    pub port: Option<Env<u16>>,
    pub database: Option<Str>,
    pub username: Option<Str>,
    pub password: Option<Str>,
    pub sslmode: Option<Str>,
    pub cacert: Option<Str>,
    pub client_certificate: Option<Str>,
    pub client_private_key: Option<Str>,
}

/// Resolves the connection at `at` (a dotted path, for messages).
pub(super) fn resolve(
    r: &Resolver<'_>,
    at: &str,
    keys: ConnectionKeys,
) -> Result<PgConnection, ConfigError> {
    let inner = |v: Option<Str>| v.map(Env::into_inner);
    let mut pg = riptide_pg::ConnectionKeys {
        sslmode: inner(keys.sslmode),
        cacert: inner(keys.cacert),
        client_certificate: inner(keys.client_certificate),
        client_private_key: inner(keys.client_private_key),
        ..riptide_pg::ConnectionKeys::default()
    };
    match (keys.uri, keys.hostname) {
        (Some(uri), None) => pg.uri = Some(uri.into_inner()),
        (None, Some(host)) => {
            pg.hostname = Some(host.into_inner());
            pg.port = Some(keys.port.map_or(DEFAULT_PORT, Env::into_inner));
            pg.username = Some(keys.username.map_or(DEFAULT_USER.into(), Env::into_inner));
            pg.database = Some(
                keys.database
                    .map_or(DEFAULT_DATABASE.into(), Env::into_inner),
            );
            pg.password = inner(keys.password);
        }
        (Some(_), Some(_)) => {
            return Err(r.invalid(format!("{at}: give either `uri` or `hostname`, not both")));
        }
        (None, None) => return Err(r.invalid(format!("{at}: missing `uri`"))),
    }
    pg.build().map_err(|e| r.invalid(message(at, &e)))
}

/// `e` located at the key that caused it.
fn message(at: &str, e: &PgError) -> String {
    match e {
        PgError::InvalidUri(source) => {
            format!("{at}.uri is not a valid Postgres connection string: {source}")
        }
        PgError::InvalidSetting { key, reason } => format!("{at}.{key}: {reason}"),
        other => format!("{at}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use riptide_pg::{ChannelBinding, PemSource, RootCerts, SslMode};

    use crate::config::ServeConfig;

    fn source(connection: &str) -> Result<riptide_pg::PgConnection, String> {
        let text = format!(
            "replication:\n  connections:\n    - type: postgresql\n{connection}\
             client_auth:\n  jwks:\n    keys:\n      - {{ kty: OKP, crv: Ed25519, alg: EdDSA, kid: k1, x: abc }}\n"
        );
        ServeConfig::parse(&text, "powersync.yaml", Path::new("."))
            .map(|c| c.source)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn without_sslmode_a_config_connection_is_verify_full() {
        let conn = source("      uri: postgres://u@db.example/app\n").unwrap();
        assert_eq!(conn.tls().mode, SslMode::VerifyFull);
        let conn = source("      hostname: db.example\n").unwrap();
        assert_eq!(conn.tls().mode, SslMode::VerifyFull);
        assert_eq!(conn.config().get_user(), Some("postgres"));
        assert_eq!(conn.config().get_dbname(), Some("postgres"));
    }

    #[test]
    fn every_libpq_sslmode_is_accepted_as_a_key() {
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let conn = source(&format!(
                "      hostname: db.example\n      sslmode: {value}\n"
            ))
            .unwrap();
            assert_eq!(conn.tls().mode, mode, "{value}");
        }
    }

    #[test]
    fn powersync_tls_keys_reach_the_connection() {
        let conn = source(
            "      hostname: db.example\n      sslmode: verify-ca\n      cacert: |\n        -----BEGIN CERTIFICATE-----\n        AAAA\n        -----END CERTIFICATE-----\n      client_certificate: /etc/riptide/client.crt\n      client_private_key: /etc/riptide/client.key\n",
        )
        .unwrap();
        let tls = conn.tls();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert!(
            matches!(&tls.root_certs, Some(RootCerts::Pem(PemSource::Inline(pem))) if pem.contains("AAAA")),
            "{tls:?}"
        );
        assert_eq!(
            tls.client_cert,
            Some(PemSource::Path("/etc/riptide/client.crt".into()))
        );
        assert_eq!(
            tls.client_key,
            Some(PemSource::Path("/etc/riptide/client.key".into()))
        );
    }

    #[test]
    fn uri_tls_parameters_reach_the_connection_and_keys_win() {
        let uri = "postgres://u:p@ep-x.eu-central-1.aws.neon.tech/db?sslmode=require&sslrootcert=/ca.pem&sslcert=/c.crt&sslkey=/c.key&channel_binding=require";
        let conn = source(&format!("      uri: {uri}\n")).unwrap();
        let tls = conn.tls();
        assert_eq!(tls.mode, SslMode::Require);
        // libpq's rule: `require` with a CA file verifies the chain.
        assert_eq!(tls.effective_mode(), SslMode::VerifyCa);
        assert_eq!(
            tls.root_certs,
            Some(RootCerts::Pem(PemSource::Path("/ca.pem".into())))
        );
        assert_eq!(tls.client_cert, Some(PemSource::Path("/c.crt".into())));
        assert_eq!(tls.channel_binding, ChannelBinding::Require);
        let conn = source(&format!("      uri: {uri}\n      sslmode: disable\n")).unwrap();
        assert_eq!(conn.tls().mode, SslMode::Disable);
    }

    #[test]
    fn tls_mistakes_are_located_at_the_key() {
        let err = source("      hostname: db.example\n      sslmode: sometimes\n").unwrap_err();
        assert!(err.contains("replication.connections[0].sslmode"), "{err}");
        let err =
            source("      hostname: db.example\n      client_certificate: /c.crt\n").unwrap_err();
        assert!(
            err.contains("replication.connections[0].client_certificate"),
            "{err}"
        );
    }
}
