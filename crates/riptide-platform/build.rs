//! Embeds the app templates (`templates/<name>/`) and the workspace's `Cargo.toml` and
//! `Cargo.lock` into the library, so `riptide create-app` works from an installed binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const TEMPLATES: &[&str] = &["realtime"];
const EXCLUDED: &[&str] = &[
    "node_modules",
    "dist",
    "target",
    "CONTRACT.md",
    ".env",
    ".git",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    let mut out = String::new();
    out.push_str("/// Embedded templates: (template, relative path, contents).\n");
    out.push_str("pub static TEMPLATE_FILES: &[(&str, &str, &[u8])] = &[\n");
    for template in TEMPLATES {
        let dir = root.join("templates").join(template);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        collect(&dir, &dir, &mut files);
        files.sort();
        for (rel, abs) in files {
            let _ = writeln!(
                out,
                "    ({template:?}, {rel:?}, include_bytes!({abs:?})),",
                abs = abs.display().to_string()
            );
        }
    }
    out.push_str("];\n");
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    if lock.is_file() {
        let _ = writeln!(
            out,
            "pub static WORKSPACE_CARGO_LOCK: Option<&str> = Some(include_str!({:?}));",
            lock.display().to_string()
        );
    } else {
        out.push_str("pub static WORKSPACE_CARGO_LOCK: Option<&str> = None;\n");
    }
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("templates.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let local_env = name.starts_with(".env") && name != ".env.example";
        if EXCLUDED.contains(&name.as_str())
            || local_env
            || name.ends_with(".swp")
            || name.ends_with(".log")
            || name.ends_with('~')
        {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(base, &path, files);
        } else if kind.is_file() {
            let Ok(rel) = path.strip_prefix(base) else {
                continue;
            };
            let Ok(abs) = std::fs::canonicalize(&path) else {
                continue;
            };
            files.push((rel.to_string_lossy().replace('\\', "/"), abs));
        }
    }
}
