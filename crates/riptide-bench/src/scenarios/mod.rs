//! One module per scenario; each takes the [`Bench`] it runs against and returns its table (or
//! its rows of the throughput table).

pub mod app_latency;
pub mod big_transactions;
pub mod compaction;
pub mod fanout;
pub mod fencing;
pub mod idle;
pub mod initial_sync;
pub mod latency;
pub mod node;
pub mod node_latency;
pub mod notifications;
pub mod replication;
pub mod round_trip;
pub mod scale_out;
pub mod snapshot;
pub mod token_refresh;
pub mod transactions;

use riptide_testkit::{SyncClient, TestKeys};
use serde_json::json;

use crate::Args;
use crate::databases::Databases;
use crate::service::Service;
use crate::sizes::Sizes;

/// What every scenario runs against: the flags and sizes, the databases, the shared service and
/// the keys its tokens are signed with.
pub struct Bench<'a> {
    pub args: &'a Args,
    pub sizes: &'a Sizes,
    pub databases: &'a Databases,
    pub keys: &'a TestKeys,
    /// One connection pool for every request to the shared service.
    pub http: reqwest::Client,
    /// The shared service's `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub service_pid: u32,
    /// This process's open-file limit (the idle scenario reports it).
    pub fd_limit: u64,
}

impl<'a> Bench<'a> {
    pub fn new(
        args: &'a Args,
        sizes: &'a Sizes,
        databases: &'a Databases,
        keys: &'a TestKeys,
        (service, http): (&Service, reqwest::Client),
        fd_limit: u64,
    ) -> Bench<'a> {
        Bench {
            args,
            sizes,
            databases,
            keys,
            http,
            endpoint: service.endpoint.clone(),
            service_pid: service.pid,
            fd_limit,
        }
    }

    /// A token for the shared service whose `topic` parameter selects the `by_topic` bucket
    /// `topic` (`none`: only the bulk-insert rows of `global`).
    pub fn token(&self, topic: &str) -> String {
        self.keys
            .token("bench", 3600, json!({"parameters": {"topic": topic}}))
    }

    /// A client of the shared service with [`Bench::token`]`(topic)`.
    pub fn client(&self, topic: &str) -> SyncClient {
        bench_client(&self.endpoint, self.token(topic), &self.http)
    }
}

/// A test-kit client as every bench stream uses it: requests through `http`, RSocket SETUP
/// naming `riptide-bench`.
pub fn bench_client(endpoint: &str, token: String, http: &reqwest::Client) -> SyncClient {
    SyncClient::with_http(endpoint, token, http.clone()).with_user_agent("riptide-bench")
}

/// The last line of a helper script's stdout that is a JSON object (the SDKs may log to
/// stdout before it).
pub fn json_line(stdout: &[u8], script: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let stdout = String::from_utf8_lossy(stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{script} printed no JSON line"))?;
    Ok(serde_json::from_str(line)?)
}
