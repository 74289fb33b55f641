//! Spinners for long steps (only when stderr is a terminal) and what each platform subcommand
//! prints for people (`--json` prints the result itself).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use riptide_platform::app::AppInfo;
use riptide_platform::connect::ConnectInfo;
use riptide_platform::database::DatabaseInfo;
use riptide_platform::migrate::MigrationsInfo;
use riptide_platform::rules::RulesInfo;
use riptide_platform::schema::SchemaInfo;
use riptide_platform::status::{StatusInfo, StopInfo};
use riptide_platform::sync::{DeployFiles, SyncInfo};

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

    fn warn(&self, message: &str) {
        // On stderr also with `--json` (stdout stays the result).
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref()) {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
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

/// `riptide create-database`.
pub fn database_text(info: &DatabaseInfo) -> String {
    let head = if info.already {
        format!("database {} already exists ({})", info.name, info.id)
    } else {
        format!("created database {} ({})", info.name, info.id)
    };
    format!(
        "{head}\n  pooled URI: {}\n  direct URI: {}\n  note: {}",
        info.pooled_uri, info.direct_uri, info.note
    )
}

/// `riptide sync enable`.
pub fn sync_text(info: &SyncInfo) -> String {
    let head = match (info.already, info.started) {
        (false, _) => format!("sync enabled ({})", info.id),
        (true, true) => {
            format!("sync was already enabled ({}); service restarted", info.id)
        }
        (true, false) => format!("sync already enabled ({}); service running", info.id),
    };
    format!(
        "{head}\n  service:     {}\n  publication: {}\n  config:      {}\n  log:         {}",
        info.url,
        info.publication,
        info.config_path.display(),
        info.log_path.display()
    )
}

/// `riptide sync deploy-files`.
pub fn deploy_files_text(info: &DeployFiles) -> String {
    let verb = if info.already {
        "already up to date"
    } else {
        "wrote"
    };
    let files: Vec<String> = info
        .files
        .iter()
        .map(|f| format!("  {}", f.display()))
        .collect();
    format!(
        "{verb}: deploy files in {}\n{}",
        info.dir.display(),
        files.join("\n")
    )
}

/// `riptide create-app`.
pub fn app_text(info: &AppInfo) -> String {
    if info.already {
        format!(
            "app {} already exists ({}) in {}",
            info.name,
            info.id,
            info.path.display()
        )
    } else {
        format!(
            "created app {} ({}) in {}\n  next: riptide connect {} DATABASE",
            info.name,
            info.id,
            info.path.display(),
            info.name
        )
    }
}

/// `riptide connect`.
pub fn connect_text(info: &ConnectInfo) -> String {
    let head = if info.already {
        "already connected".to_owned()
    } else {
        format!("connected {} to {}", info.app_id, info.database_id)
    };
    let files: Vec<String> = info
        .env_files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    format!(
        "{head}\n  wrote {} (mode 0600)\n  sync service: {}",
        files.join(", "),
        info.powersync_url
    )
}

/// `riptide stop`.
pub fn stop_text(info: &StopInfo) -> String {
    let mut lines = Vec::new();
    if !info.stopped.is_empty() {
        lines.push(format!("stopped: {}", info.stopped.join(", ")));
    }
    if !info.not_running.is_empty() {
        lines.push(format!("already stopped: {}", info.not_running.join(", ")));
    }
    if lines.is_empty() {
        lines.push("nothing to stop".into());
    }
    lines.join("\n")
}

/// `riptide schema`.
pub fn schema_text(info: &SchemaInfo) -> String {
    let verb = if info.already {
        "already up to date"
    } else {
        "wrote"
    };
    format!(
        "{verb}: {} ({})",
        info.path.display(),
        info.tables.join(", ")
    )
}

/// `riptide migrate`.
pub fn migrations_text(info: &MigrationsInfo) -> String {
    if info.applied.is_empty() {
        format!(
            "migrations already applied ({})",
            info.already_applied.len()
        )
    } else {
        format!("applied: {}", info.applied.join(", "))
    }
}

/// `riptide deploy-rules`.
pub fn rules_text(info: &RulesInfo) -> String {
    if info.already {
        format!(
            "sync rules already deployed (deployment {})",
            info.deployment["id"]
        )
    } else {
        format!("deployed sync rules (deployment {})", info.deployment["id"])
    }
}
