//! `tongban serve` as a newcomer runs it: a fresh directory, SQLite created on start, the example
//! catalog imported, items served over HTTP, JSON logs without personal data, and a graceful
//! stop on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_fresh_hub_serves_the_example_catalog_and_stops_gracefully() {
    let dir = common::config_copy();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(dir.path())
        .env_remove("TONGBAN_STORE_URL")
        .env_remove("TONGBAN_LISTEN")
        .env_remove("TONGBAN_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the hub did not start: {log:?}"));
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
        log.push(line);
        if record["fields"]["message"] == "tongban serving" {
            break record["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    assert!(
        dir.path().join("data/tongban.db").exists(),
        "SQLite created on first start"
    );

    let client = reqwest::Client::new();
    let items: serde_json::Value = client
        .get(format!(
            "http://{addr}/api/v1/catalog/items?department=民政"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(items["total"].as_i64().unwrap() >= 3, "{items}");
    assert!(
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["department"]["name"].as_str().unwrap().contains("民政"))
    );
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
    log.extend(lines_rx.try_iter());
    assert!(log.iter().any(|l| l.contains("\"stopped\"")), "{log:?}");
}
