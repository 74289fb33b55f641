//! `system.logging`: level and format of the service's log.

use serde::Deserialize;

use super::{Resolver, Str};
use crate::config::{ConfigError, Logging};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct System {
    logging: Option<LoggingFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingFile {
    level: Option<Str>,
    format: Option<Str>,
}

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// What `system.logging` sets; what it does not keeps the default.
#[derive(Default)]
pub(super) struct LoggingSection {
    level: Option<String>,
    json: Option<bool>,
}

impl LoggingSection {
    pub(super) fn apply(self, logging: &mut Logging) {
        if let Some(level) = self.level {
            logging.level = level;
        }
        if let Some(json) = self.json {
            logging.json = json;
        }
    }
}

pub(super) fn resolve(
    r: &Resolver<'_>,
    system: Option<System>,
) -> Result<LoggingSection, ConfigError> {
    let Some(l) = system.and_then(|s| s.logging) else {
        return Ok(LoggingSection::default());
    };
    let mut section = LoggingSection::default();
    if let Some(level) = l.level {
        let level = level.0.to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(r.invalid(format!(
                "system.logging.level: {level:?} is not one of trace, debug, info, warn, error"
            )));
        }
        section.level = Some(level);
    }
    if let Some(format) = l.format {
        section.json = Some(match format.0.as_str() {
            "json" => true,
            "text" => false,
            other => {
                return Err(r.invalid(format!(
                    "system.logging.format: {other:?} is not `json` or `text`"
                )));
            }
        });
    }
    Ok(section)
}
