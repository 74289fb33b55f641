//! Configuration from the environment: every missing or malformed variable named in one error,
//! secrets never echoed.

use std::collections::HashMap;

use app_server::{Config, ConfigError};

use crate::app::Keys;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn every_missing_variable_is_named() {
    let err = load(&[("APP_ROOT", "/tmp")]).unwrap_err();
    let mut names = err.variables();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DIRECT_DATABASE_URL",
            "POWERSYNC_API_TOKEN",
            "POWERSYNC_SIGNING_KEY",
            "POWERSYNC_URL"
        ]
    );
    let message = err.to_string();
    for name in names {
        assert!(message.contains(&format!("{name} is missing")), "{message}");
    }
}

#[test]
fn malformed_variables_are_named_without_their_values() {
    let err = load(&[
        ("DIRECT_DATABASE_URL", "mysql-ish:nonsense?x=secretpw"),
        ("POWERSYNC_SIGNING_KEY", "c2VjcmV0LWtleS1ub3QtYS1qd2s"),
        ("POWERSYNC_URL", "ftp://example"),
        ("POWERSYNC_API_TOKEN", "tok-123-secret"),
        ("PORT", "eighty"),
        ("APP_ROOT", "/tmp"),
    ])
    .unwrap_err();
    let mut names = err.variables();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DIRECT_DATABASE_URL",
            "PORT",
            "POWERSYNC_SIGNING_KEY",
            "POWERSYNC_URL"
        ]
    );
    let message = err.to_string();
    for secret in ["secretpw", "c2VjcmV0LWtleS1ub3QtYS1qd2s", "tok-123-secret"] {
        assert!(!message.contains(secret), "{message}");
    }

    // A public JWK (no `d`) is named as such.
    let keys = Keys::generate();
    let public = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        keys.public_jwk.to_string(),
    );
    let err = load(&[
        ("DIRECT_DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
        ("POWERSYNC_SIGNING_KEY", &public),
        ("POWERSYNC_URL", "http://127.0.0.1:8080"),
        ("POWERSYNC_API_TOKEN", "t"),
    ])
    .unwrap_err();
    assert_eq!(err.variables(), ["POWERSYNC_SIGNING_KEY"]);
    assert!(err.to_string().contains("\"d\""), "{err}");
}

#[test]
fn a_complete_environment_loads_with_defaults() {
    let keys = Keys::generate();
    let signing = keys.env_value();
    let config = load(&[
        ("DIRECT_DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
        ("POWERSYNC_SIGNING_KEY", &signing),
        ("POWERSYNC_URL", "http://127.0.0.1:8080"),
        ("POWERSYNC_API_TOKEN", "secret-token"),
        ("APP_ROOT", "/srv/app"),
    ])
    .unwrap();
    assert_eq!(config.port, 3001);
    assert_eq!(config.host, "127.0.0.1");
    assert_eq!(config.audience, "riptide");
    assert_eq!(config.signing_key.kid(), keys.kid);
    assert_eq!(config.signing_key.public_jwk(), keys.public_jwk);
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("secret-token") && !debug.contains(":p@"),
        "{debug}"
    );
    // URL-safe base64 without padding works too.
    let url_safe = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        keys.private_jwk.to_string(),
    );
    let config = load(&[
        ("DIRECT_DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
        ("POWERSYNC_SIGNING_KEY", &url_safe),
        ("POWERSYNC_URL", "http://127.0.0.1:8080"),
        ("POWERSYNC_API_TOKEN", "secret-token"),
        ("POWERSYNC_TOKEN_AUDIENCE", "my-app"),
        ("PORT", "8081"),
    ])
    .unwrap();
    assert_eq!((config.port, config.audience.as_str()), (8081, "my-app"));
}

#[test]
fn a_neon_style_database_url_with_tls_is_accepted_and_a_bad_sslmode_named() {
    let keys = Keys::generate();
    let signing = keys.env_value();
    let base = [
        ("POWERSYNC_SIGNING_KEY", signing.as_str()),
        ("POWERSYNC_URL", "http://127.0.0.1:8080"),
        ("POWERSYNC_API_TOKEN", "t"),
    ];
    let neon = "postgres://u:p@ep-x.eu-central-1.aws.neon.tech/app?sslmode=require&channel_binding=require";
    let config = load(&[&base[..], &[("DIRECT_DATABASE_URL", neon)]].concat()).unwrap();
    assert_eq!(config.database_url, neon);

    let err = load(
        &[
            &base[..],
            &[(
                "DIRECT_DATABASE_URL",
                "postgres://u:secretpw@db.example/app?sslmode=strict",
            )],
        ]
        .concat(),
    )
    .unwrap_err();
    assert_eq!(err.variables(), ["DIRECT_DATABASE_URL"]);
    let message = err.to_string();
    assert!(message.contains("sslmode"), "{message}");
    assert!(!message.contains("secretpw"), "{message}");
}
