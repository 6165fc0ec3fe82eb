//! The hub under test: a temporary copy of the repository's configuration with its HTTP
//! adapters pointed at the mocks and its identity issuer replaced by the bench's, and the real
//! hub (`tongban::hub`: store, catalog seed, API keys, signing key, API, lanes, pollers)
//! serving it on 127.0.0.1 in this process.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tongban::auth::keys::{self, KeyAlg};
use tongban::config::Config;
use tongban::hub;
use tongban::store::NewApiKey;

/// The systems the workload sends to; every other adapter is left out of the copy (the AMQP
/// one needs a broker, and none would get an application).
pub const SOAP_SYSTEM: &str = "sy-scjg-food";
pub const REST_SYSTEM: &str = "ln-rst-card";
/// The bench issuer's JWK Set in the copy, which its `[identity]` names instead of the demo's.
const ISSUER_JWKS: &str = "bench-issuer-jwks.json";
/// Where the repository's adapters point (replaced by the mocks' addresses).
const SOAP_EXAMPLE_BASE: &str = "http://127.0.0.1:9101";
const REST_EXAMPLE_BASE: &str = "http://127.0.0.1:9201";

/// How the copy differs from the repository's configuration.
pub struct Rewrite {
    pub soap_base: String,
    pub rest_base: String,
    /// Keep the adapters' configured rate limits (200/s and 50/s) instead of lifting them.
    pub keep_rate_limits: bool,
    /// Deliveries in flight per adapter, instead of the configured number.
    pub lane_concurrency: Option<u32>,
    /// Each adapter's `max_backlog`, instead of the configured 10,000.
    pub max_backlog: Option<u64>,
    /// The store's connection pool size, instead of hub.toml's.
    pub store_connections: Option<u32>,
    /// The JWK Set of the identity issuer whose user tokens the load sends.
    pub issuer_jwks: String,
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies `repo`'s configuration into a new temporary directory, rewritten as `rewrite` says.
pub fn config_copy(repo: &Path, rewrite: &Rewrite) -> Result<TempDir, String> {
    let dir = TempDir::new("tongban-bench")?;
    let copy = |from: &Path, to: &Path| -> Result<(), String> {
        copy_tree(from, to).map_err(|e| format!("cannot copy {}: {e}", from.display()))
    };
    std::fs::copy(repo.join("hub.toml"), dir.0.join("hub.toml"))
        .map_err(|e| format!("cannot copy hub.toml: {e}"))?;
    for folder in [
        "mappings",
        "schemas",
        "examples/province",
        "examples/calendar",
    ] {
        copy(&repo.join(folder), &dir.0.join(folder))?;
    }
    std::fs::create_dir_all(dir.0.join("adapters")).map_err(|e| e.to_string())?;
    std::fs::write(dir.0.join(ISSUER_JWKS), &rewrite.issuer_jwks)
        .map_err(|e| format!("cannot write {ISSUER_JWKS}: {e}"))?;
    edit(&dir.0.join("hub.toml"), |t| {
        let t = trust_issuer(t, ISSUER_JWKS)?;
        let t = set_key(&t, "shutdown_grace_seconds", "2")?;
        match rewrite.store_connections {
            Some(n) => set_key(&t, "max_connections", &n.to_string()),
            None => Ok(t),
        }
    })?;
    for system in [SOAP_SYSTEM, REST_SYSTEM] {
        let file = format!("adapters/{system}.toml");
        let text = std::fs::read_to_string(repo.join(&file))
            .map_err(|e| format!("cannot read {file}: {e}"))?;
        let mut text = text
            .replace(SOAP_EXAMPLE_BASE, &rewrite.soap_base)
            .replace(REST_EXAMPLE_BASE, &rewrite.rest_base);
        if !rewrite.keep_rate_limits {
            text = set_key(
                &text,
                "rate_limit",
                "{ per_second = 1000000, burst = 1000000 }",
            )?;
        }
        if let Some(n) = rewrite.max_backlog {
            text = set_key(&text, "max_backlog", &n.to_string())?;
        }
        if let Some(n) = rewrite.lane_concurrency {
            text = set_key(&text, "concurrency", &n.to_string())?;
        }
        std::fs::write(dir.0.join(&file), text).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn edit(path: &Path, change: impl FnOnce(&str) -> Result<String, String>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    std::fs::write(path, change(&text)?).map_err(|e| e.to_string())
}

/// `text` with its `key = …` line(s) replaced by `key = value`; there must be one.
fn set_key(text: &str, key: &str, value: &str) -> Result<String, String> {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                found = true;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if found {
        Ok(lines.join("\n") + "\n")
    } else {
        Err(format!("no `{key} =` line to rewrite"))
    }
}

/// Keys of `[identity]` that say where the issuer's keys come from and how they sign.
const ISSUER_KEYS: [&str; 4] = [
    "jwks_file",
    "jwks_url",
    "jwks_refresh_seconds",
    "algorithms",
];

/// `text` (a hub.toml) with its `[identity]` trusting the keys in `jwks_file`, signed with any of
/// the bench issuer's algorithms; issuer, audiences and claim names stay as configured.
fn trust_issuer(text: &str, jwks_file: &str) -> Result<String, String> {
    let mut in_identity = false;
    let mut found = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_identity = trimmed.starts_with("[identity]");
            lines.push(line.to_string());
            if in_identity {
                found = true;
                lines.push(format!("jwks_file = \"{jwks_file}\""));
                lines.push("algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]".to_string());
            }
            continue;
        }
        let replaced = ISSUER_KEYS.iter().any(|key| {
            trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        if !(in_identity && replaced) {
            lines.push(line.to_string());
        }
    }
    if found {
        Ok(lines.join("\n") + "\n")
    } else {
        Err("hub.toml has no [identity] table to point at the bench's issuer".into())
    }
}

/// The hub serving in this process.
pub struct RunningHub {
    pub base: String,
    /// The store, as the hub opened it (password redacted).
    pub store: String,
    /// The supervision feed's last sequence number before the hub served: a subscriber starts
    /// after it, so a store of an earlier run does not send it that run's entries.
    pub feed_head: i64,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), hub::HubError>>,
}

/// The store made ready for hubs to serve from, and the configuration they serve.
pub struct Prepared {
    pub config: Config,
    /// The store, open (the in-process hub serves from it; hubs of their own close it first).
    pub store: tongban::store::Store,
    /// The store's URL with its password redacted.
    pub store_url: String,
    /// The supervision feed's last sequence number before any hub served: a subscriber starts
    /// after it, so a store of an earlier run does not send it that run's entries.
    pub feed_head: i64,
}

/// Loads the configuration in `dir`, opens (and migrates) the store (`store` instead of
/// hub.toml's when given), records `api_keys` in it, seeds the catalog and makes the hub a
/// signing key when its key directory has none (whatever `signing.generate_if_missing` says, so
/// a `--config` made for production runs too): what every hub of the run then shares.
pub async fn prepare(
    dir: &Path,
    store: Option<&str>,
    api_keys: &[NewApiKey],
) -> Result<Prepared, String> {
    let mut config = Config::load(dir).map_err(|e| format!("the copied configuration: {e}"))?;
    if let Some(url) = store {
        config.hub.store.url = url.to_string();
    }
    let store_url = tongban::store::redact(&config.hub.store.url);
    let opened = hub::open_store(&config)
        .await
        .map_err(|e| format!("cannot open the store {store_url}: {}", chain(&e)))?;
    for key in api_keys {
        opened
            .insert_api_key(key)
            .await
            .map_err(|e| format!("cannot record the bench's API keys: {}", chain(&e)))?;
    }
    let feed_head = opened
        .feed_head()
        .await
        .map_err(|e| format!("cannot read the supervision feed's head: {}", chain(&e)))?;
    hub::seed_catalog(&opened, &config)
        .await
        .map_err(|e| format!("cannot seed the catalog: {}", chain(&e)))?;
    let keys_dir = hub::keys_dir(&config);
    if !keys::has_active(&keys_dir).map_err(|e| chain(&e))? {
        keys::generate(&keys_dir, KeyAlg::EdDSA)
            .map_err(|e| format!("cannot make the hub's signing key: {}", chain(&e)))?;
    }
    Ok(Prepared {
        config,
        store: opened,
        store_url,
        feed_head,
    })
}

/// [`prepare`]s the store and serves the hub on 127.0.0.1 on a free port. Call on the hub's
/// runtime: everything the hub spawns runs there.
pub async fn start(
    dir: &Path,
    store: Option<&str>,
    api_keys: &[NewApiKey],
    telemetry: Option<tongban::telemetry::Export>,
) -> Result<RunningHub, String> {
    let Prepared {
        mut config,
        store: opened,
        store_url,
        feed_head,
    } = prepare(dir, store, api_keys).await?;
    config.hub.telemetry = telemetry;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("the hub cannot listen: {e}"))?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        hub::serve(&config, opened, listener, async {
            let _ = rx.await;
        })
        .await
    });
    Ok(RunningHub {
        base,
        store: store_url,
        feed_head,
        stop: Some(tx),
        task,
    })
}

impl RunningHub {
    /// Asks the hub to stop and waits for it, at most `patience`.
    pub async fn stop(mut self, patience: Duration) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(patience, &mut self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("the hub stopped with an error: {}", chain(&e))),
            Ok(Err(e)) => Err(format!("the hub's task failed: {e}")),
            Err(_) => {
                self.task.abort();
                Err(format!("the hub did not stop within {patience:?}"))
            }
        }
    }
}

/// An error and its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_issuer_rewrites_only_the_identity_table() {
        let t = "[identity]\nissuer = \"x\"\njwks_url = \"https://x/jwks\"\njwks_refresh_seconds = 60\n\n[identity.claims]\nalgorithms = \"kept\"\n[signing]\nissuer = \"tongban\"\n";
        let out = trust_issuer(t, "k.json").unwrap();
        assert_eq!(
            out,
            "[identity]\njwks_file = \"k.json\"\nalgorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nissuer = \"x\"\n\n[identity.claims]\nalgorithms = \"kept\"\n[signing]\nissuer = \"tongban\"\n"
        );
        assert!(trust_issuer("[server]\n", "k.json").is_err());
    }

    #[test]
    fn set_key_replaces_the_line() {
        let t = "a = 1\nrate_limit = { per_second = 200, burst = 50 }\nb = 2\n";
        let out = set_key(t, "rate_limit", "{ per_second = 9 }").unwrap();
        assert_eq!(out, "a = 1\nrate_limit = { per_second = 9 }\nb = 2\n");
        assert!(set_key(t, "nope", "1").is_err());
    }
}
