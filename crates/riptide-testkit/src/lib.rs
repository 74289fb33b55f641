//! Test harness for Riptide: a private PostgreSQL cluster per test run (`wal_level=logical`,
//! trust on loopback including replication: test data only, the clusters users run ask for a
//! password, `riptide-localpg`), a fresh database per test dropped afterwards,
//! JWT/JWKS helpers, a protocol-level sync client (every transport and encoding the service
//! speaks; the benchmark measures with it too), the tools of the fault-injection suite
//! ([`fault`]: killable servers, a TCP proxy, service processes, a client model and oracle),
//! and a TLS-only server for TLS tests ([`tls_server`]: generated CA, server and client
//! certificates, SCRAM and `cert` roles, `hostnossl` rejected), started once per run like the
//! plain cluster.
//!
//! The cluster: when `RIPTIDE_TEST_PG_URL` is set (the test script starts one cluster for the
//! whole run with the `riptide-test-postgres` binary) every test process uses it; otherwise the
//! first test of a process starts its own cluster in a temporary directory and a watchdog stops
//! and removes it when the process exits. Nothing depends on a Postgres that happens to run on
//! the machine.

mod cluster;
mod database;
pub mod fault;
mod jwt;
mod sync_client;
mod tls_server;
mod wait;

pub use cluster::{Cluster, LocalCluster, LocalPgError, server};
pub use database::TestDatabase;
pub use jwt::TestKeys;
pub use sync_client::{Encoding, Format, SyncClient, SyncClientError, SyncStream, Transport};
pub use tls_server::{CA_NAME, CERT_USER, TLS_DIR_ENV, TLS_USER, TlsServer, tls_server};
pub use wait::wait_for;

/// A TCP port on 127.0.0.1 free right now (for a process the test starts on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A reqwest client for tests. reqwest is built without a crypto provider of its own (so aws-lc
/// is not compiled) and panics when a client is built before rustls has a process default:
/// tests build their clients here (or call [`riptide_pg::install_default_crypto_provider`]).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client builds")
}

/// [`http`]'s builder, for clients with their own settings.
pub fn http_builder() -> reqwest::ClientBuilder {
    riptide_pg::install_default_crypto_provider();
    reqwest::Client::builder()
}

/// `GET url` with [`http`] (what `reqwest::get` does).
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}
