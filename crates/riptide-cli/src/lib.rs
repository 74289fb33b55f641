//! The `riptide` command: `serve` (the sync service on a config file or on the embedded
//! default) and, as the platform grows, the tools that create databases and apps. The binary's
//! `main` parses arguments and calls into here.

pub mod compact_cmd;
pub mod config;
pub mod deployments;
pub mod embedded;
pub mod logging;
pub mod mcp;
pub mod platform_cmd;
pub mod rules_cmd;
pub mod serve;
