//! Integration tests of the realtime template's process component (`realtime-app-server`)
//! against a real Postgres: one fresh database per test, the app served on a loopback port.
//! One test binary (modules below) so the server and the sync service are linked once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod auth;
mod config;
mod limits;
mod migrations;
mod rules;
mod static_files;
mod token;
mod upload;
