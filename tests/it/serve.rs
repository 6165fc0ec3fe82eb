//! `tongban serve` as a newcomer runs it: a fresh directory, SQLite created on start, the example
//! catalog imported, a signing key made, an API key issued with `tongban keys issue` against the
//! same directory while the hub runs, items served over HTTP to that key only, JSON logs without
//! personal data, and a graceful stop on SIGTERM.

use crate::common;

use common::process::{LogFormat, Process};

#[tokio::test]
async fn a_fresh_hub_serves_the_example_catalog_and_stops_gracefully() {
    let dir = common::config_copy();
    let hub = Process::start(dir.path(), LogFormat::Json, "info").await;
    for line in hub.output() {
        let _: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
    }
    let base = hub.base.clone();
    assert!(
        dir.path().join("data/tongban.db").exists(),
        "SQLite created on first start"
    );
    let client = reqwest::Client::new();
    let items_url = format!("{base}/api/v1/catalog/items?department=民政");

    // Without a key the catalog is closed.
    let refused = client.get(&items_url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");

    // The operator issues the platform a key against the same directory while the hub runs:
    // both use the store hub.toml names, so the running hub knows the key at once.
    let key = common::cli_api_key(dir.path(), "platform", None, None);
    let items: serde_json::Value = client
        .get(&items_url)
        .bearer_auth(&key)
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

    // Probes and the hub's public keys need no credential.
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let keys: serde_json::Value = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // One signing key for assertions, one sealing key named by its verification method (the
    // address the hub listens on, since hub.toml names no public address).
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0]["kid"].is_string(), "{keys:?}");
    assert!(
        keys[1]["kid"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/api/v1/seal/controller#z6Mk")),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "only the public half is published: {keys:?}"
    );
    assert!(
        dir.path().join("data/keys").is_dir(),
        "the signing key lives where hub.toml says"
    );

    let log = hub.stop();
    assert!(log.iter().any(|l| l.contains("\"stopped\"")), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("generated the hub's first signing key")),
        "{log:?}"
    );
    assert!(
        log.iter().all(|l| !l.contains(&key)),
        "the key is never logged"
    );
}
