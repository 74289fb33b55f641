//! Where Riptide keeps its state: `RIPTIDE_HOME`, else `~/.riptide`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Riptide's home directory: `RIPTIDE_HOME`, else `~/.riptide`.
pub fn riptide_home() -> PathBuf {
    if let Some(home) = std::env::var_os("RIPTIDE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".riptide")
}

/// Where a Postgres data directory named `name` lives for `home`. PostgreSQL runs as the
/// `postgres` user when we are root, so its data directory must be reachable by that user; a home
/// under an unreachable directory (like `/root`) keeps its clusters under `/var/lib/riptide`.
pub fn cluster_dir(home: &Path, name: &str) -> PathBuf {
    let preferred = home.join(name);
    if !riptide_localpg::is_root() || reachable_by_others(home) {
        return preferred;
    }
    let flat: String = std::fs::canonicalize(home)
        .unwrap_or_else(|_| home.to_owned())
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from("/var/lib/riptide")
        .join(flat.trim_matches('_'))
        .join(name)
}

/// Whether every ancestor of `path` may be traversed by other users.
pub fn reachable_by_others(path: &Path) -> bool {
    let Ok(abs) = std::fs::canonicalize(path) else {
        return false;
    };
    abs.ancestors().all(|p| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}
