//! Log output: `tracing` to stderr, text or JSON, level from the config or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::Logging;

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(logging: &Logging) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,riptide={0},riptide_cli={0},riptide_server={0},riptide_service={0},riptide_replication={0},riptide_storage={0}",
            logging.level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and `riptide dev`'s merged log get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if logging.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
