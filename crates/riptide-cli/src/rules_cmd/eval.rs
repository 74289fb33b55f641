//! `riptide rules eval`: a JSON job on stdin through `riptide_rules::job`, its answer on stdout.

use std::io::Read;

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
