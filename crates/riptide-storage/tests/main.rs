//! riptide-storage's integration tests: the behavioural suite (`suite`) against each storage.
//! One test binary (`autotests = false`): each module below was a test file of its own, so a test's
//! name is `module::test` (`cargo nextest run -p riptide-storage memory::`) and the crate and its
//! dependencies are linked once instead of once per file.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod suite;

mod lease;
mod limits;
mod memory;
mod notifications;
mod postgres;
mod tls;
