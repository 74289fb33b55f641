//! Postgres connections for every Riptide crate: TLS, pools, quoting, retries.
//!
//! - [`PgConnection`] (`connection.rs`): a `tokio_postgres::Config` plus [`TlsOptions`], with
//!   network timeouts by default (connect 10 s, TCP keepalives after 30 s idle, 60 s
//!   `tcp_user_timeout`), so a server that stops answering fails a session within about a
//!   minute instead of the kernel's ~15. `Debug` never prints the password or key material.
//!   Built from a URI ([`PgConnection::from_uri`], `uri.rs`: libpq's `sslmode`, `sslrootcert`,
//!   `sslcert`, `sslkey`, `channel_binding`; default `prefer`), from PowerSync's config keys
//!   ([`ConnectionKeys`], `config_keys.rs`: `sslmode`, `cacert`, `client_certificate`,
//!   `client_private_key`, PEM inline or a path; default `verify-full`), or from a
//!   `tokio_postgres::Config`.
//! - `connect.rs`: [`PgConnection::connect`] (spawns the connection task),
//!   [`PgConnection::connect_listening`] (the same, its `NOTIFY` messages forwarded through a
//!   bounded queue that reports overflow: for `LISTEN`) and [`PgConnection::pool`] (deadpool), all following `sslmode` as libpq does.
//! - `tls.rs`, `verify.rs`, `certificate.rs`: rustls with the `ring` provider; `verify-full`
//!   checks chain and host name, `verify-ca` the chain, `allow`/`prefer`/`require` encrypt
//!   without checking (libpq's meaning; `require` with a `cacert` acts as `verify-ca`, libpq's
//!   rule). Without a `cacert`, `verify-*` trusts the Mozilla roots (`webpki-roots`). SCRAM
//!   channel binding is tokio-postgres' own (`tokio-postgres-rustls` gives the
//!   `tls-server-end-point` data).
//! - `walsender.rs` (feature `walsender`): the logical replication connection through
//!   pgwire-replication, with the same TLS and channel binding (its patched copy in
//!   `vendor/pgwire-replication` runs on the stream we establish).
//! - [`PgError`] (`error.rs`): each failure names its cause and the setting to change
//!   (certificate not trusted, host name mismatch, server refuses non-TLS, server without
//!   TLS, channel binding not used, bad PEM, timeout).
//! - [`install_default_crypto_provider`] (`tls.rs`): `ring` as rustls' process default, which
//!   reqwest (without a provider of its own) needs for every client it builds.
//! - [`quote_ident`], [`quote_literal`] (`quote.rs`), [`Backoff`] and [`retry`] (`backoff.rs`,
//!   cancellable), and the URI edits [`uri::redact`] and [`uri::with_dbname`].

mod backoff;
mod certificate;
mod config_keys;
mod connect;
mod connection;
mod error;
mod quote;
mod tls;
pub mod uri;
mod verify;
#[cfg(feature = "walsender")]
mod walsender;

pub use backoff::{Backoff, Cancelled, RetryError, retry};
pub use config_keys::ConnectionKeys;
pub use connect::{Listened, Listening};
pub use connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVES_IDLE, DEFAULT_KEEPALIVES_INTERVAL,
    DEFAULT_KEEPALIVES_RETRIES, DEFAULT_TCP_USER_TIMEOUT, PgConnection,
};
pub use error::PgError;
pub use quote::{quote_ident, quote_literal};
pub use tls::{
    ChannelBinding, PemSource, RootCerts, SslMode, TlsOptions, install_default_crypto_provider,
};

/// The pool type [`PgConnection::pool`] returns.
pub use deadpool_postgres::Pool;
