//! A sync client that lives through faults: it reconnects whenever its stream ends, fails or
//! goes silent (resuming its buckets from where it left them, like the SDK), and converges on
//! request: a write checkpoint is taken, and the client reads until a complete checkpoint
//! acknowledges it, then its local tables must equal the oracle's.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::replica::{Applied, Oracle, Replica, ReplicaError, Tables};

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// One user's client.
pub struct FaultClient {
    pub user: String,
    pub client_id: String,
    endpoint: String,
    token: String,
    http: reqwest::Client,
    replica: Replica,
    stream: Option<(ByteStream, Vec<u8>)>,
    /// Connections opened so far.
    pub connects: u32,
    /// Checkpoints whose checksums did not match (each costs the client a re-download).
    pub checksum_failures: u32,
}

impl std::fmt::Debug for FaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultClient")
            .field("user", &self.user)
            .field("connects", &self.connects)
            .finish_non_exhaustive()
    }
}

/// Why a client did not converge.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error("{user}: no write checkpoint could be taken within {timeout:?}: {last}")]
    WriteCheckpoint {
        user: String,
        timeout: Duration,
        last: String,
    },
    #[error("{user}: write checkpoint {wc} not acknowledged within {timeout:?} ({last})")]
    Timeout {
        user: String,
        wc: i64,
        timeout: Duration,
        last: String,
    },
    #[error(
        "{user}: local tables differ from the oracle\n  local:  {local:?}\n  oracle: {oracle:?}"
    )]
    Differs {
        user: String,
        local: Box<Tables>,
        oracle: Box<Tables>,
    },
    #[error("{user}: {source}")]
    Replica {
        user: String,
        #[source]
        source: ReplicaError,
    },
    #[error("{user}: oracle query failed")]
    Oracle {
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// An error and its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Prints the line when `FAULT_TRACE` is set.
fn trace<'l>(user: &str, wc: i64, line: &'l Value) -> &'l Value {
    if std::env::var_os("FAULT_TRACE").is_some() {
        eprintln!("{user} (waiting for write checkpoint {wc}): {line}");
    }
    line
}

impl FaultClient {
    pub fn new(endpoint: &str, user: &str, token: String) -> FaultClient {
        FaultClient {
            user: user.to_owned(),
            client_id: format!("fault-{user}"),
            endpoint: endpoint.to_owned(),
            token,
            http: crate::http_builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client builds"),
            replica: Replica::new(),
            stream: None,
            connects: 0,
            checksum_failures: 0,
        }
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The service moved to `endpoint` (restarted on another port): the next read reconnects
    /// there, resuming as before.
    pub fn moved_to(&mut self, endpoint: &str) {
        endpoint.clone_into(&mut self.endpoint);
        self.stream = None;
    }

    /// Drops the connection (the next read reconnects).
    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    /// A write checkpoint for this client, retried until `deadline`.
    async fn write_checkpoint(&self, deadline: Instant) -> Result<i64, String> {
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            let resp = self
                .http
                .get(format!("{}/write-checkpoint2.json", self.endpoint))
                .query(&[("client_id", &self.client_id)])
                .header("Authorization", format!("Token {}", self.token))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if let Some(id) = body["data"]["write_checkpoint"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                    {
                        return Ok(id);
                    }
                    last = format!("unexpected body {body}");
                }
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last)
    }

    async fn connect(&mut self) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{}/sync/stream", self.endpoint))
            .header("Authorization", format!("Token {}", self.token))
            .header("Accept", "application/x-ndjson")
            .json(&self.replica.request(&self.client_id))
            .send()
            .await
            .map_err(|e| chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("sync stream answered {}", resp.status()));
        }
        self.connects += 1;
        self.replica.reconnected();
        self.stream = Some((Box::pin(resp.bytes_stream()), Vec::new()));
        Ok(())
    }

    /// The next line, connecting first if needed. `Err` (and disconnected) when the stream
    /// ended, failed or said nothing for `silence`.
    async fn next_line(&mut self, silence: Duration) -> Result<Value, String> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let Some((body, buf)) = &mut self.stream else {
            return Err("not connected".into());
        };
        loop {
            if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                return match serde_json::from_slice(&line[..pos]) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        self.stream = None;
                        Err(format!("line is not JSON: {e}"))
                    }
                };
            }
            match tokio::time::timeout(silence, body.next()).await {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => {
                    self.stream = None;
                    return Err(format!("stream failed: {e}"));
                }
                Ok(None) => {
                    self.stream = None;
                    return Err("stream ended".into());
                }
                Err(_) => {
                    self.stream = None;
                    return Err(format!("stream silent for {silence:?}"));
                }
            }
        }
    }

    /// Reads (reconnecting as needed) until a complete checkpoint acknowledges a write
    /// checkpoint taken now, then compares the local tables with what `oracle` grants.
    /// Returns how long it took.
    pub async fn converge(
        &mut self,
        db: &tokio_postgres::Client,
        oracle: &Oracle,
        timeout: Duration,
    ) -> Result<Duration, ConvergeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let wc = self.write_checkpoint(deadline).await.map_err(|last| {
            ConvergeError::WriteCheckpoint {
                user: self.user.clone(),
                timeout,
                last,
            }
        })?;
        let mut last = String::from("no line yet");
        while self.replica.acknowledged() < wc {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConvergeError::Timeout {
                    user: self.user.clone(),
                    wc,
                    timeout,
                    last,
                });
            }
            match self.next_line(left.min(Duration::from_secs(30))).await {
                Ok(line) => match self.replica.apply(trace(&self.user, wc, &line)) {
                    Ok(Applied::Line | Applied::Complete) => {}
                    Err(e @ ReplicaError::Checksum { .. }) => {
                        // As the SDK: the bucket was dropped; reconnect and download it again.
                        self.checksum_failures += 1;
                        last = e.to_string();
                        self.stream = None;
                    }
                    Err(source) => {
                        return Err(ConvergeError::Replica {
                            user: self.user.clone(),
                            source,
                        });
                    }
                },
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let local = self
            .replica
            .tables()
            .map_err(|source| ConvergeError::Replica {
                user: self.user.clone(),
                source,
            })?;
        let want = oracle
            .tables(db, &self.user)
            .await
            .map_err(|source| ConvergeError::Oracle {
                user: self.user.clone(),
                source,
            })?;
        if local != want {
            return Err(ConvergeError::Differs {
                user: self.user.clone(),
                local: Box::new(local),
                oracle: Box::new(want),
            });
        }
        Ok(started.elapsed())
    }
}
