//! riptide-pg's integration tests against real Postgres servers, in one test binary
//! (`autotests = false`): a test's name is `module::test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod listening;
mod tls;
