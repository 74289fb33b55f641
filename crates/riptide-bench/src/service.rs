//! The service under test: `riptide serve` as a separate process on a config file written here,
//! and what it reports about itself (`/metrics`, `/dashboard/data.json`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use riptide_testkit::TestKeys;
use serde_json::{Value, json};

use crate::Args;
use crate::databases::{source_url, storage_url};

/// A running `riptide serve`, killed when dropped.
pub struct Service {
    child: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Service {
    /// The service the scenarios share, on `bench_source` and `bench_storage`, once it is ready.
    /// `global` holds the bulk-insert rows; each live scenario has its own `by_topic` bucket,
    /// chosen by the token's `topic` parameter (the live scenarios run first, while `global`
    /// is still empty).
    pub async fn start_main(
        args: &Args,
        pg_port: u16,
        work: &Path,
        keys: &TestKeys,
        http: &reqwest::Client,
    ) -> Result<Service> {
        let http_port = free_port()?;
        let config = json!({
            "replication": {"connections": [{"type": "postgresql", "uri": source_url(pg_port), "sslmode": "disable"}]},
            "storage": {"type": "postgresql", "uri": storage_url(pg_port), "sslmode": "disable"},
            "port": http_port,
            "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM items\n  by_topic:\n    parameters: SELECT token_parameters.topic AS topic\n    data:\n      - SELECT * FROM events WHERE topic = bucket.topic\n"},
            "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
            "api": {"parameters": {"max_concurrent_connections": 20_000, "max_connections_per_user": 20_000}},
            "system": {"logging": {"level": "warn"}},
        });
        let service = Service::spawn(&args.riptide, &work.join("config.yaml"), &config)
            .with_context(|| {
                format!(
                    "cannot start {} (build it with cargo build --release)",
                    args.riptide.display()
                )
            })?;
        service.ready(http).await?;
        Ok(service)
    }

    /// Writes `config` to `config_path` and starts `riptide serve` on it (stdout dropped,
    /// stderr shown); does not wait for it.
    pub fn spawn(riptide: &Path, config_path: &Path, config: &Value) -> Result<Service> {
        // JSON is YAML.
        std::fs::write(config_path, serde_json::to_string_pretty(config)?)?;
        let port = config["port"].as_u64().context("config has a port")?;
        let port = u16::try_from(port).context("config port fits in u16")?;
        Service::spawn_with(riptide, config_path, &[], port)
    }

    /// Another `riptide serve` on the config file a service already wrote, with `args` after
    /// it (e.g. `--role api --port N`), serving on `port`; does not wait for it.
    pub fn spawn_with(
        riptide: &Path,
        config_path: &Path,
        args: &[&str],
        port: u16,
    ) -> Result<Service> {
        let child = tokio::process::Command::new(riptide)
            .args(["serve", "--config"])
            .arg(config_path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("service pid")?;
        Ok(Service {
            child,
            pid,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Polls `/probes/readiness` every 50 ms until it succeeds (at most 60 s).
    pub async fn ready(&self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{}/probes/readiness", self.endpoint))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("service not ready after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Checkpoints the service's streams prepared so far: (from the bus's ops, from storage). Zero
/// for a service without the counter.
pub async fn prepared_checkpoints(http: &reqwest::Client, endpoint: &str) -> (f64, f64) {
    let Ok(text) = service_metrics(http, endpoint).await else {
        return (0.0, 0.0);
    };
    let series = |source: &str| {
        metric(
            &text,
            &format!("riptide_sync_checkpoints_prepared_total{{source=\"{source}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (series("memory"), series("storage"))
}

/// The service's `riptide_sync_streams_open` gauge.
pub async fn open_streams(http: &reqwest::Client, endpoint: &str) -> Result<f64> {
    let text = service_metrics(http, endpoint).await?;
    Ok(metric(&text, "riptide_sync_streams_open").unwrap_or(0.0))
}

/// The service's `/dashboard/data.json` (served to loopback clients when no API token is set).
pub async fn dashboard_data(http: &reqwest::Client, endpoint: &str) -> Result<Value> {
    Ok(http
        .get(format!("{endpoint}/dashboard/data.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// One series of the service's `/metrics` (zero when absent).
pub async fn metric_value(http: &reqwest::Client, endpoint: &str, series: &str) -> Result<f64> {
    let text = service_metrics(http, endpoint).await?;
    Ok(metric(&text, series).unwrap_or(0.0))
}

/// The service's `/metrics` text.
async fn service_metrics(http: &reqwest::Client, endpoint: &str) -> Result<String> {
    Ok(http
        .get(format!("{endpoint}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// One series of a Prometheus text exposition, by its name with labels (`name{a="b"}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn a_series_is_found_by_its_name_and_labels() {
        let text = "# TYPE riptide_sync_streams_open gauge\n\
                    riptide_sync_streams_open 12\n\
                    riptide_sync_checkpoints_prepared_total{source=\"memory\"} 3\n\
                    riptide_sync_checkpoints_prepared_total{source=\"storage\"} 4.5\n";
        assert_eq!(metric(text, "riptide_sync_streams_open"), Some(12.0));
        assert_eq!(
            metric(
                text,
                "riptide_sync_checkpoints_prepared_total{source=\"storage\"}"
            ),
            Some(4.5)
        );
        assert_eq!(
            metric(text, "riptide_sync_streams"),
            None,
            "a prefix is not a series"
        );
    }
}
