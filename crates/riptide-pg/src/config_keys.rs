//! A connection from PowerSync's config keys (`replication.connections[]`, `storage`): `uri`
//! and/or `hostname`, `port`, `database`, `username`, `password`, and the TLS keys `sslmode`,
//! `cacert`, `client_certificate`, `client_private_key` (PEM inline or a file path).
//!
//! A key given separately wins over the same setting in `uri`. Without `sslmode` (as a key or in
//! `uri`), a config connection is `verify-full`, PowerSync's default; a bare URI elsewhere gets
//! libpq's `prefer` ([`crate::PgConnection::from_uri`]).

use std::fmt;

use crate::connection::PgConnection;
use crate::error::PgError;
use crate::tls::{PemSource, RootCerts, SslMode, TlsOptions};

/// PowerSync's connection keys, as read from a config file. `Debug` hides the password and
/// the private key.
#[derive(Clone, Default)]
pub struct ConnectionKeys {
    pub uri: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `disable | allow | prefer | require | verify-ca | verify-full`.
    pub sslmode: Option<String>,
    /// CA certificate(s) that verify the server: PEM text or a file path.
    pub cacert: Option<String>,
    /// Client certificate for `cert` authentication: PEM text or a file path.
    pub client_certificate: Option<String>,
    /// Its private key: PEM text or a file path.
    pub client_private_key: Option<String>,
}

impl ConnectionKeys {
    /// The connection these keys describe; errors name the key to fix.
    pub fn build(&self) -> Result<PgConnection, PgError> {
        let (mut config, mut tls, uri_sslmode) = match &self.uri {
            Some(uri) => {
                let parsed = crate::uri::parse(uri)?;
                (parsed.config, parsed.tls, parsed.sslmode)
            }
            None => (
                tokio_postgres::Config::new(),
                TlsOptions::new(SslMode::VerifyFull),
                None,
            ),
        };
        if let Some(host) = &self.hostname {
            config.host(host);
        }
        if let Some(port) = self.port {
            config.port(port);
        }
        if let Some(database) = &self.database {
            config.dbname(database);
        }
        if let Some(user) = &self.username {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password.as_str());
        }
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(PgError::InvalidSetting {
                key: "hostname",
                reason: "no host: set `uri` or `hostname`".into(),
            });
        }
        tls.mode = match &self.sslmode {
            Some(mode) => mode.parse()?,
            None => uri_sslmode.unwrap_or(SslMode::VerifyFull),
        };
        if let Some(ca) = &self.cacert {
            tls.root_certs = Some(RootCerts::Pem(PemSource::parse(ca)));
        }
        if let Some(cert) = &self.client_certificate {
            tls.client_cert = Some(PemSource::parse(cert));
        }
        if let Some(key) = &self.client_private_key {
            tls.client_key = Some(PemSource::parse(key));
        }
        tls.validate()?;
        Ok(PgConnection::new(config, tls))
    }
}

impl fmt::Debug for ConnectionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectionKeys")
            .field("uri", &self.uri.as_deref().map(crate::uri::redact))
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sslmode", &self.sslmode)
            .field("cacert", &self.cacert.as_deref().map(PemSource::parse))
            .field(
                "client_certificate",
                &self.client_certificate.as_deref().map(PemSource::parse),
            )
            .field("client_private_key", &hidden(&self.client_private_key))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn separate_keys_default_to_verify_full() {
        let conn = ConnectionKeys {
            hostname: Some("db.example".into()),
            port: Some(6543),
            database: Some("app".into()),
            username: Some("sync".into()),
            password: Some("pw".into()),
            ..ConnectionKeys::default()
        }
        .build()
        .unwrap();
        assert_eq!(conn.tls().mode, SslMode::VerifyFull);
        assert_eq!(conn.host_description(), "db.example:6543");
        assert_eq!(conn.config().get_user(), Some("sync"));
    }

    #[test]
    fn a_uri_without_sslmode_in_a_config_is_verify_full_and_keys_win() {
        let keys = ConnectionKeys {
            uri: Some("postgres://u:p@h/db".into()),
            ..ConnectionKeys::default()
        };
        assert_eq!(keys.build().unwrap().tls().mode, SslMode::VerifyFull);
        let keys = ConnectionKeys {
            uri: Some("postgres://u:p@h/db?sslmode=require".into()),
            ..ConnectionKeys::default()
        };
        assert_eq!(keys.build().unwrap().tls().mode, SslMode::Require);
        let keys = ConnectionKeys {
            uri: Some("postgres://u:p@h/db?sslmode=require".into()),
            sslmode: Some("disable".into()),
            database: Some("other".into()),
            ..ConnectionKeys::default()
        };
        let conn = keys.build().unwrap();
        assert_eq!(conn.tls().mode, SslMode::Disable);
        assert_eq!(conn.config().get_dbname(), Some("other"));
    }

    #[test]
    fn tls_keys_inline_or_paths() {
        let conn = ConnectionKeys {
            hostname: Some("h".into()),
            cacert: Some("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----".into()),
            client_certificate: Some("/etc/client.pem".into()),
            client_private_key: Some("/etc/client.key".into()),
            ..ConnectionKeys::default()
        }
        .build()
        .unwrap();
        assert!(matches!(
            conn.tls().root_certs,
            Some(RootCerts::Pem(PemSource::Inline(_)))
        ));
        assert_eq!(
            conn.tls().client_key,
            Some(PemSource::Path("/etc/client.key".into()))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = ConnectionKeys::default().build().unwrap_err().to_string();
        assert!(err.contains("hostname"), "{err}");
        let err = ConnectionKeys {
            hostname: Some("h".into()),
            sslmode: Some("strict".into()),
            ..ConnectionKeys::default()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(err.contains("sslmode"), "{err}");
        let err = ConnectionKeys {
            hostname: Some("h".into()),
            client_certificate: Some("/c.pem".into()),
            ..ConnectionKeys::default()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(err.contains("private key"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let keys = ConnectionKeys {
            uri: Some("postgres://u:uri-secret@h/db".into()),
            password: Some("key-secret".into()),
            client_private_key: Some("-----BEGIN PRIVATE KEY-----\nPRIVATE\n".into()),
            ..ConnectionKeys::default()
        };
        let text = format!("{keys:?}");
        for secret in ["uri-secret", "key-secret", "PRIVATE\n", "PRIVATE KEY"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
