//! Deploys the app's `sync-rules.yaml` to the sync service at start-up, when it differs from
//! what the service runs (its admin API, authenticated with `POWERSYNC_API_TOKEN`):
//!
//! 1. `GET {POWERSYNC_URL}/api/sync-rules/v1/current` → the deployment being built (`next`) or
//!    else the active one (`current`);
//! 2. if its content is not the file's, `POST /api/sync-rules/v1/deploy` with the YAML.
//!
//! A service that is not up yet (connection refused, 502/503/504) is retried with backoff until
//! [`Target::timeout`]; then start-up stops with an error naming the URL. The token is never
//! logged.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;

/// Where and what to deploy.
#[derive(Clone)]
pub struct Target {
    pub base_url: reqwest::Url,
    pub api_token: String,
    pub rules_path: PathBuf,
    pub timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base_url", &self.base_url.as_str())
            .field("rules_path", &self.rules_path)
            .finish_non_exhaustive()
    }
}

impl Target {
    pub fn from_config(config: &Config) -> Target {
        Target {
            base_url: config.powersync_url.clone(),
            api_token: config.api_token.clone(),
            rules_path: config.app_root.join("sync-rules.yaml"),
            timeout: config.rules_deploy_timeout,
        }
    }
}

/// What start-up did with the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    /// The service already runs this content.
    Unchanged,
    /// A new deployment was started.
    Deployed { id: Option<i64> },
    /// The service takes its rules from its own config file; nothing was deployed.
    ManagedByService,
}

/// Why the rules could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot read {path}")]
    ReadRules {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the sync service at {url} did not answer within {waited:?} (is it running? check POWERSYNC_URL)"
    )]
    Unreachable {
        url: String,
        waited: Duration,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error(
        "the sync service refused POWERSYNC_API_TOKEN ({status}): it must be one of the service's api.tokens"
    )]
    Refused { status: u16 },
    #[error("the sync service rejected sync-rules.yaml: {description}")]
    Invalid { description: String },
    #[error(
        "unexpected answer from the sync service admin API ({status} on {path}): {description}"
    )]
    Unexpected {
        status: u16,
        path: &'static str,
        description: String,
    },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

const CURRENT: &str = "/api/sync-rules/v1/current";
const DEPLOY: &str = "/api/sync-rules/v1/deploy";

/// Deploys the rules file when its content differs from the service's.
pub async fn deploy_if_changed(target: &Target) -> Result<Deployed, DeployError> {
    let content =
        std::fs::read_to_string(&target.rules_path).map_err(|source| DeployError::ReadRules {
            path: target.rules_path.clone(),
            source,
        })?;
    // reqwest is built without a crypto provider of its own (no aws-lc C build): HTTPS goes
    // through rustls' process default, ring, installed here unless something installed one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(DeployError::Client)?;
    let deadline = Instant::now() + target.timeout;

    let current = request(&http, target, deadline, CURRENT, None).await?;
    let data = current.get("data").cloned().unwrap_or(Value::Null);
    let running = ["next", "current"]
        .iter()
        .find_map(|k| data.get(*k).filter(|v| !v.is_null()))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str);
    if running == Some(content.as_str()) {
        tracing::info!("sync rules unchanged");
        return Ok(Deployed::Unchanged);
    }
    if data.get("managed_by_config").and_then(Value::as_bool) == Some(true) {
        tracing::warn!(
            "sync-rules.yaml differs from the sync service's rules, but the service takes its rules \
             from its own config file: not deployed"
        );
        return Ok(Deployed::ManagedByService);
    }
    let answer = request(&http, target, deadline, DEPLOY, Some(content)).await?;
    let id = answer.pointer("/data/id").and_then(Value::as_i64);
    tracing::info!(deployment = ?id, "sync rules deployed");
    Ok(Deployed::Deployed { id })
}

/// One admin request, retried while the service is not up and the deadline allows.
async fn request(
    http: &reqwest::Client,
    target: &Target,
    deadline: Instant,
    path: &'static str,
    body: Option<String>,
) -> Result<Value, DeployError> {
    let url = target
        .base_url
        .join(path)
        .map_err(|_| DeployError::Unexpected {
            status: 0,
            path,
            description: "POWERSYNC_URL cannot be joined with the admin path".into(),
        })?;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut req = match &body {
            Some(yaml) => http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/yaml")
                .body(yaml.clone()),
            None => http.get(url.clone()),
        };
        req = req.bearer_auth(&target.api_token);
        let (retry_cause, status) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if matches!(status, 502..=504) {
                    (None, Some(status))
                } else {
                    let json: Value = resp.json().await.unwrap_or(Value::Null);
                    return answer(status, path, json);
                }
            }
            Err(err) if err.is_connect() || err.is_timeout() => (Some(err), None),
            Err(err) => {
                return Err(DeployError::Unreachable {
                    url: target.base_url.to_string(),
                    waited: started.elapsed(),
                    source: Some(err),
                });
            }
        };
        if Instant::now() + backoff > deadline {
            return Err(DeployError::Unreachable {
                url: target.base_url.to_string(),
                waited: started.elapsed(),
                source: retry_cause,
            });
        }
        tracing::info!(status = ?status, retry_in = ?backoff, "sync service not ready yet");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn answer(status: u16, path: &'static str, json: Value) -> Result<Value, DeployError> {
    let description = json
        .pointer("/error/description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match status {
        200..=299 => Ok(json),
        401 | 403 => Err(DeployError::Refused { status }),
        400 if path == DEPLOY => Err(DeployError::Invalid { description }),
        _ => Err(DeployError::Unexpected {
            status,
            path,
            description,
        }),
    }
}
