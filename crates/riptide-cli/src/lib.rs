//! The `riptide` command: argument parsing and output. `serve` runs the sync service of
//! `riptide-server` (on a config file or on the embedded default); `rules` checks and explains
//! sync rules; `compact` compacts bucket storage through `riptide-server`; `status --config` lists the
//! `riptide serve` processes of a storage (`nodes_cmd`); the platform subcommands and `mcp` are thin wrappers over `riptide-platform`.
//! The binary's `main` parses arguments and calls into here.

pub mod compact_cmd;
pub mod mcp;
pub mod nodes_cmd;
pub mod platform_cmd;
pub mod rules_cmd;
