//! 人社 onboards through the hub in the province demo (第五条): the system is on the inventory
//! but not connected when the hub starts; its department submits a bundle (the repository's
//! adapter, mappings and mapping tests for `ln-rst-card`) with the system's own key, the hub
//! probes the system, a 营商局 reviewer decides with a staff token from the demo identity issuer.
//!
//! First the department's system takes any delivery without checking the hub's identity
//! assertion (the simulated 人社 system with `require_assertion = Some(false)`): the identity
//! probe fails and the reviewer rejects, with a reason for each failing probe. Then the
//! department "fixes" it (the same system checking assertions, where the repository's adapter
//! points) and submits again: every probe passes, the reviewer approves, the system is live
//! without a restart.

use crate::systems::{SystemHandle, rst};
use anyhow::Context;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tongban::config::Config;

/// Where the department's first, lax, system listens: not where the repository's adapter
/// points (127.0.0.1:9201), which is the fixed system's.
const LAX_LISTEN: &str = "127.0.0.1:9202";
/// The repository's adapter's endpoint, replaced in the first bundle.
const ADAPTER_BASE: &str = "http://127.0.0.1:9201";

/// The 营商局 reviewer's department, another than 人社's (a reviewer does not decide on their
/// own department's request).
const REVIEWER_DEPARTMENT: &str = "辽宁省营商环境建设局";
const REVIEWER_USCC: &str = "11210000MB1D074154";

/// Longest the demo waits for a request's probes: [onboarding]'s limits in the working copy
/// (10 s for 受理, 60 s for 办结, 30 s for the result) and some.
const PROBING_AT_MOST: Duration = Duration::from_secs(120);

/// The bundle's files, relative to the repository: the system's adapter, and its three
/// mappings with their test cases.
pub fn bundle_paths(repo: &Path) -> anyhow::Result<Vec<String>> {
    let mut paths = vec![format!("adapters/{}.toml", rst::SYSTEM)];
    for mapping in [
        rst::APPLICATION_MAPPING,
        rst::EVENT_MAPPING,
        rst::RESULT_MAPPING,
    ] {
        paths.push(format!("mappings/{mapping}.toml"));
        let folder = format!("mappings/tests/{mapping}");
        let mut cases: Vec<String> = std::fs::read_dir(repo.join(&folder))
            .with_context(|| format!("listing {folder}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| format!("{folder}/{name}"))
            .collect();
        cases.sort();
        paths.extend(cases);
    }
    Ok(paths)
}

/// The bundle as `POST /api/v1/onboarding/requests` takes it, its adapter sending to and
/// polling `base` (`http://host:port`) instead of the repository's endpoint when given.
fn bundle(repo: &Path, base: Option<&str>) -> anyhow::Result<Value> {
    let mut files = Map::new();
    for path in bundle_paths(repo)? {
        let mut text =
            std::fs::read_to_string(repo.join(&path)).with_context(|| format!("reading {path}"))?;
        if let Some(base) = base
            && path.starts_with("adapters/")
        {
            text = text.replace(ADAPTER_BASE, base);
        }
        files.insert(path, Value::String(text));
    }
    Ok(json!({ "system": rst::SYSTEM, "files": files }))
}

/// What the demo's onboarding works with.
pub struct Onboarding {
    pub hub_url: String,
    /// The repository: the department's files, and the demo issuer's key.
    pub repo: PathBuf,
    /// The repository's configuration, which has the 人社 adapter and mappings the simulated
    /// system reads its formats with.
    pub config: Arc<Config>,
    /// `ln-rst-card`'s own API key: the department submits with it.
    pub system_key: String,
    pub admin_key: String,
}

impl Onboarding {
    /// Shows 人社 rejected, then fixed and approved; the handle of its running (fixed) system.
    pub async fn show(&self) -> Option<SystemHandle> {
        println!(
            "人社 onboarding (第五条): {} is on the inventory, not connected",
            rst::SYSTEM
        );
        let reviewer = match crate::demo_issuer::staff_token(
            &self.repo,
            "yszj-reviewer-01",
            &["reviewer"],
            REVIEWER_USCC,
        ) {
            Ok(token) => token,
            Err(e) => {
                println!("  cannot make the 营商局 reviewer's staff token: {e}");
                return None;
            }
        };
        if let Err(e) = self.rejected(&reviewer).await {
            println!("  人社 onboarding, first submission: {e:#}");
        }
        let mut settings = match rst::RstSettings::new(self.config.clone()) {
            Ok(settings) => settings,
            Err(e) => {
                println!("  cannot start the fixed 人社 system: {e:#}");
                return None;
            }
        };
        settings.hub_url = Some(self.hub_url.clone());
        let fixed = match rst::start(settings).await {
            Ok(system) => system,
            Err(e) => {
                println!("  cannot start the fixed 人社 system: {e:#}");
                return None;
            }
        };
        println!(
            "  2. the department fixes its system (now at http://{}, checking the assertion) and submits again",
            fixed.local_addr
        );
        if let Err(e) = self.approved(&reviewer).await {
            println!("  人社 onboarding, second submission: {e:#}");
        }
        Some(fixed)
    }

    /// The lax system: submitted, probed, rejected with reasons. It stops when this returns.
    async fn rejected(&self, reviewer: &str) -> anyhow::Result<()> {
        let mut settings = rst::RstSettings::new(self.config.clone())?;
        settings.listen = LAX_LISTEN.parse()?;
        settings.hub_url = Some(self.hub_url.clone());
        settings.require_assertion = Some(false);
        let _lax = rst::start(settings)
            .await
            .context("starting the lax 人社 system")?;
        let base = format!("http://{LAX_LISTEN}");
        println!(
            "  1. its department submits its bundle for its system at {base}, which takes deliveries without checking the hub's identity assertion"
        );
        let request = self.submit_and_probe(Some(&base)).await?;
        let mut reasons = Map::new();
        for probe in probes(&request) {
            if probe["outcome"] == "failed" {
                let name = probe["probe"].as_str().unwrap_or_default();
                reasons.insert(name.to_string(), Value::String(reason_for(name).into()));
            }
        }
        if reasons.is_empty() {
            // Not what this system should get; the department is asked to submit again all
            // the same, so that the demo goes on.
            println!("  (unexpected: every probe passed)");
            reasons.insert("bundle".into(), "请以校验身份断言的系统重新提交".into());
        }
        let decision = json!({
            "decision": "reject",
            "reasons": reasons,
            "note": "改正后请重新提交",
        });
        self.decide(&request, reviewer, &decision).await
    }

    /// The fixed system: submitted, probed, approved, live.
    async fn approved(&self, reviewer: &str) -> anyhow::Result<()> {
        let request = self.submit_and_probe(None).await?;
        self.decide(&request, reviewer, &json!({ "decision": "approve" }))
            .await?;
        let (_, configuration) = self
            .call("GET", "/api/v1/configuration", &self.admin_key, None)
            .await?;
        let systems: Vec<&str> = configuration["systems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str())
            .collect();
        println!(
            "  live without a restart: the hub runs configuration generation {} (activated {}), systems {}",
            configuration["generation"],
            configuration["activated_at"].as_str().unwrap_or("?"),
            systems.join(", ")
        );
        Ok(())
    }

    /// Submits the bundle, waits for the probes and prints them; the request.
    async fn submit_and_probe(&self, base: Option<&str>) -> anyhow::Result<Value> {
        let bundle = bundle(&self.repo, base)?;
        let (status, submitted) = self
            .call(
                "POST",
                "/api/v1/onboarding/requests",
                &self.system_key,
                Some(&bundle),
            )
            .await?;
        anyhow::ensure!(
            status == 202,
            "the hub answered {status}: {}",
            problem_text(&submitted)
        );
        let id = submitted["id"].as_str().unwrap_or_default().to_string();
        println!(
            "  request {id} for system {}: {} ({} files)",
            rst::SYSTEM,
            submitted["state"].as_str().unwrap_or("?"),
            submitted["paths"].as_array().map_or(0, Vec::len)
        );
        let started = Instant::now();
        let request = loop {
            let (_, request) = self
                .call(
                    "GET",
                    &format!("/api/v1/onboarding/requests/{id}"),
                    &self.system_key,
                    None,
                )
                .await?;
            if request["state"] != "probing" {
                break request;
            }
            anyhow::ensure!(
                started.elapsed() < PROBING_AT_MOST,
                "still probing after {} s",
                PROBING_AT_MOST.as_secs()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        println!(
            "  request {id}: {} after {} s of probes",
            request["state"].as_str().unwrap_or("?"),
            started.elapsed().as_secs()
        );
        for probe in probes(&request) {
            println!(
                "    probe {}: {} ({})",
                probe["probe"].as_str().unwrap_or("?"),
                probe["outcome"].as_str().unwrap_or("?"),
                probe["summary"].as_str().unwrap_or("")
            );
            for reason in probe["reasons"].as_array().into_iter().flatten() {
                println!("      - {}", reason.as_str().unwrap_or(""));
            }
        }
        Ok(request)
    }

    /// Posts the reviewer's decision and prints it as the department reads it.
    async fn decide(
        &self,
        request: &Value,
        reviewer: &str,
        decision: &Value,
    ) -> anyhow::Result<()> {
        let id = request["id"].as_str().unwrap_or_default();
        let (status, decided) = self
            .call(
                "POST",
                &format!("/api/v1/onboarding/requests/{id}/decision"),
                reviewer,
                Some(decision),
            )
            .await?;
        anyhow::ensure!(
            status == 200,
            "the reviewer's decision was answered {status}: {}",
            problem_text(&decided)
        );
        println!(
            "  a 营商局 reviewer ({REVIEWER_DEPARTMENT}) decides: {} → request {id} {}",
            decided["decision"]["decision"].as_str().unwrap_or("?"),
            decided["state"].as_str().unwrap_or("?")
        );
        for (point, reason) in decided["decision"]["reasons"]
            .as_object()
            .into_iter()
            .flatten()
        {
            println!("      {point}: {}", reason.as_str().unwrap_or(""));
        }
        Ok(())
    }

    /// Prints the ledger: the systems the running configuration connects, every system with
    /// whether it is connected and its status on each of the four integrations (as
    /// `tongban systems list` prints it), and 人社's onboarding history.
    pub async fn show_ledger(&self, config_dir: &Path) {
        if let Ok((_, configuration)) = self
            .call("GET", "/api/v1/configuration", &self.admin_key, None)
            .await
        {
            let systems: Vec<String> = configuration["systems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s["id"].as_str().unwrap_or("?"),
                        s["protocol"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            println!(
                "the ledger: configuration generation {} connects {}",
                configuration["generation"],
                systems.join(", ")
            );
        }
        // Judged now rather than at the next round, so that what the demo did shows.
        let _ = self
            .call("POST", "/api/v1/ledger/evaluation", &self.admin_key, None)
            .await;
        match self
            .call("GET", "/api/v1/ledger", &self.admin_key, None)
            .await
        {
            Ok((200, ledger)) => {
                let systems = ledger["systems"].as_array().cloned().unwrap_or_default();
                println!(
                    "  {} system(s), each on the four integrations (same source · identity · e-supervision · result sharing; also: cargo run -- systems list --config {}):",
                    systems.len(),
                    config_dir
                        .strip_prefix(&self.repo)
                        .unwrap_or(config_dir)
                        .display()
                );
                for s in &systems {
                    let statuses: Vec<&str> = [
                        "same_source",
                        "identity",
                        "simulated_transaction",
                        "result_sharing",
                    ]
                    .iter()
                    .map(|i| s["integrations"][i]["status"].as_str().unwrap_or("-"))
                    .collect();
                    let connected = if s["connected"] == true {
                        "connected".to_string()
                    } else {
                        format!("not connected (plan {})", s["plan"].as_str().unwrap_or("-"))
                    };
                    println!(
                        "    {:<20} {} ({}): {connected}; {}",
                        s["id"].as_str().unwrap_or("?"),
                        s["name"].as_str().unwrap_or("-"),
                        s["department"]["name"].as_str().unwrap_or("-"),
                        statuses.join(" · ")
                    );
                }
            }
            Ok((status, problem)) => println!("  the ledger: {status} {problem}"),
            Err(e) => println!("  the ledger: {e:#}"),
        }
        if let Ok((_, history)) = self
            .call(
                "GET",
                &format!("/api/v1/onboarding/requests?system={}", rst::SYSTEM),
                &self.admin_key,
                None,
            )
            .await
        {
            let requests: Vec<String> = history["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{} {}",
                        r["id"].as_str().unwrap_or("?"),
                        r["state"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            println!(
                "  {}'s onboarding requests, newest first: {}",
                rst::SYSTEM,
                requests.join(", ")
            );
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = format!("{}{path}", self.hub_url);
        let request = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        };
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        let answer = request
            .bearer_auth(secret)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }
}

/// The probes of a request.
fn probes(request: &Value) -> impl Iterator<Item = &Value> {
    request["probes"].as_array().into_iter().flatten()
}

/// The reviewer's reason for a failing probe, as the department reads it.
fn reason_for(probe: &str) -> &'static str {
    match probe {
        "same_source" => "申报事项与事项库不一致（未收录或未在用），请按探测报告改正",
        "identity" => {
            "系统未校验统一身份认证断言：无断言和伪造断言的申请均被受理，请改正后重新提交"
        }
        "simulated_transaction" => "模拟办事未按时上报办理环节，请按探测报告改正",
        "result_sharing" => "未按时共享可核验的办理结果，请按探测报告改正",
        _ => "未通过，请按探测报告改正",
    }
}

/// A problem answer's detail and each error, on one line.
fn problem_text(problem: &Value) -> String {
    let mut text = problem["detail"]
        .as_str()
        .map_or_else(|| problem.to_string(), str::to_string);
    for e in problem["errors"].as_array().into_iter().flatten() {
        let at = [&e["path"], &e["pointer"], &e["field"]]
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        text.push_str(&format!("; {at}: {}", e["message"].as_str().unwrap_or("")));
    }
    text
}
