//! The whole province on one machine: the four simulated department systems and the hub on
//! its embedded defaults (SQLite under `data/`, in-process bus), with one application submitted
//! to each system so a newcomer sees deliveries go out and case events come back.
//!
//! 人社 is not connected when the hub starts: it onboards end to end first (see
//! `province/onboarding.rs`): submitted, probed, rejected with reasons, fixed, approved, live.
//! The demo ends with the ledger: what the running configuration connects, and every system on
//! the inventory (the two that never connect too).
//!
//! The hub runs on a working copy of the repository's configuration under `data/province/`
//! (see `province/working_copy.rs`), made anew at every run, so nothing the hub writes there
//! reaches the git tree. It listens where `hub.toml` says, or at `TONGBAN_LISTEN` as
//! `tongban serve` does; the department systems listen where their adapters point.
//!
//! Identity is real here too: the demo issues API keys for the platform, the 市场监管 and 住建
//! systems' webhooks and an administrator (printed, to explore the API with), signs each
//! applicant's token with the demo identity issuer of `examples/identity/`, and every system
//! verifies the hub's identity assertion on what it receives, in the place of its own its
//! mapping has the hub put it.
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

#[path = "identity/demo_issuer.rs"]
mod demo_issuer;

#[path = "province/working_copy.rs"]
mod working_copy;

#[path = "province/onboarding.rs"]
mod onboarding;

use anyhow::Context;
use serde_json::Value;
use std::time::Duration;
use systems::{ga, rst, scjg, zj};
use tongban::auth::{self, Role};
use tongban::hub;
use tongban::store::Store;

/// Issues an API key for the demo into the hub's store; its secret.
async fn demo_key(
    store: &Store,
    role: Role,
    system: Option<&str>,
    label: &str,
) -> anyhow::Result<String> {
    let issued = auth::issue_key(role, system, label, "example:province", None);
    store.insert_api_key(&issued.record).await?;
    Ok(issued.secret)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The department systems read their formats from the repository's configuration (their
    // departments' own files); the hub runs on the working copy.
    let dir = systems::repo_dir();
    let config = systems::load_config(&dir)?;
    let listen: std::net::SocketAddr = match std::env::var("TONGBAN_LISTEN") {
        Ok(addr) if !addr.is_empty() => addr
            .parse()
            .with_context(|| format!("TONGBAN_LISTEN={addr} is not an address"))?,
        _ => config.hub.server.listen,
    };
    // Bound before the working copy is made anew: a demo running already holds the address,
    // and keeps its copy and store.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is the demo running already?)"))?;
    // Without 人社's bundle: it onboards.
    let hub_dir = working_copy::refresh(&dir, &onboarding::bundle_paths(&dir)?)?;
    let mut hub_config = std::sync::Arc::unwrap_or_clone(systems::load_config(&hub_dir)?);
    hub_config.hub.server.listen = listen;
    let hub_url = format!("http://{listen}");

    let store = hub::open_store(&hub_config).await?;
    let platform_key = demo_key(&store, Role::Platform, None, "demo platform").await?;
    let scjg_key = demo_key(
        &store,
        Role::System,
        Some("sy-scjg-food"),
        "demo 市场监管 webhook",
    )
    .await?;
    let zj_key = demo_key(&store, Role::System, Some(zj::SYSTEM), "demo 住建 webhook").await?;
    // 人社's department submits its onboarding bundle with it (a system on the inventory gets
    // its key before it connects), and 人社 asks for the 市场监管 applicant's license below, as
    // another department would.
    let rst_key = demo_key(
        &store,
        Role::System,
        Some(rst::SYSTEM),
        "demo 人社 onboarding and sharing query",
    )
    .await?;
    let admin_key = demo_key(&store, Role::Admin, None, "demo administrator").await?;

    // The department systems first, so the first deliveries find them up. Each verifies the
    // hub's identity assertion with the keys at {hub}/.well-known/jwks.json.
    let mut scjg_settings = scjg::settings(config.clone())?;
    scjg_settings.hub_url = Some(hub_url.clone());
    scjg_settings.hub_key = Some(scjg_key);
    scjg_settings.heartbeat_every = Some(HEARTBEAT_EVERY);
    let scjg = scjg::start(scjg_settings)
        .await
        .context("starting the 市场监管 system")?;
    let mut zj_settings = zj::settings(config.clone())?;
    zj_settings.hub_url = Some(hub_url.clone());
    zj_settings.hub_key = Some(zj_key);
    zj_settings.heartbeat_every = Some(HEARTBEAT_EVERY);
    let _zj = zj::start(zj_settings)
        .await
        .context("starting the 住建 system")?;
    let _ga = match &config.hub.broker {
        Some(url) => {
            let mut settings = ga::GaSettings::new(config.clone(), url.clone())?;
            settings.hub_url = Some(hub_url.clone());
            settings.heartbeat_every = Some(HEARTBEAT_EVERY);
            // The repository's adapter names no results_queue (see README for adding one): the
            // certificates stay with the system.
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

    if let Some(summary) = hub::seed_catalog(&store, &hub_config).await? {
        println!(
            "catalog was empty: imported {} example items",
            summary.created
        );
    }
    println!(
        "hub: {hub_url} on the configuration in {} (Ctrl-C stops everything)",
        working_copy::DIR
    );
    println!(
        "an administrator's API key for this demo (sign in with it at {hub_url}/console, or try: curl -H 'Authorization: Bearer …' {hub_url}/api/v1/audit):\n  {admin_key}"
    );
    let server = tokio::spawn(async move {
        hub::serve(&hub_config, store, listener, hub::shutdown_signal()).await
    });

    let onboarding = onboarding::Onboarding {
        hub_url: hub_url.clone(),
        repo: dir.clone(),
        config: config.clone(),
        system_key: rst_key.clone(),
        admin_key: admin_key.clone(),
    };
    // 人社's fixed system, kept running: once it is live, the hub delivers 人社's application
    // below to it.
    let _rst = onboarding.show().await;

    let mut submitted = submit_examples(&hub_url, &dir, &platform_key, &EXAMPLES).await;
    // Once its first application has arrived, 市场监管 skips 审查 in the cases that arrive from
    // then on and gets one more application: the first case walks in full and raises nothing,
    // the second goes straight to 决定, which the supervision rules flag (out of order); the
    // alerts show in the feed and below.
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while scjg.control.stats().accepted == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if arrived.is_err() {
        println!(
            "市场监管: its first application has not arrived after 30 s; it may skip 审查 too"
        );
    }
    scjg.control.set_skip_steps(true);
    submitted.extend(submit_examples(&hub_url, &dir, &platform_key, &SKIPPING).await);
    follow(&hub_url, &submitted, &platform_key).await;
    show_sharing(&hub_url, &dir, &platform_key, &rst_key).await;
    show_alerts(&hub_url, &admin_key).await;
    onboarding.show_ledger(&hub_dir).await;
    server.await??;
    Ok(())
}

/// How often the 市场监管, 公安 and 住建 systems tell the hub they are up (人社 is polled, which
/// counts).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);

/// One application per example system, from the repository's examples (submitted without
/// their ids, so the hub assigns fresh ones on every run).
const EXAMPLES: [(&str, &str); 4] = [
    ("市场监管 (SOAP)", "examples/messages/application.json"),
    (
        "人社 (REST JSON)",
        "mappings/tests/rst-card-application/card-online.canonical.json",
    ),
    (
        "公安 (AMQP)",
        "mappings/tests/ga-hukou-application/idcard-renewal.canonical.json",
    ),
    (
        "住建 (SOAP 1.2)",
        "mappings/tests/zj-permit-application/new-permit.canonical.json",
    ),
];

/// 市场监管's second application, whose case skips 审查.
const SKIPPING: [(&str, &str); 1] = [(
    "市场监管 (SOAP, 审查 skipped)",
    "examples/messages/application.json",
)];

async fn submit_examples(
    hub_url: &str,
    dir: &std::path::Path,
    platform_key: &str,
    files: &[(&str, &str)],
) -> Vec<(String, String)> {
    let client = reqwest::Client::new();
    let mut submitted = Vec::new();
    for &(label, file) in files {
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
        // The applicant logged in at the unified identity system with real-name level 3.
        let user_token = match demo_issuer::user_token(dir, &body, 3) {
            Ok(token) => token,
            Err(e) => {
                println!("{label}: cannot make the applicant's token: {e}");
                continue;
            }
        };
        let answer = client
            .post(format!("{hub_url}/api/v1/applications"))
            .bearer_auth(platform_key)
            .header("Tongban-User-Token", user_token)
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
async fn follow(hub_url: &str, submitted: &[(String, String)], platform_key: &str) {
    let client = reqwest::Client::new();
    let mut last: Vec<String> = vec![String::new(); submitted.len()];
    for _ in 0..120 {
        for (i, (label, id)) in submitted.iter().enumerate() {
            let Ok(r) = client
                .get(format!("{hub_url}/api/v1/applications/{id}"))
                .bearer_auth(platform_key)
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
    println!(
        "see every attempt and event: curl -H 'Authorization: Bearer <key>' {hub_url}/api/v1/applications/<id>"
    );
}

/// Result sharing, as a stranger would try it: 人社 asks for the 市场监管 applicant's food
/// license (license-check); the sealed result it gets is verified here against the hub's
/// published key and status list, saved for `tongban results verify`, and the applicant's
/// access log (read by the platform with the applicant's token) shows the access.
async fn show_sharing(hub_url: &str, dir: &std::path::Path, platform_key: &str, rst_key: &str) {
    use tongban::seal::credential::{self, StatusFinding, StatusPurpose};
    let client = reqwest::Client::new();
    let Ok(application) = std::fs::read_to_string(dir.join("examples/messages/application.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
    else {
        return;
    };
    let applicant = &application["applicant"];
    let query = serde_json::json!({
        "holder": { "id_type": applicant["id_type"], "id_number": applicant["id_number"] },
        "license_type": "11100000000013338W024",
        "purpose": "license-check",
    });
    let get_json = |url: String, key: Option<&str>| {
        let request = client.get(url);
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        async move {
            let answer = request.send().await.map_err(|e| e.to_string())?;
            answer.json::<Value>().await.map_err(|e| e.to_string())
        }
    };
    let answer = client
        .post(format!("{hub_url}/api/v1/sharing/queries"))
        .bearer_auth(rst_key)
        .json(&query)
        .send()
        .await;
    let shared: Value = match answer {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => {
            println!("result sharing: the query failed: {e}");
            return;
        }
    };
    let Some(sealed) = shared["results"].get(0).map(|r| r["credential"].clone()) else {
        println!("result sharing: no sealed food license yet for the 市场监管 applicant: {shared}");
        return;
    };
    let controller = get_json(format!("{hub_url}/api/v1/seal/controller"), None).await;
    let Ok(controller) = controller else {
        return;
    };
    let mut lists = std::collections::BTreeMap::new();
    for purpose in StatusPurpose::ALL {
        if let Some((url, _)) = credential::status_entry(&sealed, purpose) {
            lists.insert(url.clone(), get_json(url, None).await);
        }
    }
    let fetch = |url: &str| lists.get(url).cloned().unwrap_or(Err("not fetched".into()));
    let text = |pointer: &str| {
        sealed
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
    };
    match tongban::seal::verify_with_controller(&sealed, &controller) {
        Ok(method) => {
            let revoked =
                credential::status_finding(&sealed, StatusPurpose::Revocation, &controller, &fetch);
            println!(
                "result sharing: 人社 got the sealed {} {} of the 市场监管 applicant; the seal verifies (eddsa-jcs-2022, key {}), issuer {} ({}), {}",
                text("/credentialSubject/license/name"),
                text("/credentialSubject/license/id"),
                method.rsplit('#').next().unwrap_or("?"),
                text("/issuer/name"),
                text("/issuer/id"),
                match revoked {
                    StatusFinding::Clear => "not revoked".to_string(),
                    StatusFinding::Set => "REVOKED".to_string(),
                    other => format!("status {other:?}"),
                }
            );
        }
        Err(e) => println!("result sharing: the seal does not verify: {e}"),
    }
    let saved = dir.join("data/demo-sealed-result.json");
    if std::fs::write(
        &saved,
        serde_json::to_vec_pretty(&sealed).unwrap_or_default(),
    )
    .is_ok()
    {
        println!(
            "  verify it yourself: cargo run -- results verify {}",
            saved.display()
        );
    }
    let Ok(user_token) = demo_issuer::user_token(dir, &application, 3) else {
        return;
    };
    let log = client
        .get(format!("{hub_url}/api/v1/me/accesses?limit=1"))
        .bearer_auth(platform_key)
        .header("Tongban-User-Token", user_token)
        .send()
        .await;
    if let Ok(log) = log {
        let log: Value = log.json().await.unwrap_or(Value::Null);
        if let Some(a) = log["accesses"].get(0) {
            println!(
                "  the applicant's access log: {} {} ({}, system {}) read {} for {} ({})",
                a["at"].as_str().unwrap_or("?"),
                a["department"]["name"].as_str().unwrap_or("?"),
                a["department"]["uscc"].as_str().unwrap_or("?"),
                a["system"].as_str().unwrap_or("?"),
                a["license_id"].as_str().unwrap_or("?"),
                a["purpose"].as_str().unwrap_or("?"),
                a["purpose_text"].as_str().unwrap_or("")
            );
        }
    }
}

/// Prints the supervision alerts the run raised, as a supervisor would see them.
async fn show_alerts(hub_url: &str, admin_key: &str) {
    let answer = reqwest::Client::new()
        .get(format!("{hub_url}/api/v1/supervision/alerts?limit=20"))
        .bearer_auth(admin_key)
        .send()
        .await;
    let Ok(answer) = answer else {
        return;
    };
    let v: Value = answer.json().await.unwrap_or(Value::Null);
    let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
    println!("supervision alerts: {}", alerts.len());
    for a in alerts {
        println!(
            "  {} {} {} {}: {}",
            a["level"].as_str().unwrap_or("?"),
            a["rule"].as_str().unwrap_or("?"),
            a["system"]
                .as_str()
                .or(a["system_id"].as_str())
                .unwrap_or("?"),
            a["application_id"].as_str().unwrap_or(""),
            a["evidence"].as_str().unwrap_or("")
        );
    }
    println!(
        "follow the live feed: curl -N -H 'Authorization: Bearer <admin key>' {hub_url}/api/v1/supervision/stream"
    );
}
