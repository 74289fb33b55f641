//! Integration tests of the sync service, started in process through `serve::start` against a
//! real Postgres (the test kit's cluster): one test binary (modules below), so the service is
//! linked once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_v1;
mod api_node;
mod common;
mod compact;
mod oracle;
mod redeploy;
mod resilience;
mod serve;
mod tls;
