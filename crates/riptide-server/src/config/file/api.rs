//! `api`: admin tokens, read-only dashboard tokens (`dashboard_tokens`, a Riptide key), the
//! service's limits (`api.parameters`) and how the admin API's `execute-sql` runs
//! (`execute_sql`, Riptide keys: `read_only`, `max_rows`, `statement_timeout_ms`).

use serde::Deserialize;

use super::{Ignored, Resolver, Str};
use crate::config::{ConfigError, Env, ServeConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Api {
    tokens: Option<Vec<Str>>,
    dashboard_tokens: Option<Vec<Str>>,
    parameters: Option<ApiParameters>,
    /// Riptide's own keys: how `POST /api/admin/v1/execute-sql` runs.
    execute_sql: Option<ExecuteSql>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteSql {
    read_only: Option<Env<bool>>,
    max_rows: Option<Env<usize>>,
    statement_timeout_ms: Option<Env<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiParameters {
    max_concurrent_connections: Option<Env<usize>>,
    /// Riptide's own key: sync streams per user (`sub`).
    max_connections_per_user: Option<Env<usize>>,
    max_buckets_per_connection: Option<Env<usize>>,
    max_parameter_query_results: Option<Env<usize>>,
    max_data_fetch_concurrency: Option<Ignored>,
    checkpoint_request_retention_minutes: Option<Ignored>,
    bucket_count_cache_ttl_minutes: Option<Ignored>,
}

/// What `api` sets; each limit not given keeps the service's default.
#[derive(Default)]
pub(super) struct ApiSection {
    tokens: Vec<String>,
    dashboard_tokens: Vec<String>,
    max_concurrent_connections: Option<usize>,
    max_connections_per_user: Option<usize>,
    max_buckets_per_connection: Option<usize>,
    max_parameter_query_results: Option<usize>,
    execute_sql_read_only: Option<bool>,
    execute_sql_max_rows: Option<usize>,
    execute_sql_timeout_ms: Option<u64>,
}

impl ApiSection {
    pub(super) fn apply(self, config: &mut ServeConfig) {
        config.api_tokens = self.tokens;
        config.dashboard_tokens = self.dashboard_tokens;
        if let Some(v) = self.execute_sql_read_only {
            config.execute_sql.read_only = v;
        }
        if let Some(v) = self.execute_sql_max_rows {
            config.execute_sql.max_rows = v;
        }
        if let Some(v) = self.execute_sql_timeout_ms {
            config.execute_sql.statement_timeout = std::time::Duration::from_millis(v);
        }
        let limits = &mut config.limits;
        if let Some(v) = self.max_concurrent_connections {
            limits.max_concurrent_connections = v;
        }
        if let Some(v) = self.max_connections_per_user {
            limits.max_connections_per_user = v;
        }
        if let Some(v) = self.max_buckets_per_connection {
            limits.max_buckets_per_connection = v;
        }
        if let Some(v) = self.max_parameter_query_results {
            limits.max_parameter_query_results = v;
        }
    }
}

pub(super) fn resolve(r: &mut Resolver<'_>, api: Option<Api>) -> Result<ApiSection, ConfigError> {
    let Some(api) = api else {
        return Ok(ApiSection::default());
    };
    let strings = |list: Option<Vec<Str>>| -> Vec<String> {
        list.unwrap_or_default()
            .into_iter()
            .map(Env::into_inner)
            .collect()
    };
    let tokens = strings(api.tokens);
    let dashboard_tokens = strings(api.dashboard_tokens);
    if dashboard_tokens
        .iter()
        .any(|t| !t.is_empty() && tokens.contains(t))
    {
        return Err(r.invalid(
            "api.dashboard_tokens must differ from api.tokens: a dashboard token is read-only \
             and may travel in a URL, an admin token must not",
        ));
    }
    let (execute_sql_read_only, execute_sql_max_rows, execute_sql_timeout_ms) =
        match api.execute_sql {
            Some(s) => (
                s.read_only.map(Env::into_inner),
                s.max_rows.map(Env::into_inner),
                s.statement_timeout_ms.map(Env::into_inner),
            ),
            None => (None, None, None),
        };
    if execute_sql_max_rows == Some(0) || execute_sql_timeout_ms == Some(0) {
        return Err(r.invalid(
            "api.execute_sql.max_rows and api.execute_sql.statement_timeout_ms must be at least 1",
        ));
    }
    let Some(p) = api.parameters else {
        return Ok(ApiSection {
            tokens,
            dashboard_tokens,
            execute_sql_read_only,
            execute_sql_max_rows,
            execute_sql_timeout_ms,
            ..ApiSection::default()
        });
    };
    r.ignore(
        "api.parameters.max_data_fetch_concurrency",
        &p.max_data_fetch_concurrency,
    );
    r.ignore(
        "api.parameters.checkpoint_request_retention_minutes",
        &p.checkpoint_request_retention_minutes,
    );
    r.ignore(
        "api.parameters.bucket_count_cache_ttl_minutes",
        &p.bucket_count_cache_ttl_minutes,
    );
    let section = ApiSection {
        tokens,
        dashboard_tokens,
        max_concurrent_connections: p.max_concurrent_connections.map(Env::into_inner),
        max_connections_per_user: p.max_connections_per_user.map(Env::into_inner),
        max_buckets_per_connection: p.max_buckets_per_connection.map(Env::into_inner),
        max_parameter_query_results: p.max_parameter_query_results.map(Env::into_inner),
        execute_sql_read_only,
        execute_sql_max_rows,
        execute_sql_timeout_ms,
    };
    for (name, v) in [
        (
            "max_concurrent_connections",
            section.max_concurrent_connections,
        ),
        (
            "max_buckets_per_connection",
            section.max_buckets_per_connection,
        ),
        (
            "max_parameter_query_results",
            section.max_parameter_query_results,
        ),
        ("max_connections_per_user", section.max_connections_per_user),
    ] {
        if v == Some(0) {
            return Err(r.invalid(format!("api.parameters.{name} must be at least 1")));
        }
    }
    Ok(section)
}
