//! The ledger of the four integrations (第十一条): how a system's status on each is judged, from
//! its real traffic over `[ledger] window_days` and the latest run of each conformance probe.
//! Pure: the figures and runs are read before, and the outcome kept after.
//!
//! Each integration is judged on what can fail it, and the worst finding decides:
//!
//! - **same source** (`same_source`): every item the system claims is in the catalog now and in
//!   force: integrated; some: partial; none: not integrated; the latest same-source probe failed
//!   (say, catalog changes do not reach a system that follows the change feed): partial at best;
//! - **unified identity** (`identity`): the latest identity probe (refused without and with a
//!   forged assertion, accepted with a valid one), and the share of deliveries in the window the
//!   system took (each carried the hub's assertion) of those finished (taken or dead letters);
//! - **e-supervision** (`simulated_transaction`): the latest simulated transaction, the share of
//!   applications delivered in the window that the system reported at least one step of, and the
//!   reporting lag (p95 above `max_reporting_lag_minutes`: partial at best);
//! - **result sharing** (`result_sharing`): the latest result-sharing probe, and the share of
//!   cases completed (办结) in the window with a result shared.
//!
//! A probe that failed makes its integration not integrated; one never run, partial at best
//! (nothing has shown the system does it). A share is integrated at or above
//! `integrated_percent`, partial at or above `partial_percent`; with no traffic in the window
//! the probe alone decides. A system that is not connected is not integrated on all four.

use crate::config::{AdapterConfig, LedgerConfig};
use crate::model::{IntegrationStatus, ItemStatus, Probe, ProbeOutcome};
use crate::store::{IntegrationFigures, ProbeRun};
use serde_json::{Value, json};

/// What a system's status is judged on.
pub struct Inputs<'a> {
    /// Its adapter in the running configuration, if it is connected.
    pub adapter: Option<&'a AdapterConfig>,
    /// Each item it claims, with its status in the catalog now (`None`: not in it).
    pub items: Vec<(String, Option<ItemStatus>)>,
    pub figures: IntegrationFigures,
    /// The latest run of each probe.
    pub runs: &'a [ProbeRun],
    pub thresholds: &'a LedgerConfig,
}

/// A system's status on one integration, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub integration: Probe,
    pub status: IntegrationStatus,
    /// Why it is not integrated (empty when it is).
    pub reasons: Vec<String>,
    /// The figures and findings it was judged on (no personal data: counts, codes, times).
    pub evidence: Value,
}

/// Worse first: the order findings combine in.
fn rank(status: IntegrationStatus) -> u8 {
    match status {
        IntegrationStatus::NotIntegrated => 0,
        IntegrationStatus::Partial => 1,
        IntegrationStatus::Integrated => 2,
    }
}

/// Findings on one integration, the worst deciding.
struct Findings {
    status: IntegrationStatus,
    reasons: Vec<String>,
}

impl Findings {
    fn new() -> Findings {
        Findings {
            status: IntegrationStatus::Integrated,
            reasons: Vec::new(),
        }
    }

    fn found(&mut self, status: IntegrationStatus, reason: Option<String>) {
        if rank(status) < rank(self.status) {
            self.status = status;
        }
        if status != IntegrationStatus::Integrated {
            self.reasons.extend(reason);
        }
    }
}

/// The four judgements, in the order of [`Probe::ALL`].
pub fn judge(inputs: &Inputs<'_>) -> Vec<Judgement> {
    if inputs.adapter.is_none() {
        return Probe::ALL
            .iter()
            .map(|&integration| Judgement {
                integration,
                status: IntegrationStatus::NotIntegrated,
                reasons: vec![
                    "not connected: the system has no adapter in the running configuration (it has not onboarded)".into(),
                ],
                evidence: json!({ "connected": false }),
            })
            .collect();
    }
    Probe::ALL
        .iter()
        .map(|&integration| judge_one(inputs, integration))
        .collect()
}

fn judge_one(inputs: &Inputs<'_>, integration: Probe) -> Judgement {
    let t = inputs.thresholds;
    let f = &inputs.figures;
    let mut findings = Findings::new();
    let mut evidence = serde_json::Map::new();
    evidence.insert("window_days".into(), json!(t.window_days));
    if integration == Probe::SameSource {
        let active = inputs
            .items
            .iter()
            .filter(|(_, s)| *s == Some(ItemStatus::Active))
            .count();
        let claimed = inputs.items.len();
        let status = match (active, claimed) {
            (_, 0) | (0, _) => IntegrationStatus::NotIntegrated,
            (a, c) if a == c => IntegrationStatus::Integrated,
            _ => IntegrationStatus::Partial,
        };
        for (code, s) in &inputs.items {
            match s {
                None => findings.found(status, Some(format!("item {code} is not in the catalog"))),
                Some(s) if *s != ItemStatus::Active => findings.found(
                    status,
                    Some(format!("item {code} is {} in the catalog", s.as_str())),
                ),
                Some(_) => {}
            }
        }
        if claimed == 0 {
            findings.found(status, Some("the system claims no item".into()));
        }
        // The probe also sees whether catalog changes reach a system that follows the feed.
        if let Some(run) = inputs
            .runs
            .iter()
            .find(|r| r.probe == Probe::SameSource && r.outcome == ProbeOutcome::Failed)
        {
            findings.found(
                IntegrationStatus::Partial,
                Some(format!(
                    "the latest same_source probe ({}, {}) failed: {}",
                    run.origin,
                    crate::clock::format_millis(run.at),
                    probe_reasons(run)
                )),
            );
        }
        evidence.insert(
            "items".into(),
            json!(
                inputs
                    .items
                    .iter()
                    .map(|(code, s)| json!({ "code": code, "status": s.map(|s| s.as_str()) }))
                    .collect::<Vec<_>>()
            ),
        );
        return Judgement {
            integration,
            status: findings.status,
            reasons: findings.reasons,
            evidence: Value::Object(evidence),
        };
    }

    // The latest probe.
    let run = inputs.runs.iter().find(|r| r.probe == integration);
    match run {
        None => findings.found(
            IntegrationStatus::Partial,
            Some(format!(
                "the {} probe has not run on the system yet",
                integration.as_str()
            )),
        ),
        Some(run) if run.outcome == ProbeOutcome::Failed => findings.found(
            IntegrationStatus::NotIntegrated,
            Some(format!(
                "the latest {} probe ({}, {}) failed: {}",
                integration.as_str(),
                run.origin,
                crate::clock::format_millis(run.at),
                probe_reasons(run)
            )),
        ),
        Some(_) => {}
    }
    evidence.insert(
        "latest_probe".into(),
        run.map_or(Value::Null, |r| {
            json!({
                "run": r.run_id,
                "origin": r.origin,
                "at": crate::clock::format_millis(r.at),
                "outcome": r.outcome,
            })
        }),
    );

    // The share of real traffic.
    let (part, whole, what) = match integration {
        Probe::Identity => (
            f.delivered,
            f.delivered + f.dead,
            "deliveries (each with the hub's assertion) the system took",
        ),
        Probe::SimulatedTransaction => (
            f.reported_applications,
            f.delivered_applications,
            "applications delivered that the system reported on",
        ),
        Probe::ResultSharing => (
            f.completed_with_result,
            f.completed,
            "completed cases (办结) with a shared result",
        ),
        Probe::SameSource => unreachable!("judged above"),
    };
    evidence.insert("part".into(), json!(part));
    evidence.insert("whole".into(), json!(whole));
    evidence.insert("share_of".into(), json!(what));
    if whole > 0 {
        let percent = part * 100 / whole;
        evidence.insert("percent".into(), json!(percent));
        let status = if percent >= i64::from(t.integrated_percent) {
            IntegrationStatus::Integrated
        } else if percent >= i64::from(t.partial_percent) {
            IntegrationStatus::Partial
        } else {
            IntegrationStatus::NotIntegrated
        };
        findings.found(
            status,
            Some(format!(
                "{part} of {whole} {what} in the last {} day(s): {percent}%, below {}%",
                t.window_days,
                if status == IntegrationStatus::Partial {
                    t.integrated_percent
                } else {
                    t.partial_percent
                }
            )),
        );
    }
    if integration == Probe::SimulatedTransaction {
        evidence.insert("lags".into(), json!(f.lags));
        evidence.insert("lag_p95_ms".into(), json!(f.lag_p95_ms));
        let max_ms = i64::from(t.max_reporting_lag_minutes) * 60_000;
        if let Some(p95) = f.lag_p95_ms
            && p95 > max_ms
        {
            findings.found(
                IntegrationStatus::Partial,
                Some(format!(
                    "steps are reported late: the reporting lag's p95 is {}, over {} ([ledger] max_reporting_lag_minutes)",
                    crate::clock::duration_text(p95),
                    crate::clock::duration_text(max_ms)
                )),
            );
        }
    }
    Judgement {
        integration,
        status: findings.status,
        reasons: findings.reasons,
        evidence: Value::Object(evidence),
    }
}

/// Why a probe run failed, as its report says (masked there already).
fn probe_reasons(run: &ProbeRun) -> String {
    let report: Value = serde_json::from_str(&run.report).unwrap_or(Value::Null);
    let reasons: Vec<&str> = report["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if reasons.is_empty() {
        "see its report".into()
    } else {
        reasons.join("; ")
    }
}
