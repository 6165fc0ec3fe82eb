//! The whole province on one machine: the three simulated department systems and the hub on
//! its embedded defaults (SQLite under `data/`, in-process bus), with one application submitted
//! to each system so a newcomer sees deliveries go out and case events come back.
//!
//! ```sh
//! cargo run --example province
//! ```
//!
//! The 公安 system speaks AMQP: it runs when RabbitMQ answers at the `[broker] url` of
//! `hub.toml`, and is reported as skipped otherwise (its application then waits in the outbox).

// The demo uses the systems library whole but not every name it exports.
#[allow(unused_imports)]
#[path = "systems/mod.rs"]
mod systems;

use anyhow::Context;
use serde_json::Value;
use std::time::Duration;
use systems::{ga, rst, scjg};
use tongban::hub;

const PLATFORM_TOKEN: &str = "demo-platform-token";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = systems::repo_dir();
    let config = systems::load_config(&dir)?;
    let hub_url = format!("http://{}", config.hub.server.listen);

    // The department systems first, so the first deliveries find them up.
    let mut scjg_settings = scjg::ScjgSettings::new(config.clone())?;
    scjg_settings.hub_url = Some(hub_url.clone());
    let _scjg = scjg::start(scjg_settings)
        .await
        .context("starting the 市场监管 system")?;
    let _rst = rst::start(rst::RstSettings::new(config.clone())?)
        .await
        .context("starting the 人社 system")?;
    let _ga = match &config.hub.broker {
        Some(url) => {
            let mut settings = ga::GaSettings::new(config.clone(), url.clone())?;
            // The hub does not consume AMQP results yet; the certificates stay with the system.
            settings.results_queue = None;
            match ga::start(settings).await {
                Ok(handle) => {
                    println!("公安 system (AMQP): running");
                    Some(handle)
                }
                Err(e) => {
                    println!("公安 system (AMQP): skipped — {e:#}");
                    None
                }
            }
        }
        None => {
            println!("公安 system (AMQP): skipped — hub.toml names no [broker]");
            None
        }
    };

    let hub_config = tongban::config::Config::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = hub::open_store(&hub_config).await?;
    if let Some(summary) = hub::seed_catalog(&store, &hub_config).await? {
        println!(
            "catalog was empty: imported {} example items",
            summary.created
        );
    }
    let listener = hub::bind(&hub_config).await?;
    println!("hub: {hub_url} (Ctrl-C stops everything)");
    let server = tokio::spawn(async move {
        hub::serve(&hub_config, store, listener, hub::shutdown_signal()).await
    });

    let submitted = submit_examples(&hub_url, &dir).await;
    follow(&hub_url, &submitted).await;
    server.await??;
    Ok(())
}

/// One application per example system, from the repository's examples, without their ids so
/// the hub assigns fresh ones on every run.
async fn submit_examples(hub_url: &str, dir: &std::path::Path) -> Vec<(String, String)> {
    let files = [
        ("市场监管 (SOAP)", "examples/messages/application.json"),
        (
            "人社 (REST JSON)",
            "mappings/tests/rst-card-application/card-online.canonical.json",
        ),
        (
            "公安 (AMQP)",
            "mappings/tests/ga-hukou-application/idcard-renewal.canonical.json",
        ),
    ];
    let client = reqwest::Client::new();
    let mut submitted = Vec::new();
    for (label, file) in files {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            println!("{label}: no example application at {file}");
            continue;
        };
        let Ok(mut body) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(obj) = body.as_object_mut() {
            obj.remove("id");
        }
        let answer = client
            .post(format!("{hub_url}/api/v1/applications"))
            .bearer_auth(PLATFORM_TOKEN)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().as_u16() == 202 => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let id = v["id"].as_str().unwrap_or_default().to_string();
                println!(
                    "{label}: accepted {id} → {}",
                    v["system"].as_str().unwrap_or("?")
                );
                submitted.push((label.to_string(), id));
            }
            Ok(r) => println!(
                "{label}: refused with {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => println!("{label}: could not submit: {e}"),
        }
    }
    submitted
}

/// Prints each application's state as it changes, for a minute.
async fn follow(hub_url: &str, submitted: &[(String, String)]) {
    let client = reqwest::Client::new();
    let mut last: Vec<String> = vec![String::new(); submitted.len()];
    for _ in 0..120 {
        for (i, (label, id)) in submitted.iter().enumerate() {
            let Ok(r) = client
                .get(format!("{hub_url}/api/v1/applications/{id}"))
                .send()
                .await
            else {
                continue;
            };
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let steps: Vec<&str> = v["events"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(|x| x["node"]["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let now = format!(
                "{} {}",
                v["state"].as_str().unwrap_or("?"),
                steps.join(" → ")
            );
            if now != last[i] {
                println!("{label} {id}: {now}");
                last[i] = now;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("see every attempt and event: curl {hub_url}/api/v1/applications/<id>");
}
