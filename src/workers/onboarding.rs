//! Onboarding requests from submission to live: a bundle is checked (`service::onboarding`),
//! recorded, probed in the background against the system's endpoint, decided by a reviewer,
//! and, approved, written into the configuration directory and activated without a restart
//! (`live`). A bundle that fails its checks is recorded as refused and never reaches the
//! directory; one whose activation fails is taken out of the directory again, and the running
//! configuration stays.
//!
//! The probe applications are synthetic and marked as tests end to end: their ids start with
//! `TEST-`, they are built from the bundle's own application mapping test case, sent only by
//! the probes (never stored as applications, so never counted, delivered by a lane or shared),
//! and their evidence is kept masked with the request.

use super::live::{Live, ReloadError};
use super::probes::{self, Probing};
use crate::auth::assertion::Signer;
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::model::{Decision, OnboardingState, Probe, ProbeOutcome};
use crate::service::inbound::Recorder;
use crate::service::onboarding::{self, Bundle, Checked, ProbeReport};
use crate::service::probe_inbox::PROBE_PREFIX;
use crate::store::{DecisionToRecord, FeedText, OnboardingRecord, ProbeRun, Store, StoreError};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("the bundle has {} problem(s); nothing was activated", .problems.len())]
    Refused {
        id: String,
        problems: Vec<ConfigError>,
    },
    #[error("system {system} already has request {pending} on its way; wait for its decision")]
    Pending { system: String, pending: String },
    #[error("no onboarding request {0}")]
    NotFound(String),
    #[error("request {id} is {}, not awaiting review", .state.as_str())]
    NotAwaitingReview { id: String, state: OnboardingState },
    #[error("a reviewer does not decide on a request of their own department")]
    OwnDepartment,
    #[error("the decision has {} problem(s)", .0.len())]
    Decision(Vec<String>),
    #[error(
        "the approved bundle could not go live; it was taken out again and the running configuration stays: {0}"
    )]
    Activation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Onboarding, over the live configuration.
#[derive(Clone)]
pub struct Onboarding {
    live: Arc<Live>,
    store: Store,
    signer: Arc<Signer>,
    /// Where what systems send goes: the probes listen in its inbox, and seal with its seal.
    recorder: Recorder,
}

impl Onboarding {
    pub fn new(
        live: Arc<Live>,
        store: Store,
        signer: Arc<Signer>,
        recorder: Recorder,
    ) -> Onboarding {
        Onboarding {
            live,
            store,
            signer,
            recorder,
        }
    }

    /// Checks and records a bundle; one that passes is probed in the background.
    pub async fn submit(
        &self,
        bundle: Bundle,
        submitted_by: &str,
    ) -> Result<OnboardingRecord, OnboardingError> {
        let now = clock::now_millis();
        let id = new_request_id(now);
        let live = self.live.config();
        let checked = {
            let bundle = bundle.clone();
            tokio::task::spawn_blocking(move || {
                onboarding::check(&bundle, &live, &std::env::temp_dir())
            })
            .await
            .map_err(|e| OnboardingError::Store(StoreError::Corrupt(e.to_string())))?
        };
        let department = match &checked {
            Ok(checked) => checked.department_uscc.clone(),
            Err(_) => department_of(&self.live.config(), &bundle.system),
        };
        let (state, checks) = match &checked {
            Ok(c) => (
                OnboardingState::Probing,
                json!({ "problems": [], "cases": c.cases }),
            ),
            Err(problems) => (
                OnboardingState::Refused,
                json!({ "problems": problems.iter().map(problem_json).collect::<Vec<_>>() }),
            ),
        };
        let record = OnboardingRecord {
            id: id.clone(),
            system_id: bundle.system.clone(),
            department_uscc: department,
            submitted_by: submitted_by.to_string(),
            submitted_at: now,
            bundle: bundle_json(&bundle).to_string(),
            state,
            checks: checks.to_string(),
            probes: None,
            probed_at: None,
            decided_by: None,
            decided_at: None,
            decision: None,
            reasons: None,
            note: None,
            generation: None,
        };
        let problems = checks["problems"].as_array().map_or(0, Vec::len);
        let feed = announcement(&record, state, json!({ "problems": problems }));
        if !self.store.insert_onboarding(&record, &feed).await? {
            let pending = self
                .store
                .onboardings(Some(&bundle.system), None, 20)
                .await?
                .into_iter()
                .find(|r| r.state.pending())
                .map(|r| r.id)
                .unwrap_or_default();
            return Err(OnboardingError::Pending {
                system: bundle.system,
                pending,
            });
        }
        match checked {
            Err(problems) => Err(OnboardingError::Refused { id, problems }),
            Ok(checked) => {
                self.spawn_probes(record.clone(), bundle, checked);
                Ok(record)
            }
        }
    }

    /// Probes requests left being probed by a previous run of the hub.
    pub async fn resume(&self) -> Result<usize, StoreError> {
        let waiting = self.store.onboardings_probing().await?;
        let count = waiting.len();
        for record in waiting {
            let Some(bundle) = bundle_from_json(&record.system_id, &record.bundle) else {
                continue;
            };
            let live = self.live.config();
            let b = bundle.clone();
            let checked = tokio::task::spawn_blocking(move || {
                onboarding::check(&b, &live, &std::env::temp_dir())
            })
            .await;
            match checked {
                Ok(Ok(checked)) => self.spawn_probes(record, bundle, checked),
                _ => {
                    let why = "the bundle no longer passes its checks against the configuration; submit it again";
                    self.probed(&record, json!({ "error": why }), json!({ "error": why }))
                        .await?;
                }
            }
        }
        Ok(count)
    }

    fn spawn_probes(&self, record: OnboardingRecord, bundle: Bundle, checked: Checked) {
        let this = self.clone();
        tokio::spawn(async move {
            let reports = this.probe(&record, &bundle, checked.config).await;
            let outcomes: Vec<Value> = reports
                .iter()
                .map(|r| json!({ "probe": r.probe, "outcome": r.outcome, "reasons": r.reasons }))
                .collect();
            let written = this
                .probed(
                    &record,
                    json!({ "probes": reports }),
                    json!({ "probes": outcomes }),
                )
                .await;
            if let Err(e) = written {
                tracing::error!(request = %record.id, cause = %e, "cannot record an onboarding request's probes; they run again at the next start");
            }
        });
    }

    /// Records the probes' `report` of a request being probed, now awaiting review, and
    /// announces it with `details`.
    async fn probed(
        &self,
        record: &OnboardingRecord,
        report: Value,
        details: Value,
    ) -> Result<bool, StoreError> {
        let state = OnboardingState::AwaitingReview;
        self.store
            .finish_probing(
                &record.id,
                state,
                &report.to_string(),
                clock::now_millis(),
                &announcement(record, state, details),
            )
            .await
    }

    /// Runs every probe; each records its own failure, none stops the others.
    async fn probe(
        &self,
        record: &OnboardingRecord,
        bundle: &Bundle,
        config: Config,
    ) -> Vec<ProbeReport> {
        let config = Arc::new(config);
        let Some(adapter) = config.adapters.get(&record.system_id) else {
            return Vec::new();
        };
        let mut reports =
            vec![probes::same_source(&self.store, adapter, &config.hub.onboarding).await];
        let Some(sample) = probes::sample_application(&bundle.files, &adapter.outbound.mapping)
        else {
            let why = format!(
                "the bundle has no two-way test case of its application mapping (mappings/tests/{}/<case>.canonical.json) to build the probe application from",
                adapter.outbound.mapping
            );
            for probe in [
                Probe::Identity,
                Probe::SimulatedTransaction,
                Probe::ResultSharing,
            ] {
                reports.push(ProbeReport::new(
                    probe,
                    vec![why.clone()],
                    Vec::new(),
                    "not run".into(),
                ));
            }
            return reports;
        };
        let probing = Probing {
            config: &config,
            adapter,
            sample: &sample,
            prefix: format!("{PROBE_PREFIX}{}-", record.id),
            signer: &self.signer,
            sealer: &self.recorder.sealer,
            limits: &config.hub.onboarding,
        };
        reports.extend(
            probing
                .run(&self.live.config(), &self.store, &self.recorder.probes)
                .await,
        );
        reports
    }

    /// Records a reviewer's decision. A rejection needs a reason for every failing probe (and
    /// at least one reason); an approval needs every probe passed, and activates the bundle.
    pub async fn decide(
        &self,
        id: &str,
        reviewer: &str,
        reviewer_department: Option<&str>,
        decision: Decision,
        reasons: &BTreeMap<String, String>,
        note: Option<&str>,
    ) -> Result<OnboardingRecord, OnboardingError> {
        let record = self
            .store
            .onboarding(id)
            .await?
            .ok_or_else(|| OnboardingError::NotFound(id.to_string()))?;
        if record.state != OnboardingState::AwaitingReview {
            return Err(OnboardingError::NotAwaitingReview {
                id: id.to_string(),
                state: record.state,
            });
        }
        if reviewer_department == Some(record.department_uscc.as_str()) {
            return Err(OnboardingError::OwnDepartment);
        }
        let failing = failing_probes(&record);
        let mut problems = Vec::new();
        for key in reasons.keys() {
            if key.parse::<Probe>().is_err() && key != "bundle" {
                problems.push(format!(
                    "reasons.{key}: a reason is given for a probe ({}) or for `bundle`",
                    Probe::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (key, text) in reasons {
            if text.trim().is_empty() {
                problems.push(format!("reasons.{key}: empty"));
            }
        }
        match decision {
            Decision::Reject => {
                for probe in &failing {
                    if !reasons.contains_key(probe) {
                        problems.push(format!(
                            "reasons.{probe}: the probe failed; a rejection gives a reason for it"
                        ));
                    }
                }
                if reasons.is_empty() && failing.is_empty() {
                    problems.push("reasons: a rejection gives at least one reason".into());
                }
            }
            Decision::Approve => {
                for probe in &failing {
                    problems.push(format!(
                        "probe {probe} failed: a request is approved only when every probe passed"
                    ));
                }
                if record
                    .probes
                    .as_deref()
                    .is_none_or(|p| !p.contains("\"probes\""))
                {
                    problems.push("the request has no probe report to approve on".into());
                }
            }
        }
        if !problems.is_empty() {
            return Err(OnboardingError::Decision(problems));
        }
        let reasons_json = serde_json::to_string(reasons).unwrap_or_else(|_| "{}".into());
        let (state, generation) = match decision {
            Decision::Reject => (OnboardingState::Rejected, None),
            Decision::Approve => {
                let bundle =
                    bundle_from_json(&record.system_id, &record.bundle).ok_or_else(|| {
                        OnboardingError::Activation("the stored bundle is unreadable".into())
                    })?;
                let activated = self.activate(&bundle).await?;
                (OnboardingState::Live, Some(activated as i64))
            }
        };
        let masked: BTreeMap<&String, String> = reasons
            .iter()
            .map(|(k, v)| (k, crate::personal::mask_text(v)))
            .collect();
        let feed = announcement(
            &record,
            state,
            json!({ "decision": {
                "decision": decision,
                "reasons": masked,
                "note": note.map(crate::personal::mask_text),
                "generation": generation,
            } }),
        );
        let decided = self
            .store
            .decide_onboarding(
                &DecisionToRecord {
                    id,
                    decided_by: reviewer,
                    decision,
                    state,
                    reasons: &reasons_json,
                    note,
                    generation,
                    feed: &feed,
                },
                clock::now_millis(),
            )
            .await?;
        if !decided {
            let now = self
                .store
                .onboarding(id)
                .await?
                .map(|r| r.state)
                .unwrap_or(OnboardingState::AwaitingReview);
            return Err(OnboardingError::NotAwaitingReview {
                id: id.to_string(),
                state: now,
            });
        }
        if state == OnboardingState::Live {
            // The probes it passed are the first evidence the ledger judges the system on.
            self.store
                .record_probe_runs(&probe_runs(&record, clock::now_millis()))
                .await?;
        }
        self.store
            .onboarding(id)
            .await?
            .ok_or_else(|| OnboardingError::NotFound(id.to_string()))
    }

    /// Writes the bundle's files into the configuration directory and activates it; on any
    /// failure, puts back what was there.
    async fn activate(&self, bundle: &Bundle) -> Result<u64, OnboardingError> {
        let dir = self.live.config().dir.clone();
        let mut previous: Vec<(std::path::PathBuf, Option<Vec<u8>>)> = Vec::new();
        let mut written = Ok(());
        for (path, bytes) in &bundle.files {
            let target = dir.join(path);
            previous.push((target.clone(), std::fs::read(&target).ok()));
            written = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| write_atomically(&target, bytes));
            if written.is_err() {
                break;
            }
        }
        let outcome = match written {
            Err(e) => Err(format!(
                "cannot write the bundle into the configuration directory: {e}"
            )),
            Ok(()) => match self.live.reload().await {
                Ok(activated) => Ok(activated.generation),
                Err(ReloadError::Config(errors)) => Err(errors.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        match outcome {
            Ok(generation) => Ok(generation),
            Err(why) => {
                for (target, before) in previous {
                    let _ = match before {
                        Some(bytes) => write_atomically(&target, &bytes),
                        None => std::fs::remove_file(&target),
                    };
                }
                Err(OnboardingError::Activation(why))
            }
        }
    }
}

/// The feed entry that tells where a request stands now (`onboarding.<system>.<state>`): the
/// request, its system and department, and `details` (the problems found, the probes' outcomes
/// and reasons, or the decision with its reasons, which are masked: a reviewer's words may
/// name someone).
fn announcement(record: &OnboardingRecord, state: OnboardingState, details: Value) -> FeedText {
    let mut body = json!({
        "request": record.id,
        "system": record.system_id,
        "department": record.department_uscc,
        "state": state,
    });
    if let (Value::Object(body), Value::Object(details)) = (&mut body, details) {
        body.extend(details);
    }
    FeedText {
        body: body.to_string(),
        routing_key: format!("onboarding.{}.{}", record.system_id, state.as_str()),
        department: record.department_uscc.clone(),
        item_code: String::new(),
    }
}

/// The probes of a request that went live, as the ledger keeps them.
fn probe_runs(record: &OnboardingRecord, at: i64) -> Vec<ProbeRun> {
    let report = record
        .probes
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .unwrap_or(Value::Null);
    report["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(ProbeRun {
                run_id: record.id.clone(),
                system_id: record.system_id.clone(),
                probe: p["probe"].as_str()?.parse().ok()?,
                at,
                origin: "onboarding".into(),
                outcome: p["outcome"].as_str()?.parse().ok()?,
                report: p.to_string(),
            })
        })
        .collect()
}

/// Writes a file whole: a reader (a reload, an operator's editor) never sees half of it.
fn write_atomically(target: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let temporary = target.with_file_name(format!(".{name}.onboarding"));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, target)
}

/// The probes that failed, by name.
fn failing_probes(record: &OnboardingRecord) -> Vec<String> {
    let Some(report) = record
        .probes
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return Vec::new();
    };
    report["probes"]
        .as_array()
        .map(|probes| {
            probes
                .iter()
                .filter(|p| p["outcome"] == ProbeOutcome::Failed.as_str())
                .filter_map(|p| p["probe"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The department of a system on the inventory or connected, or "" when it is neither.
fn department_of(config: &Config, system: &str) -> String {
    config
        .systems
        .iter()
        .flatten()
        .find(|s| s.id == system)
        .map(|s| s.department_uscc.clone())
        .or_else(|| {
            config
                .adapters
                .get(system)
                .map(|a| a.department_uscc.clone())
        })
        .unwrap_or_default()
}

fn new_request_id(now_ms: i64) -> String {
    let random: u32 = {
        let mut bytes = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        u32::from_le_bytes(bytes)
    };
    format!("OB-{now_ms:x}-{random:08x}")
}

fn problem_json(e: &ConfigError) -> Value {
    json!({
        "file": e.file.display().to_string(),
        "line": e.line,
        "column": e.column,
        "key": e.key,
        "message": e.message,
    })
}

/// The bundle as stored: text files as text, others in base64.
fn bundle_json(bundle: &Bundle) -> Value {
    let files: serde_json::Map<String, Value> = bundle
        .files
        .iter()
        .map(|(path, bytes)| {
            let value = match std::str::from_utf8(bytes) {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => {
                    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
                }
            };
            (path.clone(), value)
        })
        .collect();
    Value::Object(files)
}

/// A stored bundle, read back.
pub fn bundle_from_json(system: &str, text: &str) -> Option<Bundle> {
    let value: Value = serde_json::from_str(text).ok()?;
    let mut files = BTreeMap::new();
    for (path, content) in value.as_object()? {
        let bytes = match content {
            Value::String(text) => text.as_bytes().to_vec(),
            other => base64::engine::general_purpose::STANDARD
                .decode(other["base64"].as_str()?)
                .ok()?,
        };
        files.insert(path.clone(), bytes);
    }
    Some(Bundle {
        system: system.to_string(),
        files,
    })
}
