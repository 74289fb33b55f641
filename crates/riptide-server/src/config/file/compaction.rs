//! `compaction` (a Riptide section; PowerSync compacts with a separate command): the background
//! compactor's switch, threshold and interval.

use std::time::Duration;

use serde::Deserialize;

use super::{Env, Resolver};
use crate::config::ConfigError;
use riptide_service::CompactorConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Compaction {
    enabled: Option<Env<bool>>,
    /// Superseded ops at which a bucket is compacted.
    threshold: Option<Env<i64>>,
    interval_seconds: Option<Env<u64>>,
}

/// What `compaction` sets; what it does not keeps the default.
#[derive(Default)]
pub(super) struct CompactionSection {
    enabled: Option<bool>,
    threshold: Option<i64>,
    interval: Option<Duration>,
}

impl CompactionSection {
    pub(super) fn apply(self, config: &mut CompactorConfig) {
        if let Some(enabled) = self.enabled {
            config.enabled = enabled;
        }
        if let Some(threshold) = self.threshold {
            config.threshold = threshold;
        }
        if let Some(interval) = self.interval {
            config.interval = interval;
        }
    }
}

pub(super) fn resolve(
    r: &Resolver<'_>,
    compaction: Option<Compaction>,
) -> Result<CompactionSection, ConfigError> {
    let Some(c) = compaction else {
        return Ok(CompactionSection::default());
    };
    let mut section = CompactionSection {
        enabled: c.enabled.map(Env::into_inner),
        ..CompactionSection::default()
    };
    if let Some(threshold) = c.threshold.map(Env::into_inner) {
        if threshold < 1 {
            return Err(r.invalid("compaction.threshold must be at least 1"));
        }
        section.threshold = Some(threshold);
    }
    if let Some(secs) = c.interval_seconds.map(Env::into_inner) {
        if secs < 1 {
            return Err(r.invalid("compaction.interval_seconds must be at least 1"));
        }
        section.interval = Some(Duration::from_secs(secs));
    }
    Ok(section)
}
