//! riptide-platform's integration tests.
//! One test binary (`autotests = false`): each module below was a test file of its own, so a test's
//! name is `module::test` (`cargo nextest run -p riptide-platform platform::`) and the crate and its
//! dependencies are linked once instead of once per file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod platform;
mod tls;
