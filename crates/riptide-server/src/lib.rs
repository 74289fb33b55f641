//! The sync service assembled: its config file, the deployments of sync rules (replicated
//! side by side and switched without downtime), and [`serve::start`], which wires storage,
//! replication, the background compactor and the HTTP service from a [`config::ServeConfig`];
//! [`compact::compact_now`] is `riptide compact`. Without a config, the embedded default runs on
//! a private Postgres cluster ([`embedded`]). Every Postgres connection (source checks,
//! replication, storage, the source pool) is a [`riptide_pg::PgConnection`] built from the
//! config's TLS keys.
//!
//! The `riptide` binary (`riptide-cli`) parses arguments and prints; everything it serves
//! comes from here, and so do the in-process services of the integration tests.

pub mod compact;
pub mod config;
pub mod deployments;
pub mod embedded;
pub mod failpoints;
pub mod instance_admin;
pub mod logging;
pub mod roles;
pub mod schema_check;
pub mod serve;
