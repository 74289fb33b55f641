//! CPU time and memory, from `/proc`: of the service, of this process (the load generator) and
//! of the whole Postgres cluster, sampled before and after each scenario.

use std::path::PathBuf;

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS over the process's life), bytes.
    pub peak_rss: u64,
}

pub fn usage(pid: u32) -> Usage {
    let proc = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
    let mut u = Usage::default();
    if let Some(stat) = proc("stat") {
        // Fields after the command name (which is in parentheses and may contain spaces):
        // state is field 3, utime field 14, stime field 15.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
            u.cpu_s = (ticks(11) + ticks(12)) as f64 / 100.0;
        }
    }
    if let Some(status) = proc("status") {
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        u.rss = kb("VmRSS:");
        u.peak_rss = kb("VmHWM:");
    }
    u
}

/// CPU time, seconds, of a Postgres cluster: the postmaster's own, that of its children that
/// have exited (cutime + cstime) and that of its running children (backends, WAL sender,
/// background workers). Zero when `postmaster.pid` in `data_dir` cannot be read.
pub fn cluster_cpu_s(data_dir: &std::path::Path) -> f64 {
    let Some(postmaster) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return 0.0;
    };
    // Fields after the command name: ppid is field 4, utime..cstime fields 14..17.
    let stat = |pid: &str| -> Option<(u32, [u64; 4])> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some((u32::try_from(n(1)).ok()?, [n(11), n(12), n(13), n(14)]))
    };
    let mut ticks = stat(&postmaster.to_string()).map_or(0, |(_, t)| t.iter().sum());
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some((ppid, t)) = stat(pid)
                && ppid == postmaster
            {
                ticks += t[0] + t[1];
            }
        }
    }
    // USER_HZ is 100 for user space.
    ticks as f64 / 100.0
}

/// CPU and memory of the service and of this process (the load generator) over one scenario.
pub struct Resources {
    pub scenario: String,
    pub service: (Usage, Usage),
    pub bench: (Usage, Usage),
    /// CPU seconds of the whole Postgres cluster (source and storage databases), before and
    /// after.
    pub postgres: (f64, f64),
}

/// One reading of the service, this process and the cluster.
pub struct Sample {
    service: Usage,
    bench: Usage,
    postgres: f64,
}

/// Takes [`Sample`]s of one service and the cluster in `pg_dir`.
pub struct Sampler {
    service_pid: u32,
    pg_dir: PathBuf,
}

impl Sampler {
    pub fn new(service_pid: u32, pg_dir: PathBuf) -> Sampler {
        Sampler {
            service_pid,
            pg_dir,
        }
    }

    pub fn sample(&self) -> Sample {
        Sample {
            service: usage(self.service_pid),
            bench: usage(std::process::id()),
            postgres: cluster_cpu_s(&self.pg_dir),
        }
    }

    /// What `scenario` used since `before`.
    pub fn since(&self, scenario: &str, before: Sample) -> Resources {
        let after = self.sample();
        Resources {
            scenario: scenario.into(),
            service: (before.service, after.service),
            bench: (before.bench, after.bench),
            postgres: (before.postgres, after.postgres),
        }
    }
}
