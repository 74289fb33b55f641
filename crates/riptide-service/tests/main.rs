//! riptide-service's integration tests: the router and its transports over the in-process
//! `support::Harness`.
//! One test binary (`autotests = false`): each module below was a test file of its own, so a test's
//! name is `module::test` (`cargo nextest run -p riptide-service router::`) and the crate and its
//! dependencies are linked once instead of once per file.

#![allow(clippy::unwrap_used)]

mod support;

mod abuse;
mod admin;
mod admin_v1;
mod compaction;
mod compression;
mod dashboard;
mod real_rules;
mod router;
mod websocket;
