//! A `riptide serve` process a fault test can kill (SIGKILL: no shutdown code runs) and start
//! again on the same config and port, with failpoints set through `FAILPOINTS`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

/// A sync service process on a config file.
#[derive(Debug)]
pub struct ServiceProcess {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Arguments after `serve --config FILE` (e.g. `--role api`).
    args: Vec<String>,
    /// Every `start` so far (the log of each run is appended to the same file).
    pub starts: u32,
}

impl ServiceProcess {
    /// Writes `config` (JSON is YAML) into `dir` with `port` set, without starting anything.
    pub fn new(binary: &Path, dir: &Path, mut config: Value, port: u16) -> ServiceProcess {
        config["port"] = Value::from(port);
        let path = dir.join("riptide.yaml");
        let text = serde_json::to_string_pretty(&config).expect("config serialises");
        std::fs::write(&path, text).expect("config written");
        ServiceProcess {
            binary: binary.to_owned(),
            config: path,
            log: dir.join("riptide.log"),
            port,
            child: None,
            args: Vec::new(),
            starts: 0,
        }
    }

    /// Adds arguments after `serve --config FILE` (e.g. `["--role", "api"]`).
    pub fn with_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The running process's id (to signal it: SIGSTOP, SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process; `failpoints` is the `FAILPOINTS` variable (`name=action;…`), if any.
    pub fn start(&mut self, failpoints: Option<&str>) {
        assert!(self.child.is_none(), "the service already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log opens");
        let err = log.try_clone().expect("log clones");
        let mut cmd = Command::new(&self.binary);
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .args(&self.args)
            .env(
                "RUST_LOG",
                "warn,riptide_server=info,riptide_replication=info",
            )
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        self.child = Some(cmd.spawn().expect("riptide starts"));
        self.starts += 1;
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Whether the process has exited (e.g. a failpoint aborted it); reaps it if so.
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            None => true,
            Some(child) => match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    true
                }
                Ok(None) => false,
                Err(_) => true,
            },
        }
    }

    /// Waits until the process exits by itself (a failpoint); false after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The readiness probe's status and body, `None` while nothing answers.
    pub async fn readiness(&self) -> Option<(u16, Value)> {
        let resp = crate::http()
            .get(format!("{}/probes/readiness", self.endpoint()))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Waits until the readiness probe answers 200; false after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.readiness().await, Some((200, _))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
