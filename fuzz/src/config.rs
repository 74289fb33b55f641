//! The service's config file (`riptide serve --config`).

use std::path::Path;

use riptide_server::config::ServeConfig;

/// `ServeConfig::parse` of any text: a config or a typed, located error, never a panic.
///
/// Paths in the file (`sync_config.path`, PEM paths) are read relative to a directory that does
/// not exist; inputs naming device or kernel files are skipped, so the fuzzer cannot make the
/// target block on `/dev/stdin` or read `/dev/zero` forever.
pub fn file(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let _ = ServeConfig::parse(text, "fuzz.yaml", Path::new("/nonexistent/riptide-fuzz"));
}
