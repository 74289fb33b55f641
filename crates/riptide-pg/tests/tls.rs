//! TLS against a real TLS-only Postgres (the test kit's `tls_server`: generated CA, server
//! certificate for localhost and 127.0.0.1, `hostnossl` rejected, SCRAM and `cert` roles):
//! every `sslmode`, CA and client certificates inline and as paths, channel binding, the
//! walsender connection, and the errors that name what to change.

use std::time::Duration;

use riptide_pg::{ConnectionKeys, PgConnection, PgError};
use riptide_testkit::{CA_NAME, CERT_USER, TLS_USER, tls_server};

/// Connects to `url` and returns `SELECT current_user, ssl` of the session.
async fn session(url: &str) -> Result<(String, bool), PgError> {
    let client = PgConnection::from_uri(url)?.connect().await?;
    session_of(&client).await
}

async fn session_of(client: &tokio_postgres::Client) -> Result<(String, bool), PgError> {
    let row = client
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl answers");
    Ok((row.get(0), row.get(1)))
}

fn ca_param() -> String {
    let path = tls_server().ca_path();
    format!("sslrootcert={}", path.display())
}

#[tokio::test]
async fn every_sslmode_against_a_tls_only_server() {
    let server = tls_server();
    let url = |params: &str| server.url("localhost", "postgres", params);

    let err = session(&url("sslmode=disable")).await.unwrap_err();
    assert!(
        matches!(err, PgError::ServerRequiresTls { .. }),
        "disable: {err:?}"
    );
    assert!(err.to_string().contains("without TLS"), "{err}");

    for mode in ["allow", "prefer", "require"] {
        let (user, ssl) = session(&url(&format!("sslmode={mode}"))).await.unwrap();
        assert_eq!(user, TLS_USER);
        assert!(ssl, "{mode} ends up on TLS");
    }
    for mode in ["verify-ca", "verify-full"] {
        let (_, ssl) = session(&url(&format!("sslmode={mode}&{}", ca_param())))
            .await
            .unwrap();
        assert!(ssl, "{mode}");
    }
    // The certificate also names 127.0.0.1: verify-full works on the IP address.
    let (_, ssl) = session(&server.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&{}", ca_param()),
    ))
    .await
    .unwrap();
    assert!(ssl);
}

#[tokio::test]
async fn a_wrong_host_name_fails_verify_full_and_names_the_certificate_names() {
    let server = tls_server();
    // TCP to 127.0.0.1, TLS for a name the certificate does not list.
    let params = format!("hostaddr=127.0.0.1&sslmode=verify-full&{}", ca_param());
    let err = session(&server.url("db.wrong.example", "postgres", &params))
        .await
        .unwrap_err();
    let PgError::HostnameMismatch { host, names } = &err else {
        panic!("expected a host name mismatch, got {err:?}");
    };
    assert!(host.starts_with("db.wrong.example"), "{host}");
    assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
    let text = err.to_string();
    assert!(
        text.contains("localhost") && text.contains("verify-ca"),
        "{text}"
    );
    // verify-ca checks the CA only.
    let params = format!("hostaddr=127.0.0.1&sslmode=verify-ca&{}", ca_param());
    assert!(
        session(&server.url("db.wrong.example", "postgres", &params))
            .await
            .unwrap()
            .1
    );
}

#[tokio::test]
async fn verification_without_the_ca_names_the_issuer() {
    let server = tls_server();
    for mode in ["verify-ca", "verify-full"] {
        let err = session(&server.url("localhost", "postgres", &format!("sslmode={mode}")))
            .await
            .unwrap_err();
        let PgError::UntrustedCertificate { issuer, .. } = &err else {
            panic!("{mode}: expected an untrusted certificate, got {err:?}");
        };
        assert_eq!(issuer.as_deref(), Some(&*format!("CN={CA_NAME}")));
        assert!(err.to_string().contains("cacert"), "{err}");
    }
    // libpq's rule: `require` with a CA file verifies the chain against it.
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_ca.path(), other_ca_pem()).unwrap();
    let err = session(&server.url(
        "localhost",
        "postgres",
        &format!("sslmode=require&sslrootcert={}", other_ca.path().display()),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, PgError::UntrustedCertificate { .. }),
        "{err:?}"
    );
}

fn other_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Some Other CA");
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn config_keys_with_an_inline_or_a_path_cacert() {
    let server = tls_server();
    for cacert in [
        server.ca_pem.clone(),
        server.ca_path().display().to_string(),
    ] {
        let conn = ConnectionKeys {
            hostname: Some("localhost".into()),
            port: Some(server.cluster.port),
            database: Some("postgres".into()),
            username: Some(TLS_USER.into()),
            password: Some(server.password.clone()),
            cacert: Some(cacert),
            ..ConnectionKeys::default()
        }
        .build()
        .unwrap();
        assert_eq!(conn.tls().mode, riptide_pg::SslMode::VerifyFull);
        let client = conn.connect().await.unwrap();
        assert!(session_of(&client).await.unwrap().1);
    }
    // Bad PEM is refused before connecting, naming the key.
    let err = ConnectionKeys {
        hostname: Some("localhost".into()),
        cacert: Some("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----".into()),
        ..ConnectionKeys::default()
    }
    .build()
    .unwrap()
    .connect()
    .await
    .unwrap_err();
    assert!(
        matches!(err, PgError::Pem { what: "cacert", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_client_certificate_logs_in_without_a_password() {
    let server = tls_server();
    // Inline PEM through the config keys.
    let conn = ConnectionKeys {
        hostname: Some("localhost".into()),
        port: Some(server.cluster.port),
        database: Some("postgres".into()),
        username: Some(CERT_USER.into()),
        cacert: Some(server.ca_pem.clone()),
        client_certificate: Some(server.client_cert_pem.clone()),
        client_private_key: Some(server.client_key_pem.clone()),
        ..ConnectionKeys::default()
    }
    .build()
    .unwrap();
    assert!(!format!("{conn:?}").contains("PRIVATE KEY"));
    let (user, _) = session_of(&conn.connect().await.unwrap()).await.unwrap();
    assert_eq!(user, CERT_USER);
    // Paths through a URI.
    let url = server.cert_user_url(
        "postgres",
        &format!(
            "sslmode=verify-full&{}&sslcert={}&sslkey={}",
            ca_param(),
            server.client_cert_path().display(),
            server.client_key_path().display()
        ),
    );
    assert_eq!(session(&url).await.unwrap().0, CERT_USER);
    // Without the certificate, the `cert` rule refuses the role.
    let url = server.cert_user_url("postgres", &format!("sslmode=verify-full&{}", ca_param()));
    assert!(session(&url).await.is_err());
}

#[tokio::test]
async fn channel_binding_is_required_over_tls_and_refused_without_it() {
    let server = tls_server();
    let url = server.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&{}&channel_binding=require", ca_param()),
    );
    assert!(session(&url).await.unwrap().1);
    // A pool of the same connection.
    let pool = PgConnection::from_uri(&url).unwrap().pool(2).unwrap();
    let client = pool.get().await.unwrap();
    assert!(session_of(&client).await.unwrap().1);

    // The plain test server (no TLS, trust): channel binding cannot happen.
    let plain =
        riptide_testkit::server().url_with("postgres", "sslmode=disable&channel_binding=require");
    let err = session(&plain).await.unwrap_err();
    assert!(
        matches!(err, PgError::ChannelBindingNotUsed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("channel_binding=prefer"), "{err}");
}

#[tokio::test]
async fn a_server_without_tls_fails_modes_that_require_it() {
    let plain = riptide_testkit::server();
    let err = session(&plain.url_with("postgres", "sslmode=require"))
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::ServerWithoutTls { .. }), "{err:?}");
    assert!(err.to_string().contains("sslmode=prefer"), "{err}");
    // prefer falls back to plain text.
    assert!(
        !session(&plain.url_with("postgres", "sslmode=prefer"))
            .await
            .unwrap()
            .1
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let conn = PgConnection::from_uri(&format!("postgres://u@127.0.0.1:{port}/db"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = conn.connect().await.unwrap_err();
    assert!(matches!(err, PgError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("connect_timeout"), "{err}");
}

#[tokio::test]
async fn the_walsender_connection_uses_the_same_tls() {
    let server = tls_server();
    let walsender = |params: &str| {
        let conn = PgConnection::from_uri(&server.url("localhost", "postgres", params)).unwrap();
        async move {
            let cfg = conn.replication_config("unused_slot", "unused_publication")?;
            conn.connect_walsender(cfg).await
        }
    };
    // TLS, verified, channel-bound: IDENTIFY_SYSTEM answered.
    let mut session = walsender(&format!(
        "sslmode=verify-full&{}&channel_binding=require",
        ca_param()
    ))
    .await
    .unwrap();
    let system = session.identify_system().await.unwrap();
    assert!(system.timeline >= 1);
    // allow: plain text refused by pg_hba.conf, then TLS.
    walsender("sslmode=allow").await.unwrap();
    // The same failures as ordinary connections.
    let err = walsender("sslmode=disable").await.err().expect("refused");
    assert!(matches!(err, PgError::ServerRequiresTls { .. }), "{err:?}");
    let err = walsender("sslmode=verify-full")
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, PgError::UntrustedCertificate { .. }),
        "{err:?}"
    );
    let params = format!("hostaddr=127.0.0.1&sslmode=verify-full&{}", ca_param());
    let conn =
        PgConnection::from_uri(&server.url("db.wrong.example", "postgres", &params)).unwrap();
    let err = conn
        .connect_walsender(conn.replication_config("s", "p").unwrap())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, PgError::HostnameMismatch { .. }), "{err:?}");
    // Channel binding over plain text (the plain server) is refused.
    let plain = PgConnection::from_uri(
        &riptide_testkit::server().url_with("postgres", "sslmode=disable&channel_binding=require"),
    )
    .unwrap();
    let err = plain
        .connect_walsender(plain.replication_config("s", "p").unwrap())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, PgError::ChannelBindingNotUsed { .. }),
        "{err:?}"
    );
}
