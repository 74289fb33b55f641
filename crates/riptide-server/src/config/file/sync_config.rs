//! `sync_config` (or its old name `sync_rules`): the rules inline or in a file next to the
//! config; absent, rules come from the admin API.

use std::path::Path;

use serde::Deserialize;

use super::{Ignored, Resolver, Str};
use crate::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncConfig {
    path: Option<Str>,
    content: Option<Str>,
    exit_on_error: Option<Ignored>,
}

/// The rules text and where it is, for located errors.
pub(super) struct RulesText {
    pub text: String,
    pub origin: String,
    pub offset: (usize, usize),
}

/// `config_text` locates inline rules; `base` resolves `path`.
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    sync_config: Option<SyncConfig>,
    old_name: Option<SyncConfig>,
    config_text: &str,
    base: &Path,
) -> Result<Option<RulesText>, ConfigError> {
    let sync = match (sync_config, old_name) {
        (Some(_), Some(_)) => {
            return Err(
                r.invalid("give either `sync_config` or its old name `sync_rules`, not both")
            );
        }
        (Some(s), None) | (None, Some(s)) => s,
        // No rules in the config: they are deployed through the admin API.
        (None, None) => return Ok(None),
    };
    r.ignore("sync_config.exit_on_error", &sync.exit_on_error);
    match (sync.path, sync.content) {
        (Some(_), Some(_)) => {
            Err(r.invalid("sync_config: give either `path` or `content`, not both"))
        }
        (None, Some(content)) => Ok(Some(RulesText {
            offset: inline_offset(config_text, &content.0),
            text: content.0,
            origin: r.origin.to_owned(),
        })),
        (Some(path), None) => {
            let full = base.join(&path.0);
            let text = std::fs::read_to_string(&full).map_err(|source| ConfigError::Read {
                path: full.clone(),
                source,
            })?;
            Ok(Some(RulesText {
                text,
                origin: full.display().to_string(),
                offset: (0, 0),
            }))
        }
        (None, None) => Err(r.invalid("sync_config needs `path` or `content`")),
    }
}

/// Where inline rules text starts in the config file: (line offset, column offset). Found by
/// locating the rules' first non-empty line after a `content:` key; (0, 0) if not found.
fn inline_offset(config: &str, rules: &str) -> (usize, usize) {
    let Some((rules_idx, first)) = rules
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
    else {
        return (0, 0);
    };
    let mut after_content = false;
    for (idx, line) in config.lines().enumerate() {
        if line.trim_start().starts_with("content:") {
            after_content = true;
            continue;
        }
        if after_content && line.trim() == first.trim() && line.ends_with(first.trim_end()) {
            let indent = line.len() - line.trim_start().len();
            let content_indent = first.len() - first.trim_start().len();
            return (idx - rules_idx, indent - content_indent.min(indent));
        }
    }
    (0, 0)
}
