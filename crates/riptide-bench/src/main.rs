//! `riptide-bench`: measures the sync service as a user would meet it, in one run on one machine,
//! and prints a table (and writes JSON).
//!
//! It starts a private Postgres cluster, a source and a storage database, and `riptide serve`
//! as a separate process (the release binary), then runs:
//! - replication: a 100,000-row `INSERT … SELECT generate_series` until an open sync stream has
//!   received the checkpoint that contains it (rows/s);
//! - initial sync: a raw protocol reader downloading those ops from scratch up to
//!   `checkpoint_complete`, per transport and encoding: the HTTP stream as NDJSON and as BSON,
//!   each with identity, gzip and zstd content encoding, and RSocket over WebSocket (BSON
//!   payloads); best of `--repeat` runs (ops/s and bytes on the wire, compressed where it is);
//! - `@powersync/node` first sync of the same rows into a fresh database over `http` and
//!   `web-socket` (if `e2e/` has its packages installed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use riptide_localpg::{Durability, LocalCluster};
use riptide_testkit::TestKeys;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the Riptide sync service")]
struct Args {
    /// Rows inserted by the replication scenario.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// The riptide binary to benchmark.
    #[arg(long, default_value = "target/release/riptide")]
    riptide: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Skip the @powersync/node scenarios.
    #[arg(long)]
    no_node: bool,
    /// Runs of each initial-sync scenario; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

struct Row {
    scenario: String,
    amount: String,
    seconds: f64,
    rate: String,
    note: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let result = bench().await;
    if let Err(e) = &result {
        // tokio-postgres keeps the server's message in the error's source chain.
        let chain: Vec<String> = e.chain().map(|c| format!("{c:?}")).collect();
        eprintln!("{}", chain.join("\n  caused by: "));
    }
    result
}

async fn bench() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::Builder::new().prefix("riptide-bench").tempdir()?;
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let cluster = LocalCluster::new(work.path().join("pg"));
    cluster.init(Durability::Ephemeral)?;
    let pg_port = cluster.start(None)?;
    let result = run(&args, pg_port, work.path()).await;
    let _ = cluster.stop(false);
    result
}

async fn run(args: &Args, pg_port: u16, work: &std::path::Path) -> Result<()> {
    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    admin.batch_execute("CREATE DATABASE bench_source").await?;
    admin.batch_execute("CREATE DATABASE bench_storage").await?;
    let source = connect(&riptide_localpg::url(pg_port, "bench_source")).await?;
    source
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, n bigint NOT NULL, label text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now());
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;

    let keys = TestKeys::generate();
    let http_port = free_port()?;
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_source"), "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_storage")},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM items\n"},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "system": {"logging": {"level": "warn"}},
    });
    let config_path = work.join("config.yaml");
    // JSON is YAML.
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    let mut service = tokio::process::Command::new(&args.riptide)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                args.riptide.display()
            )
        })?;
    let endpoint = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("{endpoint}/probes/readiness"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("service not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = keys.token("bench", 3600, json!({}));
    let mut rows = Vec::new();

    // Replication: an open stream sees the checkpoint containing the bulk insert.
    let mut live = open_stream(&http, &endpoint, &token, Transport::NDJSON).await?;
    read_until_complete(&mut live, None).await?;
    let started = Instant::now();
    source
        .execute(
            "INSERT INTO items (id, n, label) SELECT 'item-' || g, g, 'label ' || g \
             FROM generate_series(1, $1::bigint) g",
            &[&args.rows],
        )
        .await?;
    let committed = started.elapsed();
    read_until_complete(&mut live, Some(args.rows)).await?;
    let total = started.elapsed();
    drop(live);
    let secs = total.as_secs_f64();
    rows.push(Row {
        scenario: "replication: bulk INSERT → in a checkpoint".into(),
        amount: format!("{} rows", args.rows),
        seconds: secs,
        rate: format!("{:.0} rows/s", args.rows as f64 / secs),
        note: format!("INSERT itself took {:.2} s", committed.as_secs_f64()),
    });

    // Initial sync, raw reader, per transport and encoding.
    for transport in Transport::ALL {
        let mut best: Option<(f64, u64, u64)> = None;
        for _ in 0..args.repeat.max(1) {
            let started = Instant::now();
            let mut stream = open_stream(&http, &endpoint, &token, transport).await?;
            let (ops, _) = read_until_complete(&mut stream, Some(args.rows)).await?;
            let secs = started.elapsed().as_secs_f64();
            let wire = stream.wire_bytes();
            drop(stream);
            if best.is_none_or(|(s, _, _)| secs < s) {
                best = Some((secs, ops, wire));
            }
        }
        let (secs, ops, wire) = best.context("at least one run")?;
        rows.push(Row {
            scenario: format!("initial sync, raw reader, {}", transport.label()),
            amount: format!("{ops} ops"),
            seconds: secs,
            rate: format!("{:.0} ops/s", ops as f64 / secs),
            note: format!("{:.1} MB on the wire", wire as f64 / 1e6),
        });
    }

    // The official client, over both of its transports.
    if !args.no_node {
        for method in ["http", "web-socket"] {
            match node_first_sync(&endpoint, &token, method).await {
                Ok((n, secs)) => rows.push(Row {
                    scenario: format!("@powersync/node first sync (fresh database), {method}"),
                    amount: format!("{n} rows"),
                    seconds: secs,
                    rate: format!("{:.0} rows/s", n as f64 / secs),
                    note: "includes the client's SQLite apply".into(),
                }),
                Err(e) => eprintln!("skipping @powersync/node scenario ({method}): {e:#}"),
            }
        }
    }
    let _ = service.kill().await;

    println!("\n| scenario | amount | seconds | rate | note |\n|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} |",
            r.scenario, r.amount, r.seconds, r.rate, r.note
        );
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json: Vec<Value> = rows
        .iter()
        .map(|r| json!({"scenario": r.scenario, "amount": r.amount, "seconds": r.seconds, "rate": r.rate, "note": r.note}))
        .collect();
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nresults written to {}", args.json.display());
    Ok(())
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;
type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How the raw reader talks to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `POST /sync/stream` with this `Accept` and `Accept-Encoding`.
    Http { bson: bool, encoding: &'static str },
    /// RSocket over WebSocket, BSON payloads.
    RSocket,
}

impl Transport {
    const NDJSON: Transport = Transport::Http {
        bson: false,
        encoding: "identity",
    };
    const ALL: [Transport; 7] = [
        Transport::NDJSON,
        Transport::Http {
            bson: false,
            encoding: "gzip",
        },
        Transport::Http {
            bson: false,
            encoding: "zstd",
        },
        Transport::Http {
            bson: true,
            encoding: "identity",
        },
        Transport::Http {
            bson: true,
            encoding: "gzip",
        },
        Transport::Http {
            bson: true,
            encoding: "zstd",
        },
        Transport::RSocket,
    ];

    fn label(self) -> String {
        match self {
            Transport::Http { bson, encoding } => {
                format!("{} {encoding}", if bson { "BSON" } else { "NDJSON" })
            }
            Transport::RSocket => "RSocket/WebSocket (BSON)".into(),
        }
    }
}

/// Decompresses the HTTP body as it arrives (push-style, so lines are seen as soon as they are
/// complete).
enum Decoder {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        use std::io::Write;
        match self {
            Decoder::Identity => out.extend_from_slice(chunk),
            Decoder::Gzip(d) => {
                d.write_all(chunk)?;
                d.flush()?;
                out.append(d.get_mut());
            }
            Decoder::Zstd(d) => {
                d.write_all(chunk)?;
                d.flush()?;
                out.append(d.get_mut());
            }
        }
        Ok(())
    }
}

enum Stream {
    Http {
        body: Body,
        decoder: Box<Decoder>,
        bson: bool,
        buf: Vec<u8>,
        wire: u64,
    },
    RSocket {
        ws: Box<WebSocket>,
        /// PAYLOAD frames received since the last REQUEST_N.
        since_request: u32,
        wire: u64,
    },
}

/// Credit of the raw RSocket reader: REQUEST_STREAM asks for this many lines, and every
/// `CREDIT / 2` lines received it asks for that many more.
const CREDIT: u32 = 256;

async fn open_stream(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    transport: Transport,
) -> Result<Stream> {
    let body = json!({"raw_data": true, "client_id": "bench"});
    let Transport::Http { bson, encoding } = transport else {
        return open_rsocket(endpoint, token, &body).await;
    };
    let accept = if bson {
        "application/vnd.powersync.bson-stream"
    } else {
        "application/x-ndjson"
    };
    let resp = http
        .post(format!("{endpoint}/sync/stream"))
        .header("Authorization", format!("Token {token}"))
        .header("Accept", accept)
        .header("Accept-Encoding", encoding)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("sync stream answered {}", resp.status());
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, content_encoding) = (header("content-type"), header("content-encoding"));
    if !content_type.starts_with(accept) {
        bail!("asked for {accept}, got Content-Type {content_type:?}");
    }
    let decoder = match content_encoding.as_str() {
        "" | "identity" if encoding == "identity" => Decoder::Identity,
        "gzip" if encoding == "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
        "zstd" if encoding == "zstd" => {
            Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new())?)
        }
        other => bail!("asked for Accept-Encoding {encoding}, got Content-Encoding {other:?}"),
    };
    Ok(Stream::Http {
        body: Box::pin(resp.bytes_stream()),
        decoder: Box::new(decoder),
        bson,
        buf: Vec::new(),
        wire: 0,
    })
}

async fn open_rsocket(endpoint: &str, token: &str, body: &Value) -> Result<Stream> {
    use futures::SinkExt;
    use riptide_protocol::rsocket::{Frame, Payload, Setup};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("{}/sync/stream", endpoint.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let setup = Frame::Setup(Setup {
        major_version: 1,
        minor_version: 0,
        keepalive_ms: 20_000,
        lifetime_ms: 90_000,
        resume_token: None,
        lease: false,
        metadata_mime: "application/json".into(),
        data_mime: "application/json".into(),
        payload: Payload {
            metadata: Some(
                json!({"token": format!("Token {token}"), "user_agent": "riptide-bench"})
                    .to_string()
                    .into(),
            ),
            data: bytes::Bytes::new(),
        },
    });
    let request = Frame::RequestStream {
        stream_id: 1,
        initial_n: CREDIT,
        follows: false,
        payload: Payload {
            metadata: Some(json!({"path": "/sync/stream"}).to_string().into()),
            data: body.to_string().into(),
        },
    };
    ws.send(Message::Binary(setup.to_bytes())).await?;
    ws.send(Message::Binary(request.to_bytes())).await?;
    Ok(Stream::RSocket {
        ws: Box::new(ws),
        since_request: 0,
        wire: 0,
    })
}

impl Stream {
    /// Bytes received: the HTTP body as sent (compressed), or the WebSocket messages' payloads.
    fn wire_bytes(&self) -> u64 {
        match self {
            Stream::Http { wire, .. } | Stream::RSocket { wire, .. } => *wire,
        }
    }

    /// The next sync line as JSON.
    async fn next_line(&mut self) -> Result<Value> {
        match self {
            Stream::Http {
                body,
                decoder,
                bson,
                buf,
                wire,
            } => loop {
                if *bson {
                    if buf.len() >= 4 {
                        let len = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        let len = usize::try_from(len).context("negative BSON length")?;
                        if buf.len() >= len {
                            let doc: Vec<u8> = buf.drain(..len).collect();
                            return Ok(bson::deserialize_from_slice(&doc)?);
                        }
                    }
                } else if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    return Ok(serde_json::from_slice(&line[..pos])?);
                }
                let chunk = tokio::time::timeout(Duration::from_secs(120), body.next())
                    .await
                    .context("no sync line within 120 s")?
                    .context("stream ended")??;
                *wire += chunk.len() as u64;
                decoder.push(&chunk, buf)?;
            },
            Stream::RSocket {
                ws,
                since_request,
                wire,
            } => {
                use futures::SinkExt;
                use riptide_protocol::rsocket::Frame;
                use tokio_tungstenite::tungstenite::Message;
                loop {
                    let msg = tokio::time::timeout(Duration::from_secs(120), ws.next())
                        .await
                        .context("no frame within 120 s")?
                        .context("socket closed")??;
                    let Message::Binary(bytes) = msg else {
                        continue;
                    };
                    *wire += bytes.len() as u64;
                    match Frame::decode(bytes)? {
                        Frame::Payload {
                            next: true,
                            follows: false,
                            payload,
                            ..
                        } => {
                            *since_request += 1;
                            if *since_request >= CREDIT / 2 {
                                let n = std::mem::take(since_request);
                                ws.send(Message::Binary(
                                    Frame::RequestN { stream_id: 1, n }.to_bytes(),
                                ))
                                .await?;
                            }
                            return Ok(bson::deserialize_from_slice(&payload.data)?);
                        }
                        Frame::Keepalive {
                            respond: true,
                            last_received_position,
                            ..
                        } => {
                            let reply = Frame::Keepalive {
                                respond: false,
                                last_received_position,
                                data: bytes::Bytes::new(),
                            };
                            ws.send(Message::Binary(reply.to_bytes())).await?;
                        }
                        Frame::Error { code, message, .. } => {
                            bail!("RSocket ERROR {code:#x}: {message}")
                        }
                        other => bail!("unexpected frame {other:?}"),
                    }
                }
            }
        }
    }
}

/// Reads lines up to a `checkpoint_complete` (whose checkpoint has at least `min_count` ops in
/// total, when given). Returns the ops and the wire bytes read so far.
async fn read_until_complete(s: &mut Stream, min_count: Option<i64>) -> Result<(u64, u64)> {
    let mut ops = 0u64;
    let mut count: i64 = 0;
    loop {
        let v = s.next_line().await?;
        if let Some(d) = v.pointer("/data/data").and_then(Value::as_array) {
            ops += d.len() as u64;
        }
        for key in ["/checkpoint/buckets", "/checkpoint_diff/updated_buckets"] {
            if let Some(bs) = v.pointer(key).and_then(Value::as_array) {
                count = bs
                    .iter()
                    .filter_map(|b| b["count"].as_i64())
                    .sum::<i64>()
                    .max(count);
            }
        }
        if v.get("checkpoint_complete").is_some() && min_count.is_none_or(|m| count >= m) {
            return Ok((ops, s.wire_bytes()));
        }
    }
}

async fn node_first_sync(endpoint: &str, token: &str, method: &str) -> Result<(u64, f64)> {
    let script = PathBuf::from("e2e/bench/first-sync.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("ENDPOINT", endpoint)
        .env("TOKEN", token)
        .env("CONNECTION_METHOD", method)
        .output()
        .await?;
    if !out.status.success() {
        bail!("node: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("node script prints JSON")?;
    Ok((
        v["rows"].as_u64().unwrap_or(0),
        v["seconds"].as_f64().unwrap_or(0.0),
    ))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
