//! Spinners for long steps (only when stderr is a terminal) and the `status` table.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use riptide_platform::status::StatusInfo;

/// Shows a spinner on stderr while a long step runs; silent when stderr is not a terminal.
pub struct Spinner {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Spinner {
    pub fn new(wanted: bool) -> Spinner {
        Spinner {
            enabled: wanted && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl riptide_platform::Progress for Spinner {
    fn start(&self, message: &str) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut slot) = self.bar.lock()
            && let Some(old) = slot.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// `riptide status` for people.
pub fn status_text(s: &StatusInfo) -> String {
    let mut out = vec![format!("home: {}", s.home.display())];
    match &s.cluster {
        Some(c) => out.push(format!(
            "local cluster: port {} ({}) in {}",
            c.port,
            if c.running { "running" } else { "stopped" },
            c.data_dir.display()
        )),
        None => out.push("local cluster: none".into()),
    }
    out.push(format!("databases: {}", s.databases.len()));
    for d in &s.databases {
        out.push(format!(
            "  {}  {}  {:?}  {}{}",
            d.id,
            d.name,
            d.provider,
            d.uri,
            d.sync_id
                .as_ref()
                .map(|id| format!("  sync: {id}"))
                .unwrap_or_default()
        ));
    }
    out.push(format!("sync services: {}", s.sync.len()));
    for x in &s.sync {
        out.push(format!(
            "  {}  {}  {}  {}",
            x.id,
            x.url,
            match x.pid {
                Some(pid) => format!("running (pid {pid})"),
                None => "stopped".into(),
            },
            x.log_path.display()
        ));
    }
    out.push(format!("apps: {}", s.apps.len()));
    for a in &s.apps {
        out.push(format!(
            "  {}  {}  {}{}{}",
            a.id,
            a.name,
            a.path.display(),
            a.database_id
                .as_ref()
                .map(|d| format!("  database: {d}"))
                .unwrap_or_default(),
            if a.exists { "" } else { "  (folder missing)" }
        ));
    }
    out.join("\n")
}
