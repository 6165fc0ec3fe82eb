//! The benchmark harness cannot rot: `tongban-bench --quick` (a few seconds: mocks, the hub on
//! SQLite, the bare relay, every kind of phase) must finish and print figures for both the hub
//! and the relay, with identity in the workload (every delivery carried a verifiable assertion),
//! the in-process identity timings, and the supervision latency (case steps seen by the SSE
//! subscriber of the hub's feed). With `--hubs 2` on PostgreSQL it must run two hub processes
//! on one database of its own and print their figures and the server's. Nothing here looks at
//! how fast anything was.

use crate::common;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The quick run takes a few seconds; this only stops a hung run from hanging the suite.
const PATIENCE: Duration = Duration::from_secs(240);

/// The `key=value` fields of the `RESULT` line for `target` and `phase`.
fn result(stdout: &str, target: &str, phase: &str) -> BTreeMap<String, String> {
    let prefix = format!("RESULT target={target} phase={phase} ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` line in:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn figure(fields: &BTreeMap<String, String>, key: &str) -> f64 {
    let v = fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"));
    let x: f64 = v
        .parse()
        .unwrap_or_else(|_| panic!("{key}={v} is not a number"));
    assert!(x.is_finite(), "{key}={v} is not a figure");
    x
}

/// Runs `tongban-bench` with `args` to its end and returns what it printed; fails the test
/// when it fails or hangs.
fn run_bench(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban-bench"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tongban-bench");
    // Read both pipes to their ends, so the bench never blocks on a full one.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tongban-bench {args:?} did not finish in {PATIENCE:?}; stderr:\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(
        status.success(),
        "tongban-bench {args:?} failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn quick_run_completes_with_figures_for_hub_and_relay() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let stdout = run_bench(&["--quick", "--json", json_path.to_str().unwrap()]);

    for target in ["hub", "relay"] {
        let saturation = result(&stdout, target, "saturation");
        assert!(
            figure(&saturation, "ok") > 0.0,
            "{target} accepted nothing: {stdout}"
        );
        figure(&saturation, "ok_per_s");
        figure(&saturation, "p50_ms");
        figure(&saturation, "p99_ms");
        figure(&saturation, "cpu_s_per_10k");
        for rate in ["rate-100", "rate-400"] {
            let fields = result(&stdout, target, rate);
            figure(&fields, "p50_ms");
            figure(&fields, "p99_ms");
            figure(&fields, "p999_ms");
        }
        assert!(figure(&result(&stdout, target, "memory"), "peak_rss_mib") > 0.0);
    }
    let hub = result(&stdout, "hub", "saturation");
    figure(&hub, "delivered_per_s");
    figure(&hub, "delivery_p50_ms");
    figure(&hub, "delivery_p99_ms");
    assert!(stdout.contains("hub/relay"), "no ratio in:\n{stdout}");

    // The supervision latency: printed, and measured on case steps that did reach the feed's
    // subscriber (how long they took is not checked). The relay has no feed.
    assert!(
        stdout.contains("\nsupervision latency: case step posted"),
        "no supervision latency in:\n{stdout}"
    );
    let mut seen = 0.0;
    for phase in ["rate-100", "rate-400", "saturation"] {
        let fields = result(&stdout, "hub", phase);
        let n = figure(&fields, "supervision_seen");
        figure(&fields, "supervision_never_seen");
        if n > 0.0 {
            figure(&fields, "supervision_p50_ms");
            figure(&fields, "supervision_p99_ms");
            figure(&fields, "supervision_max_ms");
            figure(&fields, "supervision_answered_p50_ms");
        }
        seen += n;
        assert_eq!(
            result(&stdout, "relay", phase)
                .get("supervision")
                .map(String::as_str),
            Some("n/a")
        );
    }
    assert!(seen > 0.0, "no case step was seen on the feed:\n{stdout}");

    // The hub's deliveries carried assertions the mocks could verify with the hub's keys.
    assert!(
        stdout.contains("assertions: every delivery carried one"),
        "{stdout}"
    );
    let identity = result(&stdout, "identity", "in-process");
    for key in [
        "verify_rs256_us",
        "verify_es256_us",
        "verify_eddsa_us",
        "sign_eddsa_us",
        "api_key_hash_us",
    ] {
        assert!(figure(&identity, key) > 0.0, "{key}: {identity:?}");
    }

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let targets: Vec<&str> = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["relay", "hub"]);
    assert!(
        json["identity"]["verify_user_token_us"]["RS256"].is_number(),
        "{:#}",
        json["identity"]
    );
}

/// `--hubs 2` on PostgreSQL: two `tongban serve` processes on one database made for the run,
/// the load spread over them; each hub's CPU and the server's figures are printed per phase,
/// and the run's database is gone afterwards.
#[test]
fn quick_run_with_two_hub_processes_on_postgres() {
    let Some(url) = common::postgres_admin_url() else {
        return;
    };
    let stdout = run_bench(&[
        "--quick",
        "--targets",
        "hub",
        "--hubs",
        "2",
        "--store",
        &url,
        "--tongban",
        env!("CARGO_BIN_EXE_tongban"),
    ]);
    let mut each_hub = [0.0f64; 2];
    let mut commits = 0.0;
    for phase in ["rate-100", "rate-400", "saturation"] {
        let fields = result(&stdout, "hub", phase);
        assert_eq!(
            fields.get("hubs").map(String::as_str),
            Some("2"),
            "{fields:?}"
        );
        let cpu: Vec<f64> = fields["hub_cpu_s_each"]
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(cpu.len(), 2, "{fields:?}");
        each_hub[0] += cpu[0];
        each_hub[1] += cpu[1];
        for key in [
            "hub_cpu_s_per_10k",
            "pg_cpu_s_per_10k",
            "bench_cpu_s_per_10k",
            "commits_per_s",
            "wal_bytes_per_app",
            "db_bytes_per_app",
        ] {
            figure(&fields, key);
        }
        commits += figure(&fields, "commits");
    }
    assert!(
        figure(&result(&stdout, "hub", "saturation"), "ok") > 0.0,
        "{stdout}"
    );
    // Both hubs took their share (CPU is counted in ticks of 10 ms: a hub that took none of the
    // load would show 0 over the phases).
    assert!(
        each_hub.iter().all(|cpu| *cpu > 0.0),
        "{each_hub:?}: {stdout}"
    );
    assert!(commits > 0.0, "no commit counted: {stdout}");
    figure(&result(&stdout, "hub", "idle"), "commits_per_s");
    assert!(
        stdout.contains("assertions: every delivery carried one"),
        "{stdout}"
    );

    // The run's database was dropped.
    let at = stdout
        .find("database tongban_bench_hubs_")
        .unwrap_or_else(|| panic!("no database of the run named in:\n{stdout}"));
    let name: String = stdout[at + "database ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let left: i64 = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(left, 0, "{name} was left on the server");
}
