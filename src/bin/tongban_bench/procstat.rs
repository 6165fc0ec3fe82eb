//! What the process costs, read from /proc (Linux): resident memory (current and peak, with the
//! peak reset between phases) and CPU time, for the whole process and per group of threads.
//!
//! Every thread the harness starts is named (`hub-rt`, `relay-rt`, `mock-rt`, `load-rt`,
//! `load-sched`); sqlx names its SQLite connection threads `sqlx-sqlite-worker-N`, which belong
//! to the hub. CPU time per group is summed over the threads alive at both readings of a
//! phase, so a thread that ends during a phase loses its share there (the runtimes keep their
//! threads for the whole run, so this is small); the process total has everything. Other
//! processes (hubs started as `tongban serve`, PostgreSQL's) are read by pid, whole.

use std::collections::BTreeMap;
use std::time::Duration;

/// A group of threads, by what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The hub's runtime (HTTP server, lanes, drivers) and its SQLite connection threads.
    Hub,
    /// The bare relay's runtime.
    Relay,
    /// The mock department systems.
    Mocks,
    /// The load generator (closed-loop tasks, open-loop scheduler and request tasks).
    Load,
    /// Everything else (the main thread, tokio's blocking pools of other runtimes, …).
    Other,
}

impl Group {
    fn of(comm: &str) -> Group {
        if comm.starts_with("hub-rt") || comm.starts_with("sqlx-sqlite") {
            Group::Hub
        } else if comm.starts_with("relay-rt") {
            Group::Relay
        } else if comm.starts_with("mock-rt") {
            Group::Mocks
        } else if comm.starts_with("load-") {
            Group::Load
        } else {
            Group::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Hub => "hub",
            Group::Relay => "relay",
            Group::Mocks => "mocks",
            Group::Load => "load",
            Group::Other => "other",
        }
    }
}

/// CPU time (user + system) of the process and of each of its live threads, at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuReading {
    process: Duration,
    threads: BTreeMap<u32, (Group, Duration)>,
}

/// CPU time spent between two readings.
#[derive(Debug, Clone, Default)]
pub struct CpuSpent {
    pub process: Duration,
    pub groups: BTreeMap<Group, Duration>,
}

impl CpuSpent {
    pub fn group(&self, g: Group) -> Duration {
        self.groups.get(&g).copied().unwrap_or_default()
    }
}

/// Clock ticks per second for /proc's utime and stime: `getconf CLK_TCK`, or Linux's usual 100.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime from a `stat` file's text (fields 14 and 15, after the parenthesised name).
fn stat_cpu(text: &str) -> Option<Duration> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second(),
    ))
}

/// CPU time (user + system) of process `pid`, all its threads: another process, such as a hub
/// the bench started or a PostgreSQL backend. `None` once it has ended.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| stat_cpu(&t))
}

/// Peak resident memory (VmHWM) of process `pid`, in KiB.
pub fn pid_peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

impl CpuReading {
    pub fn now() -> CpuReading {
        let process = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| stat_cpu(&t))
            .unwrap_or_default();
        let mut threads = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let Some(tid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let path = entry.path();
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                let cpu = std::fs::read_to_string(path.join("stat"))
                    .ok()
                    .and_then(|t| stat_cpu(&t));
                if let Some(cpu) = cpu {
                    threads.insert(tid, (Group::of(comm.trim()), cpu));
                }
            }
        }
        CpuReading { process, threads }
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &CpuReading) -> CpuSpent {
        let mut groups = BTreeMap::new();
        for (tid, (group, after)) in &later.threads {
            let before = self.threads.get(tid).map(|(_, d)| *d).unwrap_or_default();
            *groups.entry(*group).or_insert(Duration::ZERO) += after.saturating_sub(before);
        }
        CpuSpent {
            process: later.process.saturating_sub(self.process),
            groups,
        }
    }
}

fn status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory since the start or the last [`reset_peak`], in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Resets the peak (VmHWM) to the current resident size, so the next peak is a phase's own.
/// Returns whether the kernel allowed it (Linux 4.0 and later).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_from_a_stat_line() {
        let line = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let ticks = ticks_per_second();
        let cpu = stat_cpu(line).unwrap();
        assert!((cpu.as_secs_f64() - 300.0 / ticks).abs() < 1e-9);
    }

    #[test]
    fn groups_threads_by_name() {
        assert_eq!(Group::of("hub-rt"), Group::Hub);
        assert_eq!(Group::of("sqlx-sqlite-wor"), Group::Hub);
        assert_eq!(Group::of("relay-rt"), Group::Relay);
        assert_eq!(Group::of("load-sched"), Group::Load);
        assert_eq!(Group::of("tongban-bench"), Group::Other);
    }
}
