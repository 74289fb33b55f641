//! Integration tests of the `riptide` binary, run as a separate process against a real
//! Postgres: the user-facing output is what is tested. One test binary (modules below).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod platform;
mod rules;
mod scale_out;
mod tls;
