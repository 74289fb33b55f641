//! The process's configuration, read from the environment (and the app's `.env`).
//!
//! Every missing or malformed variable is collected, so one start-up error names them all.
//! Values are never echoed back: several of them are secrets.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::client_ip::TrustedProxies;
use crate::limits::Limits;
use crate::token::{SigningKey, SigningKeyError};

/// The default `aud` of issued tokens.
pub const DEFAULT_AUDIENCE: &str = "riptide";
/// The default HTTP port.
pub const DEFAULT_PORT: u16 = 3001;

/// Everything the process needs to run.
#[derive(Clone)]
pub struct Config {
    /// `DIRECT_DATABASE_URL`: migrations and uploads (may hold a password: never logged).
    pub database_url: String,
    /// `POWERSYNC_SIGNING_KEY`: the private Ed25519 JWK tokens are signed with.
    pub signing_key: SigningKey,
    /// `POWERSYNC_URL`: the sync service.
    pub powersync_url: reqwest::Url,
    /// `POWERSYNC_API_TOKEN`: the sync service's admin token (never logged).
    pub api_token: String,
    /// `POWERSYNC_TOKEN_AUDIENCE`.
    pub audience: String,
    /// `HOST`.
    pub host: String,
    /// `PORT`.
    pub port: u16,
    /// `APP_ROOT` (default: the working directory): holds `migrations/`, `sync-rules.yaml` and
    /// `web/dist`.
    pub app_root: PathBuf,
    /// How long start-up keeps retrying a sync service that is not up yet.
    pub rules_deploy_timeout: Duration,
    /// `TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` names the client (default: none,
    /// the header is ignored).
    pub trusted_proxies: TrustedProxies,
    /// The limits on what clients send ([`Limits::default`]; not read from the environment).
    pub limits: Limits,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"<redacted>")
            .field("signing_key", &self.signing_key)
            .field("powersync_url", &self.powersync_url.as_str())
            .field("api_token", &"<redacted>")
            .field("audience", &self.audience)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("app_root", &self.app_root)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limits", &self.limits)
            .finish()
    }
}

/// One bad variable: its name and what is wrong (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarProblem {
    pub name: &'static str,
    pub problem: String,
}

/// The environment does not configure the process.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", describe(.0))]
    Invalid(Vec<VarProblem>),
    #[error("cannot read {path}")]
    DotEnv {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
    #[error("cannot determine the working directory (set APP_ROOT)")]
    WorkingDir(#[source] std::io::Error),
}

impl ConfigError {
    /// The names of the bad variables (empty for other errors).
    pub fn variables(&self) -> Vec<&'static str> {
        match self {
            ConfigError::Invalid(list) => list.iter().map(|p| p.name).collect(),
            _ => Vec::new(),
        }
    }
}

fn describe(problems: &[VarProblem]) -> String {
    let list: Vec<String> = problems
        .iter()
        .map(|p| format!("{} {}", p.name, p.problem))
        .collect();
    format!(
        "the environment is not set up (see .env; `riptide connect` writes it): {}",
        list.join("; ")
    )
}

impl Config {
    /// Reads `.env` from the app root when present (variables already set win), then the
    /// environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let root = app_root(std::env::var("APP_ROOT").ok())?;
        let dotenv = root.join(".env");
        if dotenv.is_file() {
            dotenvy::from_path(&dotenv).map_err(|source| ConfigError::DotEnv {
                path: dotenv.clone(),
                source,
            })?;
        }
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let get = |name: &'static str, problems: &mut Vec<VarProblem>| -> Option<String> {
            match lookup(name).map(|v| v.trim().to_owned()) {
                Some(v) if !v.is_empty() => Some(v),
                _ => {
                    problems.push(VarProblem {
                        name,
                        problem: "is missing".into(),
                    });
                    None
                }
            }
        };
        let optional = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let database_url =
            get("DIRECT_DATABASE_URL", &mut problems).and_then(|url| match url
                .parse::<tokio_postgres::Config>()
            {
                Ok(pg) if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require => {
                    problems.push(VarProblem {
                        name: "DIRECT_DATABASE_URL",
                        problem: "asks for sslmode=require, but this process connects without TLS \
                                  (use a database reachable without TLS, or add a TLS connector \
                                  in state.rs and migrations.rs)"
                            .into(),
                    });
                    None
                }
                Ok(_) => Some(url),
                Err(_) => {
                    problems.push(VarProblem {
                        name: "DIRECT_DATABASE_URL",
                        problem: "is not a Postgres URL (postgres://user:password@host:port/db)"
                            .into(),
                    });
                    None
                }
            });
        let signing_key = get("POWERSYNC_SIGNING_KEY", &mut problems).and_then(|text| {
            match SigningKey::from_env_value(&text) {
                Ok(key) => Some(key),
                Err(err) => {
                    problems.push(VarProblem {
                        name: "POWERSYNC_SIGNING_KEY",
                        problem: signing_problem(&err),
                    });
                    None
                }
            }
        });
        let powersync_url =
            get("POWERSYNC_URL", &mut problems).and_then(|text| match reqwest::Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    problems.push(VarProblem {
                        name: "POWERSYNC_URL",
                        problem: "is not an http(s) URL such as http://127.0.0.1:8080".into(),
                    });
                    None
                }
            });
        let api_token = get("POWERSYNC_API_TOKEN", &mut problems);
        let audience =
            optional("POWERSYNC_TOKEN_AUDIENCE").unwrap_or_else(|| DEFAULT_AUDIENCE.into());
        let port = match optional("PORT") {
            None => Some(DEFAULT_PORT),
            Some(text) => match text.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => {
                    problems.push(VarProblem {
                        name: "PORT",
                        problem: "is not a port number (0-65535)".into(),
                    });
                    None
                }
            },
        };
        let host = optional("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let trusted_proxies = match optional("TRUSTED_PROXIES") {
            None => TrustedProxies::default(),
            Some(text) => TrustedProxies::parse(&text).unwrap_or_else(|err| {
                problems.push(VarProblem {
                    name: "TRUSTED_PROXIES",
                    problem: format!("is not a comma-separated list of proxy addresses: {err}"),
                });
                TrustedProxies::default()
            }),
        };
        let app_root = app_root(optional("APP_ROOT"))?;

        match (database_url, signing_key, powersync_url, api_token, port) {
            (
                Some(database_url),
                Some(signing_key),
                Some(powersync_url),
                Some(api_token),
                Some(port),
            ) if problems.is_empty() => Ok(Config {
                database_url,
                signing_key,
                powersync_url,
                api_token,
                audience,
                host,
                port,
                app_root,
                rules_deploy_timeout: Duration::from_secs(60),
                trusted_proxies,
                limits: Limits::default(),
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

fn app_root(value: Option<String>) -> Result<PathBuf, ConfigError> {
    match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => Ok(PathBuf::from(v.trim())),
        None => std::env::current_dir().map_err(ConfigError::WorkingDir),
    }
}

fn signing_problem(err: &SigningKeyError) -> String {
    format!("is not a usable key: {err}")
}
