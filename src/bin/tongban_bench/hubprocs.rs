//! Hubs as processes of their own (`--hubs N`): the `tongban` binary's `serve`, N times, on one
//! configuration copy and one store, as hubs are deployed side by side. Each process's CPU is
//! its own in /proc, apart from the load generator's and the mocks', which stay in the bench's
//! process.
//!
//! The bench prepares the store first ([`hubrun::prepare`]: migrations, the bench's API keys,
//! the catalog, the signing key), then starts the hubs one after the other, each on a free port
//! of 127.0.0.1 (`TONGBAN_LISTEN`) and the store (`TONGBAN_STORE_URL`), and waits for each to
//! answer `/readyz` before starting the next: the first makes the sealing key and the holder
//! index secret in the shared directory, the others find them. They all share the signing key,
//! so every hub's assertions verify against any hub's JWK Set.

use crate::hubrun;
use crate::procstat;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tongban::store::NewApiKey;

/// How long a hub may take to answer `/readyz` with 200 after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// One `tongban serve` the bench started.
struct HubProcess {
    child: Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

/// The hubs of the run, serving.
pub struct HubProcesses {
    hubs: Vec<HubProcess>,
    /// The store as the hubs were given it (password redacted).
    pub store: String,
    /// The supervision feed's head before any hub served.
    pub feed_head: i64,
}

/// The `tongban` binary beside this one (the same target directory), or `given`.
pub fn binary(given: Option<&Path>) -> Result<PathBuf, String> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this binary: {e}"))?
            .with_file_name(format!("tongban{}", std::env::consts::EXE_SUFFIX)),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no hub binary at {}: build it beside tongban-bench (`cargo build --release --bin tongban --bin tongban-bench`) or name it with --tongban",
            path.display()
        ))
    }
}

/// A free port on 127.0.0.1, as the kernel hands one out (closed again at once: the hub binds
/// it a moment later).
fn free_address() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}

/// The last `lines` lines of a hub's log, for an error.
fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where hub `i`'s log goes: `log.i` when the caller named a file, else the configuration
/// copy's `hub-i.log`.
fn log_path(dir: &Path, log: Option<&Path>, i: usize) -> PathBuf {
    match log {
        Some(file) => {
            let mut name = file.as_os_str().to_owned();
            name.push(format!(".{i}"));
            PathBuf::from(name)
        }
        None => dir.join(format!("hub-{i}.log")),
    }
}

/// Prepares the store in `dir`'s configuration (`store` instead of hub.toml's when given) and
/// starts `count` hubs of `binary` on it, each ready before the next starts. Their logs go to
/// `log.i` at `RUST_LOG` or info when `log` is given; else to the directory, warnings only.
pub async fn start(
    binary: &Path,
    dir: &Path,
    store: Option<&str>,
    api_keys: &[NewApiKey],
    count: usize,
    log: Option<&Path>,
) -> Result<HubProcesses, String> {
    let prepared = hubrun::prepare(dir, store, api_keys).await?;
    prepared.store.close().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut started = HubProcesses {
        hubs: Vec::new(),
        store: prepared.store_url,
        feed_head: prepared.feed_head,
    };
    for i in 0..count {
        let address = free_address()?;
        let log_file = log_path(dir, log, i);
        let out = std::fs::File::create(&log_file)
            .map_err(|e| format!("cannot create {}: {e}", log_file.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let level = match log {
            Some(_) => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            None => "warn".into(),
        };
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(dir)
            .arg("serve")
            .env("TONGBAN_LISTEN", &address)
            .env("RUST_LOG", level)
            .env_remove("TONGBAN_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            // Ended with the bench whatever happens to it; stopped gently by `stop`.
            .kill_on_drop(true);
        match store {
            Some(url) => command.env("TONGBAN_STORE_URL", url),
            None => command.env_remove("TONGBAN_STORE_URL"),
        };
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("hub {i} ended as it started"))?;
        let mut hub = HubProcess {
            child,
            pid,
            base: format!("http://{address}"),
            log: log_file,
        };
        let ready = wait_ready(&client, &mut hub).await;
        started.hubs.push(hub);
        if let Err(e) = ready {
            let _ = started.stop(Duration::from_secs(5)).await;
            return Err(format!("hub {i}: {e}"));
        }
        eprintln!(
            "[hubs] hub {i} (pid {pid}) ready on {}",
            started.hubs[i].base
        );
    }
    Ok(started)
}

/// Waits until `hub` answers `/readyz` with 200, or says why not.
async fn wait_ready(client: &reqwest::Client, hub: &mut HubProcess) -> Result<(), String> {
    let url = format!("{}/readyz", hub.base);
    let limit = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = hub.child.try_wait() {
            return Err(format!(
                "exited ({status}) before it was ready; the end of {}:\n{}",
                hub.log.display(),
                tail(&hub.log, 20)
            ));
        }
        let last = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= limit {
            return Err(format!(
                "not ready within {READY_WITHIN:?} ({last}); the end of {}:\n{}",
                hub.log.display(),
                tail(&hub.log, 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl HubProcesses {
    /// Each hub's base URL, in the order they started.
    pub fn bases(&self) -> Vec<String> {
        self.hubs.iter().map(|h| h.base.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.hubs.iter().map(|h| h.pid).collect()
    }

    /// Each hub's peak resident memory so far, KiB.
    pub fn peak_rss_kib(&self) -> Vec<Option<u64>> {
        self.hubs
            .iter()
            .map(|h| procstat::pid_peak_rss_kib(h.pid))
            .collect()
    }

    /// Asks every hub to stop (SIGTERM, as an operator's `kill` would) and waits for them, at
    /// most `patience` in all; one still running then is killed. An error names each hub that
    /// did not stop cleanly.
    pub async fn stop(&mut self, patience: Duration) -> Result<(), String> {
        for hub in &self.hubs {
            // Only the processes this run started, by their pid.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(hub.pid.to_string())
                .status()
                .await;
        }
        let limit = tokio::time::Instant::now() + patience;
        let mut problems = Vec::new();
        for (i, hub) in self.hubs.iter_mut().enumerate() {
            match tokio::time::timeout_at(limit, hub.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => problems.push(format!(
                    "hub {i} exited with {status}; the end of {}:\n{}",
                    hub.log.display(),
                    tail(&hub.log, 20)
                )),
                Ok(Err(e)) => problems.push(format!("hub {i}: {e}")),
                Err(_) => {
                    let _ = hub.child.start_kill();
                    let _ = hub.child.wait().await;
                    problems.push(format!("hub {i} did not stop within {patience:?}"));
                }
            }
        }
        self.hubs.clear();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}
