//! The `riptide` command: `serve` (the sync service) and, as the platform grows, the tools that
//! create databases and apps. The binary's `main` parses arguments and calls into here.

pub mod config;
