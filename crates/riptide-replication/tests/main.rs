//! riptide-replication's integration tests against a real Postgres (riptide-testkit).
//! One test binary (`autotests = false`): each module below was a test file of its own, so a test's
//! name is `module::test` (`cargo nextest run -p riptide-replication identity::`) and the crate and its
//! dependencies are linked once instead of once per file.

#![allow(clippy::unwrap_used)]

mod common;

mod identity;
mod replication;
mod schema_changes;
mod streamed;
mod tables;
mod tls;
mod types;
