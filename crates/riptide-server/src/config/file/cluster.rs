//! `cluster` (a Riptide section): the replication lease of several `riptide serve` processes
//! on one storage (`crate::roles`): how long a lease lasts without a heartbeat and how often
//! the holder renews it (and a standby polls).

use std::time::Duration;

use serde::Deserialize;

use super::{Env, Resolver};
use crate::config::ConfigError;
use crate::roles::LeaseConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cluster {
    lease_duration_ms: Option<Env<u64>>,
    lease_renew_ms: Option<Env<u64>>,
}

pub(super) fn resolve(
    r: &Resolver<'_>,
    cluster: Option<Cluster>,
    config: &mut LeaseConfig,
) -> Result<(), ConfigError> {
    let Some(c) = cluster else {
        return Ok(());
    };
    if let Some(ms) = c.lease_duration_ms.map(Env::into_inner) {
        config.duration = Duration::from_millis(ms);
    }
    if let Some(ms) = c.lease_renew_ms.map(Env::into_inner) {
        config.renew = Duration::from_millis(ms);
    }
    if config.renew.is_zero() || config.renew * 2 > config.duration {
        return Err(r.invalid(format!(
            "cluster.lease_renew_ms ({} ms) must be above 0 and at most half of \
             cluster.lease_duration_ms ({} ms)",
            config.renew.as_millis(),
            config.duration.as_millis()
        )));
    }
    Ok(())
}
