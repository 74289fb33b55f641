//! `riptide rules eval`: a JSON job on stdin through `riptide_rules::job`, its answer on stdout;
//! `riptide rules migrate FILE`: `riptide_rules::migrate_to_streams`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

/// Reads the job, prints the answer; `Ok(false)` when the config was refused.
pub fn run() -> Result<bool> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the job from stdin")?;
    let answer = riptide_rules::job::run(&input)?;
    println!("{answer}");
    Ok(true)
}

/// Prints the file's bucket definitions as streams; `Ok(false)` when it cannot be migrated.
pub fn migrate(file: &Path) -> Result<bool> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match riptide_rules::migrate_to_streams(&yaml) {
        Ok(out) => {
            print!("{out}");
            Ok(true)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(false)
        }
    }
}
