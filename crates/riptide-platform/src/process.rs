//! Managed background processes: started detached in their own process group with a pid file
//! and a log file; stopped with SIGTERM, then SIGKILL after a timeout.
//!
//! A pid file names a process *and* its start time (`/proc/<pid>/stat`, field 22): after a
//! reboot or a crash the pid may belong to another process, which must never be taken for the
//! service (or signalled). Pid files written before the start time was recorded are trusted
//! only if the process they name runs `riptide serve`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::PlatformError;

/// Children this process started and has not reaped yet (a long-running caller such as the MCP
/// server must reap them, or stopped services would linger as zombies).
fn children() -> &'static Mutex<HashMap<u32, Child>> {
    static CHILDREN: OnceLock<Mutex<HashMap<u32, Child>>> = OnceLock::new();
    CHILDREN.get_or_init(Default::default)
}

/// Starts `command` detached (own process group, stdin closed, stdout and stderr appended to
/// `log`), writes its pid to `pid_file` and returns the pid.
pub fn spawn_detached(
    command: &mut Command,
    log: &Path,
    pid_file: &Path,
) -> Result<u32, PlatformError> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(PlatformError::io(log))?;
    let err = out.try_clone().map_err(PlatformError::io(log))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(PlatformError::io(command.get_program()))?;
    let pid = child.id();
    if let Ok(mut map) = children().lock() {
        map.insert(pid, child);
    }
    let started = start_time(pid).map(|t| format!(" {t}")).unwrap_or_default();
    crate::state::write_atomic(pid_file, format!("{pid}{started}\n").as_bytes(), 0o644)?;
    Ok(pid)
}

/// The pid in `pid_file` if that process is alive and is the one the file was written for.
pub fn running_pid(pid_file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let recorded: Option<u64> = fields.next().and_then(|t| t.parse().ok());
    if !is_alive(pid) {
        return None;
    }
    let same = match recorded {
        Some(t) => start_time(pid) == Some(t),
        None => runs_riptide_serve(pid),
    };
    same.then_some(pid)
}

/// When process `pid` started (clock ticks after boot: `/proc/<pid>/stat`, field 22). A pid
/// reused by another process has another start time.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name, which may hold spaces: field 3 on.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` runs `riptide serve` (for pid files without a start time).
fn runs_riptide_serve(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
    let program = args.next().unwrap_or_default();
    let name = Path::new(program.as_ref())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "riptide" && args.any(|a| a == "serve")
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    if let Ok(mut map) = children().lock()
        && let Some(child) = map.get_mut(&pid)
    {
        match child.try_wait() {
            Ok(None) => return true,
            _ => {
                map.remove(&pid);
                return false;
            }
        }
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Stops the process in `pid_file` (SIGTERM to its process group, SIGKILL after `timeout`) and
/// removes the pid file. Returns whether a process was running.
pub async fn stop(pid_file: &Path, timeout: Duration) -> Result<bool, PlatformError> {
    let Some(pid) = running_pid(pid_file) else {
        let _ = std::fs::remove_file(pid_file);
        return Ok(false);
    };
    terminate(pid, timeout).await?;
    let _ = std::fs::remove_file(pid_file);
    Ok(true)
}

/// Stops process `pid` and its process group: SIGTERM, then SIGKILL after `timeout`.
pub async fn terminate(pid: u32, timeout: Duration) -> Result<(), PlatformError> {
    signal(pid, "TERM");
    let deadline = Instant::now() + timeout;
    while is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_alive(pid) {
        tracing::warn!(pid, "process did not stop after SIGTERM; sending SIGKILL");
        signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if is_alive(pid) {
            return Err(PlatformError::Process(format!(
                "process {pid} did not stop even after SIGKILL"
            )));
        }
    }
    Ok(())
}

/// Sends `SIG<name>` to the process group led by `pid` (falls back to the process).
fn signal(pid: u32, name: &str) {
    let group = Command::new("kill")
        .args([&format!("-{name}"), "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !group.map(|s| s.success()).unwrap_or(false) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The last `lines` lines of a log file (for error messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether something listens on (or holds) `127.0.0.1:port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, PlatformError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(PlatformError::io("127.0.0.1:0"))
}

/// Waits until `check` returns true or `timeout` passes; `false` on timeout.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_some_other_live_process_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("riptide.pid");
        // This test process is alive, but it is not the service the file was written for.
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).expect("write");
        assert_eq!(running_pid(&pid_file), None);
        // Nor when the file's start time is another process's (the pid was reused).
        std::fs::write(&pid_file, format!("{} 1\n", std::process::id())).expect("write");
        assert_eq!(running_pid(&pid_file), None);
    }

    #[tokio::test]
    async fn a_pid_file_of_a_started_process_is_trusted_until_it_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("riptide.pid");
        let log = dir.path().join("log");
        let pid = spawn_detached(Command::new("sleep").arg("30"), &log, &pid_file).expect("spawn");
        assert_eq!(running_pid(&pid_file), Some(pid));
        assert!(stop(&pid_file, Duration::from_secs(5)).await.expect("stop"));
        assert_eq!(running_pid(&pid_file), None);
    }
}
