//! Connection strings: libpq's TLS parameters taken out of a `postgres://` URI (tokio-postgres
//! knows only `sslmode=disable|prefer|require` and no certificate files), the rest parsed by
//! tokio-postgres; plus the URI edits the platform tools need ([`redact`], [`with_dbname`]).

use std::str::FromStr;

use percent_encoding::percent_decode_str;

use crate::error::PgError;
#[cfg(test)]
use crate::tls::ChannelBinding;
use crate::tls::{PemSource, RootCerts, SslMode, TlsOptions};

/// A parsed connection string: `sslmode` is `None` when the string does not set it (the
/// caller picks the default: libpq's `prefer` for a URI, `verify-full` for a config connection).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub config: tokio_postgres::Config,
    pub tls: TlsOptions,
    pub sslmode: Option<SslMode>,
}

/// libpq parameters we cannot honour: refused rather than silently ignored.
const UNSUPPORTED: &[&str] = &["sslpassword", "sslcrl", "sslcrldir", "sslcertmode"];

pub(crate) fn parse(text: &str) -> Result<Parsed, PgError> {
    let Some((base, query)) = split_uri(text) else {
        return parse_key_value(text);
    };
    let mut tls = TlsOptions::new(SslMode::Prefer);
    let mut sslmode = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key, "parameter name")?;
        let value = || decode(raw_value, "parameter value");
        match key.as_str() {
            "sslmode" => sslmode = Some(value()?.parse()?),
            "sslrootcert" => {
                let v = value()?;
                tls.root_certs = Some(if v == "system" {
                    RootCerts::System
                } else {
                    RootCerts::Pem(PemSource::parse(&v))
                });
            }
            "sslcert" => tls.client_cert = Some(PemSource::parse(&value()?)),
            "sslkey" => tls.client_key = Some(PemSource::parse(&value()?)),
            "channel_binding" => tls.channel_binding = value()?.parse()?,
            k if UNSUPPORTED.contains(&k) => {
                return Err(PgError::InvalidSetting {
                    key: "connection string",
                    reason: format!("{k} is not supported"),
                });
            }
            _ => rest.push(pair),
        }
    }
    let remaining = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let config = tokio_postgres::Config::from_str(&remaining).map_err(PgError::InvalidUri)?;
    Ok(Parsed {
        config,
        tls,
        sslmode,
    })
}

/// `host=… sslmode=…` strings: tokio-postgres parses them, with its three `sslmode`s.
fn parse_key_value(text: &str) -> Result<Parsed, PgError> {
    let config = tokio_postgres::Config::from_str(text).map_err(|e| {
        let hint = ["sslrootcert", "sslcert", "sslkey", "verify-"]
            .iter()
            .any(|k| text.contains(k));
        if hint {
            PgError::InvalidSetting {
                key: "connection string",
                reason: "certificate settings and verify-* modes are read from postgres:// URIs \
                         (postgres://user@host/db?sslmode=verify-full&sslrootcert=ca.pem)"
                    .into(),
            }
        } else {
            PgError::InvalidUri(e)
        }
    })?;
    let tls = crate::PgConnection::from(config.clone()).tls().clone();
    Ok(Parsed {
        config,
        sslmode: text.contains("sslmode").then_some(tls.mode),
        tls,
    })
}

/// `(before ?, after ?)` of a `postgres://` or `postgresql://` URI; `None` for other strings.
fn split_uri(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return None;
    }
    Some(text.split_once('?').unwrap_or((text, "")))
}

fn decode(raw: &str, what: &str) -> Result<String, PgError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| PgError::InvalidSetting {
            key: "connection string",
            reason: format!("a {what} is not UTF-8 after percent-decoding"),
        })
}

/// `uri` with its password (user info or `password=` parameter) replaced by `***`, for
/// messages and tool output.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// What a database name must encode to be one path segment (RFC 3986 unreserved stay).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `uri` with its database name replaced by `dbname` (query parameters, TLS included, kept).
pub fn with_dbname(uri: &str, dbname: &str) -> Result<String, PgError> {
    let invalid = |reason: &str| PgError::InvalidUrl {
        reason: format!("{} {reason}", redact(uri)),
    };
    let (scheme, rest) = uri
        .split_once("://")
        .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
        .ok_or_else(|| invalid("is not a postgres:// or postgresql:// URL"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.ends_with('@') {
        return Err(invalid("names no host"));
    }
    let dbname = percent_encoding::utf8_percent_encode(dbname, PATH_SEGMENT);
    let mut out = format!("{scheme}://{authority}/{dbname}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// `uri` with `sslmode=<mode>` added when it sets none, so the URI means the same wherever it
/// goes (a config file reads a missing `sslmode` as `verify-full`, libpq as `prefer`).
pub fn with_default_sslmode(uri: &str, mode: SslMode) -> String {
    let Some((_, query)) = split_uri(uri) else {
        return uri.to_owned();
    };
    let has_mode = query
        .split('&')
        .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == "sslmode");
    if has_mode {
        uri.to_owned()
    } else if uri.contains('?') {
        format!("{uri}&sslmode={mode}")
    } else {
        format!("{uri}?sslmode={mode}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn neon_style_uri() {
        let p = parse(
            "postgres://user:pass@ep-x.eu-central-1.aws.neon.tech/db?sslmode=require&channel_binding=require",
        )
        .unwrap();
        assert_eq!(p.sslmode, Some(SslMode::Require));
        assert_eq!(p.tls.channel_binding, ChannelBinding::Require);
        assert_eq!(p.config.get_dbname(), Some("db"));
        assert_eq!(p.config.get_user(), Some("user"));
        assert_eq!(p.config.get_password(), Some(&b"pass"[..]));
    }

    #[test]
    fn certificate_parameters_and_the_rest() {
        let p = parse(
            "postgresql://u@h:6000/d?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem\
             &sslcert=/c.pem&sslkey=/k.pem&connect_timeout=4",
        )
        .unwrap();
        assert_eq!(p.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(
            p.tls.root_certs,
            Some(RootCerts::Pem(PemSource::Path("/etc/ca dir/ca.pem".into())))
        );
        assert_eq!(p.tls.client_cert, Some(PemSource::Path("/c.pem".into())));
        assert_eq!(p.tls.client_key, Some(PemSource::Path("/k.pem".into())));
        assert_eq!(p.config.get_application_name(), Some("x"));
        assert_eq!(
            p.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(4))
        );
        assert_eq!(p.config.get_ports(), &[6000]);
    }

    #[test]
    fn no_sslmode_is_reported_as_unset() {
        let p = parse("postgres://u@h/d").unwrap();
        assert_eq!(p.sslmode, None);
        assert_eq!(
            parse("postgres://u@h/d?sslrootcert=system")
                .unwrap()
                .tls
                .root_certs,
            Some(RootCerts::System)
        );
    }

    #[test]
    fn bad_values_and_unsupported_parameters_are_refused() {
        assert!(parse("postgres://u@h/d?sslmode=verify").is_err());
        assert!(parse("postgres://u@h/d?channel_binding=maybe").is_err());
        assert!(parse("postgres://u@h/d?sslpassword=x").is_err());
        assert!(parse("postgres://x:y@[bad").is_err());
    }

    #[test]
    fn key_value_strings() {
        let p = parse("host=h user=u dbname=d sslmode=require channel_binding=require").unwrap();
        assert_eq!(p.sslmode, Some(SslMode::Require));
        assert_eq!(p.tls.channel_binding, ChannelBinding::Require);
        assert_eq!(parse("host=h user=u").unwrap().sslmode, None);
        let err = parse("host=h sslmode=verify-full").unwrap_err().to_string();
        assert!(err.contains("postgres://"), "{err}");
    }

    #[test]
    fn invalid_uri_errors_do_not_repeat_the_password() {
        let err = parse("postgres://u:secret@h:notaport/d").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact("host=h"), "host=h");
    }

    #[test]
    fn a_default_sslmode_is_added_only_when_missing() {
        assert_eq!(
            with_default_sslmode("postgres://u@h/db", SslMode::Disable),
            "postgres://u@h/db?sslmode=disable"
        );
        assert_eq!(
            with_default_sslmode("postgres://u@h/db?application_name=a", SslMode::Prefer),
            "postgres://u@h/db?application_name=a&sslmode=prefer"
        );
        assert_eq!(
            with_default_sslmode("postgres://u@h/db?sslmode=verify-full", SslMode::Disable),
            "postgres://u@h/db?sslmode=verify-full"
        );
    }

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
        assert_eq!(
            with_dbname("postgres://h/x", "my-app/x").unwrap(),
            "postgres://h/my-app%2Fx"
        );
        assert!(with_dbname("mysql://h/x", "app").is_err());
        assert!(with_dbname("postgres:///x", "app").is_err());
    }
}
