//! The conformance probes that talk to a department system (第五条, 第十一条): unified identity,
//! the simulated transaction (模拟办事: e-supervision) and result sharing. The same-source probe
//! needs no system and lives in `service::onboarding`.
//!
//! A probe application is synthetic and visibly a test end to end: built from the bundle's own
//! application mapping test case, its id starts with `TEST-<request>-`, it is sent by the probe
//! alone (never stored as an application, so never counted, delivered by a lane or shared), and
//! what the system reports about it reaches the probe through the [`ProbeInbox`], never the
//! event or result tables. A probe that meets a hanging system stops at its limit and says so;
//! each probe records its own failure and none stops the others. Evidence (deliveries, answers,
//! the steps reported, timings) is kept masked.

use super::lanes::acknowledged;
use crate::adapters::{Adapter, DeliveryError, Driver, Outgoing};
use crate::auth::assertion::{Identity, Signer};
use crate::clock::{self, format_millis};
use crate::config::{AdapterConfig, Config, InboundMode, OnboardingConfig};
use crate::ids::{mask_id, mask_name};
use crate::mapping::Mapping;
use crate::model::{
    ApplicantKind, ApplicationState, CaseEvent, IdType, MessageKind, NodeName, NodeResult, Probe,
    parse_time,
};
use crate::personal::PersonalValues;
use crate::routing;
use crate::service::onboarding::{self, ProbeReport};
use crate::service::probe_inbox::{Content, ProbeInbox, ProbeMessage};
use crate::service::results;
use crate::service::sealing::Sealer;
use crate::store::{ApplicationRecord, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the probes of one request work with: the configuration that would go live (with the
/// system's adapter), the application to send, and the hub's keys.
pub struct Probing<'a> {
    pub config: &'a Arc<Config>,
    pub adapter: &'a AdapterConfig,
    /// The canonical probe application (its id is replaced for each delivery).
    pub sample: &'a Value,
    /// `TEST-<request>-`.
    pub prefix: String,
    pub signer: &'a Signer,
    pub sealer: &'a Sealer,
    pub limits: &'a OnboardingConfig,
}

/// How one delivery of a probe application went.
struct Sent {
    outcome: &'static str,
    status: Option<u16>,
    detail: String,
    took_ms: i64,
}

/// Same-source items, a catalog that cannot be read failing the probe; a system following the
/// change feed has `limits.accept_within_seconds` to take what it has not.
pub async fn same_source(
    store: &Store,
    adapter: &AdapterConfig,
    limits: &OnboardingConfig,
) -> ProbeReport {
    let started = Instant::now();
    let patience = Duration::from_secs(limits.accept_within_seconds);
    let mut report = match onboarding::same_source(store, adapter, patience).await {
        Ok(report) => report,
        Err(e) => ProbeReport::new(
            Probe::SameSource,
            vec![format!("the catalog could not be read: {e}")],
            Vec::new(),
            "not run to the end".into(),
        ),
    };
    report.took_ms = started.elapsed().as_millis() as i64;
    report
}

impl Probing<'_> {
    /// The probes that talk to the system, in order: identity, then the simulated transaction
    /// and its result. Listens in `inbox` before the first delivery (a fast system may report
    /// at once), and reads the system's feeds itself when the `running` configuration does not.
    pub async fn run(
        &self,
        running: &Config,
        store: &Store,
        inbox: &ProbeInbox,
    ) -> Vec<ProbeReport> {
        let mut listening = inbox.listen(&self.adapter.id, &self.prefix, self.config.clone());
        let (reads, _poller) = match read_inbound(running, self.adapter, store, inbox) {
            Ok(poller) => (Ok(()), poller),
            Err(why) => (Err(why), None),
        };
        let started = Instant::now();
        let mut identity = self.identity(&mut listening.messages, &reads).await;
        identity.took_ms = started.elapsed().as_millis() as i64;
        let started = Instant::now();
        let (mut transaction, mut sharing) = self.transaction(&mut listening.messages, reads).await;
        transaction.took_ms = started.elapsed().as_millis() as i64;
        sharing.took_ms = transaction.took_ms;
        vec![identity, transaction, sharing]
    }

    /// The system's application mapping and its acknowledgement's, or why there are none.
    fn mappings(&self) -> Result<(&Arc<Mapping>, Option<&Arc<Mapping>>), String> {
        let mapping = self
            .config
            .mappings
            .get(&self.adapter.outbound.mapping)
            .ok_or_else(|| format!("mapping {} is not loaded", self.adapter.outbound.mapping))?;
        let response = self
            .adapter
            .outbound
            .response_mapping
            .as_ref()
            .and_then(|name| self.config.mappings.get(name));
        Ok((mapping, response))
    }

    fn driver(&self) -> Result<Driver, String> {
        Driver::new(self.adapter, self.config.hub.broker.as_deref())
            .map_err(|e| format!("cannot reach the system: {e}"))
    }

    /// A valid assertion for `application_id`.
    fn assertion(&self, application_id: &str) -> Result<String, String> {
        self.signer
            .assertion(
                &self.adapter.id,
                application_id,
                &format!("{application_id}#1"),
                &probe_identity(self.sample, &self.prefix),
            )
            .map_err(|e| format!("the hub cannot sign an assertion: {e}"))
    }

    /// Delivers the probe application as `application_id` with `assertion`, as a lane would.
    async fn send(
        &self,
        driver: &Driver,
        application_id: &str,
        assertion: Option<&str>,
    ) -> Result<Sent, String> {
        let (mapping, response) = self.mappings()?;
        let mut canonical = self.sample.clone();
        canonical["id"] = Value::String(application_id.to_string());
        let body = routing::legacy_message(
            self.adapter,
            mapping,
            application_id,
            &canonical,
            assertion,
            None,
        )
        .map_err(|errors| {
            format!(
                "the probe application does not map: {}",
                errors
                    .iter()
                    .map(|e| format!("{} at {}: {}", e.field, e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let personal = PersonalValues::of_application_text(&self.sample.to_string());
        let started = Instant::now();
        let sent = driver
            .deliver(&Outgoing {
                application_id,
                body: &body,
                content_type: &mapping.content_type(),
                assertion,
                traceparent: None,
            })
            .await
            .and_then(|delivered| acknowledged(response.map(|m| m.as_ref()), delivered));
        let took_ms = started.elapsed().as_millis() as i64;
        let (outcome, status, detail) = match &sent {
            Ok(d) => ("accepted", d.status, String::new()),
            Err(DeliveryError::Permanent { reason, status }) => {
                ("refused", *status, personal.mask_text(reason))
            }
            Err(DeliveryError::Retryable { reason, status, .. }) => match status {
                // An answer that says "no, and do not ask again" over a 4xx is a refusal;
                // a 401/403 is the refusal the identity probe looks for.
                Some(s) if (400..500).contains(s) => {
                    ("refused", *status, personal.mask_text(reason))
                }
                _ => ("unanswered", *status, personal.mask_text(reason)),
            },
        };
        Ok(Sent {
            outcome,
            status,
            detail,
            took_ms,
        })
    }

    /// Unified identity: three deliveries of the probe application, without the assertion,
    /// with a forged one and with a valid one; the system must refuse the first two and accept
    /// the third.
    ///
    /// Over AMQP a system answers nothing: what it reports within
    /// `[onboarding] accept_within_seconds` says. A delivery it took is one it reports a step
    /// of that is not a refusal (不受理, 不予受理); one it refused, one it reports nothing of or
    /// only a refusal.
    async fn identity(
        &self,
        messages: &mut mpsc::Receiver<ProbeMessage>,
        reads_inbound: &Result<(), String>,
    ) -> ProbeReport {
        let fail = |why: String| {
            ProbeReport::new(Probe::Identity, vec![why], Vec::new(), "not run".into())
        };
        let driver = match self.driver() {
            Ok(driver) => driver,
            Err(why) => return fail(why),
        };
        let queued = matches!(driver, Driver::Amqp(_));
        if queued && let Err(why) = reads_inbound {
            return fail(format!(
                "a system reached over AMQP is seen refusing or taking a delivery by what it reports, and {why}"
            ));
        }
        let mut sent_all = Vec::new();
        for (label, expect_accepted) in [
            ("without_assertion", false),
            ("forged_assertion", false),
            ("valid_assertion", true),
        ] {
            let application_id = format!("{}{}", self.prefix, label.replace('_', "-"));
            let assertion = match label {
                "without_assertion" => None,
                _ => match self.assertion(&application_id) {
                    Ok(token) if label == "forged_assertion" => Some(forged(&token)),
                    Ok(token) => Some(token),
                    Err(why) => return fail(why),
                },
            };
            let sent = match self
                .send(&driver, &application_id, assertion.as_deref())
                .await
            {
                Ok(sent) => sent,
                Err(why) => return fail(why),
            };
            sent_all.push((label, expect_accepted, application_id, sent));
        }
        if queued {
            self.read_answers(messages, &mut sent_all).await;
        }
        let mut reasons = Vec::new();
        let mut evidence = Vec::new();
        for (label, expect_accepted, application_id, sent) in sent_all {
            evidence.push(json!({
                "delivery": label,
                "application_id": application_id,
                "expected": if expect_accepted { "accepted" } else { "refused" },
                "outcome": sent.outcome,
                "status": sent.status,
                "detail": sent.detail,
                "took_ms": sent.took_ms,
            }));
            let delivery = label.replace('_', " ");
            match (sent.outcome, expect_accepted) {
                ("accepted", true) | ("refused", false) => {}
                ("unanswered", _) => reasons.push(format!(
                    "the delivery {delivery} was not answered: {}",
                    sent.detail
                )),
                ("accepted", false) => reasons.push(format!(
                    "the system accepted a delivery {delivery}: it does not check the hub's identity assertion"
                )),
                _ => reasons.push(format!(
                    "the system refused a delivery {delivery}: {}",
                    sent.detail
                )),
            }
        }
        let summary = if reasons.is_empty() {
            "refused without and with a forged assertion, accepted with a valid one".to_string()
        } else {
            format!(
                "{} of 3 deliveries did not go as unified identity requires",
                reasons.len()
            )
        };
        ProbeReport::new(Probe::Identity, reasons, evidence, summary)
    }

    /// What a system reached over a queue did with each delivery, read from what it reports
    /// about them within `accept_within_seconds`: a step that is not a refusal means it took
    /// the delivery, a refusal or nothing that it refused it.
    async fn read_answers(
        &self,
        messages: &mut mpsc::Receiver<ProbeMessage>,
        sent: &mut [(&str, bool, String, Sent)],
    ) {
        let started = Instant::now();
        let until = clock::now_millis() + seconds(self.limits.accept_within_seconds);
        let mut reported: std::collections::HashMap<String, Vec<NodeResult>> =
            std::collections::HashMap::new();
        while let Some(message) = receive_by(messages, until).await {
            if let (MessageKind::CaseEvent, Content::Mapped(canonical)) =
                (message.kind, &message.content)
                && let Ok(event) = CaseEvent::from_json(canonical)
            {
                reported
                    .entry(event.application_id)
                    .or_default()
                    .push(event.node.result);
            }
        }
        let waited = started.elapsed().as_millis() as i64;
        for (_, _, application_id, delivery) in sent.iter_mut() {
            if delivery.outcome != "accepted" {
                // The broker did not take it: that is what the evidence says.
                continue;
            }
            let results = reported.get(application_id.as_str());
            let took = results.is_some_and(|r| {
                r.iter()
                    .any(|n| !matches!(n, NodeResult::NotAccepted | NodeResult::Rejected))
            });
            delivery.took_ms = waited;
            (delivery.outcome, delivery.detail) = match results {
                _ if took => ("accepted", "it reported a step of it".to_string()),
                Some(_) => ("refused", "it reported it as not accepted".to_string()),
                None => (
                    "refused",
                    format!(
                        "it reported nothing of it within {}",
                        clock::duration_text(seconds(self.limits.accept_within_seconds))
                    ),
                ),
            };
        }
    }

    /// The simulated transaction (模拟办事) and the result it shares: the probe application is
    /// delivered with a valid assertion, and the system must report 受理 and the following
    /// steps up to 办结 within `[onboarding]`'s limits (e-supervision), then a result that
    /// reads, answers the application and can be sealed (result sharing). Two reports.
    async fn transaction(
        &self,
        messages: &mut mpsc::Receiver<ProbeMessage>,
        reads_inbound: Result<(), String>,
    ) -> (ProbeReport, ProbeReport) {
        let application_id = format!("{}transaction", self.prefix);
        let not_shared = |why: &str| {
            ProbeReport::new(
                Probe::ResultSharing,
                vec![why.to_string()],
                Vec::new(),
                "not run".into(),
            )
        };
        let fail = |why: String| {
            (
                ProbeReport::new(
                    Probe::SimulatedTransaction,
                    vec![why],
                    Vec::new(),
                    "not run".into(),
                ),
                not_shared("no simulated transaction reached the system, so no result was due"),
            )
        };
        if let Err(why) = reads_inbound {
            return fail(why);
        }
        let driver = match self.driver() {
            Ok(driver) => driver,
            Err(why) => return fail(why),
        };
        let assertion = match self.assertion(&application_id) {
            Ok(token) => token,
            Err(why) => return fail(why),
        };
        let sent_at = clock::now_millis();
        let sent = match self.send(&driver, &application_id, Some(&assertion)).await {
            Ok(sent) => sent,
            Err(why) => return fail(why),
        };
        let delivery = json!({
            "delivery": "simulated_application",
            "application_id": application_id,
            "outcome": sent.outcome,
            "status": sent.status,
            "detail": sent.detail,
            "took_ms": sent.took_ms,
        });
        if sent.outcome != "accepted" {
            let (mut report, sharing) = fail(format!(
                "the system did not take the simulated application ({}): {}",
                sent.outcome, sent.detail
            ));
            report.evidence.push(delivery);
            return (report, sharing);
        }

        let limits = self.limits;
        let accept_by = sent_at + seconds(limits.accept_within_seconds);
        let complete_by = sent_at + seconds(limits.complete_within_seconds);
        let tolerance = i64::from(
            self.config
                .hub
                .supervision
                .thresholds
                .clock_tolerance_minutes,
        ) * 60_000;
        let mut steps: Vec<Step> = Vec::new();
        let mut reasons = Vec::new();
        let mut evidence = vec![delivery];
        let mut results: Vec<(i64, Content)> = Vec::new();
        let mut completion: Option<(CaseEvent, i64)> = None;
        let mut other = 0usize;
        loop {
            let deadline = match (&completion, steps.iter().any(Step::is_acceptance)) {
                (Some(_), _) => break,
                (None, false) => accept_by,
                (None, true) => complete_by,
            };
            let Some(message) = receive_by(messages, deadline).await else {
                break;
            };
            match (message.kind, message.content) {
                (MessageKind::Result, content) => {
                    if about(&content, &application_id) {
                        results.push((message.arrived_ms, content));
                    } else {
                        other += 1;
                    }
                }
                (MessageKind::CaseEvent, Content::Unmapped(errors)) => {
                    reasons.push(format!("a case event did not map: {}", errors.join("; ")));
                    evidence.push(json!({ "case_event": "unmapped", "errors": errors, "arrived_at": format_millis(message.arrived_ms) }));
                }
                (MessageKind::CaseEvent, Content::Mapped(canonical)) => {
                    if canonical["application_id"] != application_id.as_str() {
                        other += 1;
                        continue;
                    }
                    let step = self.read_step(&canonical, message.arrived_ms, sent_at, tolerance);
                    reasons.extend(step.problems.iter().cloned());
                    evidence.push(step.evidence());
                    if let Some(event) = &step.event
                        && event.node.name == NodeName::Completion
                        && completion.is_none()
                    {
                        completion = Some((event.clone(), message.arrived_ms));
                    }
                    steps.push(step);
                }
            }
        }

        let acceptance = steps.iter().find(|s| s.is_acceptance());
        match acceptance {
            None => reasons.push(format!(
                "no 受理 (acceptance) was reported within {} of the delivery ([onboarding] accept_within_seconds)",
                clock::duration_text(seconds(limits.accept_within_seconds))
            )),
            Some(step) if step.arrived_ms > accept_by => reasons.push(format!(
                "受理 was reported {} after the delivery, later than {} ([onboarding] accept_within_seconds)",
                clock::duration_text(step.arrived_ms - sent_at),
                clock::duration_text(seconds(limits.accept_within_seconds))
            )),
            Some(_) => {}
        }
        if acceptance.is_some() && completion.is_none() {
            reasons.push(format!(
                "no 办结 (completion) was reported within {} of the delivery ([onboarding] complete_within_seconds)",
                clock::duration_text(seconds(limits.complete_within_seconds))
            ));
        }
        // The first step that happened is the acceptance: a case is received before it is
        // worked on.
        if let Some(first) = steps
            .iter()
            .filter_map(|s| s.event.as_ref())
            .min_by_key(|e| e.occurred_at)
            && first.node.name != NodeName::Acceptance
        {
            reasons.push(format!(
                "the first step reported happened before 受理: {}",
                first.node.name.as_str()
            ));
        }
        if other > 0 {
            evidence.push(json!({ "messages_about_other_probe_deliveries": other }));
        }
        let lag = steps
            .iter()
            .filter_map(|s| s.lag_ms)
            .max()
            .map(clock::duration_text);
        let summary = match (&acceptance, &completion) {
            (Some(accepted), Some((_, completed_at))) if reasons.is_empty() => format!(
                "受理 after {}, 办结 after {}, {} step(s) reported; reporting lag at most {}",
                clock::duration_text(accepted.arrived_ms - sent_at),
                clock::duration_text(completed_at - sent_at),
                steps.len(),
                lag.unwrap_or_else(|| "0 s".into())
            ),
            _ => format!(
                "{} step(s) reported; {} problem(s)",
                steps.len(),
                reasons.len()
            ),
        };
        let transaction = ProbeReport::new(Probe::SimulatedTransaction, reasons, evidence, summary);

        let sharing = match completion {
            None => not_shared(
                "the simulated transaction was not completed (no 办结), so no result was due",
            ),
            Some((event, completed_at)) => {
                self.result(
                    messages,
                    &application_id,
                    &event,
                    completed_at,
                    sent_at,
                    results,
                )
                .await
            }
        };
        (transaction, sharing)
    }

    /// Result sharing: waits (from 办结) for a result about the simulated application, then
    /// checks it as the hub checks every result (without the store: it is never kept) and
    /// seals it.
    async fn result(
        &self,
        messages: &mut mpsc::Receiver<ProbeMessage>,
        application_id: &str,
        completion: &CaseEvent,
        completed_at: i64,
        sent_at: i64,
        mut results: Vec<(i64, Content)>,
    ) -> ProbeReport {
        if self.adapter.inbound.result_mapping.is_none() {
            return ProbeReport::new(
                Probe::ResultSharing,
                vec![
                    "the system shares no results: its adapter has no [inbound] result_mapping"
                        .into(),
                ],
                Vec::new(),
                "not run".into(),
            );
        }
        let share_by = completed_at + seconds(self.limits.result_within_seconds);
        while results.is_empty() {
            let Some(message) = receive_by(messages, share_by).await else {
                break;
            };
            if message.kind == MessageKind::Result && about(&message.content, application_id) {
                results.push((message.arrived_ms, message.content));
            }
        }
        let mut reasons = Vec::new();
        let mut evidence = Vec::new();
        if results.is_empty() {
            reasons.push(format!(
                "no result was shared within {} of 办结 ([onboarding] result_within_seconds)",
                clock::duration_text(seconds(self.limits.result_within_seconds))
            ));
        }
        let application = self.application_record(application_id, sent_at);
        for (arrived_ms, content) in results {
            let canonical = match content {
                Content::Unmapped(errors) => {
                    reasons.push(format!("a result did not map: {}", errors.join("; ")));
                    evidence.push(json!({ "result": "unmapped", "errors": errors }));
                    continue;
                }
                Content::Mapped(canonical) => canonical,
            };
            let mut problems = Vec::new();
            let read =
                results::read_license(self.adapter, Some(&application), &canonical, &mut problems);
            if let Some(settlement) = results::settlement(completion, &application)
                && let Some(reason) = settlement.reason
            {
                problems.push(reason);
            }
            let license = read.as_ref().map(|(result, _)| &result.license);
            let sealed = match (problems.is_empty(), &read) {
                (true, Some(_)) => match self.sealer.seal_result(&canonical, 0) {
                    Ok(credential) => Some(credential.to_string().len()),
                    Err(e) => {
                        problems.push(format!("the result cannot be sealed: {e}"));
                        None
                    }
                },
                _ => None,
            };
            evidence.push(json!({
                "result": "mapped",
                "license_id": license.map(|l| l.id.clone()),
                "type_code": license.map(|l| l.type_code.clone()),
                "name": license.map(|l| l.name.clone()),
                "after_completion_ms": arrived_ms - completed_at,
                "sealed": sealed.is_some(),
                "credential_bytes": sealed,
                "problems": problems,
            }));
            reasons.extend(problems);
        }
        let summary = if reasons.is_empty() {
            "the result reads, answers the simulated application and was sealed".to_string()
        } else {
            format!("{} problem(s) with the shared result", reasons.len())
        };
        ProbeReport::new(Probe::ResultSharing, reasons, evidence, summary)
    }

    /// The simulated application as the store would hold it, to check what comes back about
    /// it as the hub checks a real one.
    fn application_record(&self, application_id: &str, sent_at: i64) -> ApplicationRecord {
        let mut body = self.sample.clone();
        body["id"] = Value::String(application_id.to_string());
        ApplicationRecord {
            id: application_id.to_string(),
            item_code: body["item"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            item_version: body["item"]["version"].as_i64().unwrap_or_default(),
            department: self.adapter.department_uscc.clone(),
            system_id: self.adapter.id.clone(),
            state: ApplicationState::Delivered,
            accepted_at: sent_at,
            updated_at: sent_at,
            body: body.to_string(),
            trace_context: None,
        }
    }

    /// One case event about the simulated application, checked as the hub checks a real one.
    fn read_step(&self, canonical: &Value, arrived_ms: i64, sent_at: i64, tolerance: i64) -> Step {
        let mut problems = Vec::new();
        let system = canonical["system"].as_str().unwrap_or_default();
        if system != self.adapter.id {
            problems.push(format!(
                "a case event says it comes from system `{system}`, not `{}`",
                self.adapter.id
            ));
        }
        let event = match CaseEvent::from_json(canonical) {
            Ok(event) => Some(event),
            Err(why) => {
                problems.push(format!("a case event does not read: {why}"));
                None
            }
        };
        let occurred = canonical["occurred_at"].as_str().and_then(parse_time);
        let future_limit =
            i64::from(self.config.hub.supervision.thresholds.future_limit_minutes) * 60_000;
        if let (Some(event), Some(at)) = (&event, occurred) {
            let step = event.node.name.as_str();
            if at > arrived_ms + future_limit {
                problems.push(format!(
                    "{step} is dated {} after it was reported: a case event reports what has happened",
                    clock::duration_text(at - arrived_ms)
                ));
            } else if at > arrived_ms + tolerance {
                problems.push(format!(
                    "{step} is dated {} after it was reported, more than the clocks may differ ([supervision] clock_tolerance_minutes)",
                    clock::duration_text(at - arrived_ms)
                ));
            }
            if at + tolerance < sent_at {
                problems.push(format!(
                    "{step} is dated {} before the simulated application was delivered",
                    clock::duration_text(sent_at - at)
                ));
            }
        }
        Step {
            lag_ms: occurred.map(|at| (arrived_ms - at).max(0)),
            event,
            arrived_ms,
            after_delivery_ms: arrived_ms - sent_at,
            problems,
        }
    }
}

/// A step the system reported about the simulated application.
struct Step {
    event: Option<CaseEvent>,
    arrived_ms: i64,
    after_delivery_ms: i64,
    /// From when it happened to when the hub had it.
    lag_ms: Option<i64>,
    problems: Vec<String>,
}

impl Step {
    fn is_acceptance(&self) -> bool {
        self.event
            .as_ref()
            .is_some_and(|e| e.node.name == NodeName::Acceptance)
    }

    fn evidence(&self) -> Value {
        json!({
            "case_event": self.event.as_ref().map(|e| e.event_id.clone()),
            "step": self.event.as_ref().map(|e| e.node.name.as_str()),
            "result": self.event.as_ref().map(|e| e.node.result.as_str()),
            "occurred_at": self.event.as_ref().map(|e| format_millis(e.occurred_at)),
            "after_delivery_ms": self.after_delivery_ms,
            "lag_ms": self.lag_ms,
            "problems": self.problems,
        })
    }
}

fn seconds(s: u64) -> i64 {
    (s as i64).saturating_mul(1000)
}

/// Whether a message is about `application_id`.
fn about(content: &Content, application_id: &str) -> bool {
    match content {
        Content::Mapped(canonical) => canonical["application_id"] == application_id,
        // It cannot say: every message that does not map counts for the probe.
        Content::Unmapped(_) => true,
    }
}

/// The next message, unless `deadline` (epoch ms) passes first.
async fn receive_by(
    messages: &mut mpsc::Receiver<ProbeMessage>,
    deadline: i64,
) -> Option<ProbeMessage> {
    let left = deadline - clock::now_millis();
    if left <= 0 {
        return messages.try_recv().ok();
    }
    tokio::time::timeout(Duration::from_millis(left as u64), messages.recv())
        .await
        .ok()
        .flatten()
}

/// A task aborted when this is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the candidate system's polled feeds for the probe while it listens, when nothing else
/// does: the system is not connected, or is connected with other feeds. Its messages go to
/// the probe inbox; the running configuration's cursor is read (to start from) and never
/// moved. Over AMQP, only a connected system's queue is read (by its consumer): `Err` says so.
pub fn read_inbound(
    running: &Config,
    adapter: &AdapterConfig,
    store: &Store,
    inbox: &ProbeInbox,
) -> Result<Option<AbortOnDrop>, String> {
    let live = running.adapters.get(&adapter.id);
    if live.is_some_and(|l| l.inbound.mode == adapter.inbound.mode) {
        // Whatever the system reports reaches the hub already, and the probe through it.
        return Ok(None);
    }
    match &adapter.inbound.mode {
        InboundMode::Webhook => Ok(None),
        InboundMode::Amqp { queue, .. } => Err(format!(
            "the system reports over AMQP (queue {queue}), and a queue is read only for a connected system with the same queue: the simulated transaction cannot be followed before it is live"
        )),
        InboundMode::Poll {
            url,
            interval,
            results_url,
        } => {
            let mut feeds = vec![(url.clone(), MessageKind::CaseEvent)];
            if let Some(r) = results_url {
                feeds.push((r.clone(), MessageKind::Result));
            }
            let (store, inbox) = (store.clone(), inbox.clone());
            let (system, interval) = (adapter.id.clone(), *interval);
            let connected = live.is_some();
            Ok(Some(AbortOnDrop(tokio::spawn(async move {
                let client = match reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                {
                    Ok(client) => client,
                    Err(_) => return,
                };
                let mut after = Vec::new();
                for (url, kind) in &feeds {
                    let from = store
                        .poll_cursor(&system, kind.as_str(), url)
                        .await
                        .unwrap_or(0);
                    after.push(from);
                }
                loop {
                    for ((url, kind), from) in feeds.iter().zip(after.iter_mut()) {
                        let Ok(entries) = super::intake::fetch(&client, url, *from).await else {
                            continue;
                        };
                        for entry in entries {
                            // Only the probe's messages matter here; the rest is the
                            // system's business with its running configuration.
                            let _ = inbox.offer(&system, *kind, &entry.bytes(), connected);
                            *from = (*from).max(entry.seq);
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            }))))
        }
    }
}

/// The canonical application of the first two-way test case of `mapping` among `files` (paths
/// relative to a configuration directory): a `<case>.canonical.json` with its `<case>.legacy.*`,
/// one that maps to the system's format.
pub fn sample_application(files: &BTreeMap<String, Vec<u8>>, mapping: &str) -> Option<Value> {
    let prefix = format!("mappings/tests/{mapping}/");
    let has_legacy = |case: &str| {
        files.keys().any(|p| {
            p.strip_prefix(&prefix)
                .and_then(|f| f.strip_prefix(case))
                .is_some_and(|rest| rest.starts_with(".legacy."))
        })
    };
    files
        .iter()
        .filter_map(|(path, bytes)| {
            let case = path
                .strip_prefix(&prefix)?
                .strip_suffix(".canonical.json")?;
            (!case.ends_with(".read") && has_legacy(case)).then_some(bytes)
        })
        .find_map(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .filter(Value::is_object)
}

/// As [`sample_application`], from the test cases in configuration directory `dir`.
pub fn sample_from_dir(dir: &std::path::Path, mapping: &str) -> Option<Value> {
    let folder = format!("mappings/tests/{mapping}");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join(&folder)).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Ok(bytes) = std::fs::read(entry.path()) {
            files.insert(format!("{folder}/{name}"), bytes);
        }
    }
    sample_application(&files, mapping)
}

/// The identity a probe's assertion vouches for: the sample's applicant, masked, with a subject
/// that says it is a probe.
fn probe_identity(sample: &Value, prefix: &str) -> Identity {
    let applicant = &sample["applicant"];
    let text = |k: &str| applicant[k].as_str().unwrap_or_default();
    Identity {
        sub: format!("probe-{}", prefix.trim_end_matches('-')),
        kind: text("kind").parse().unwrap_or(ApplicantKind::NaturalPerson),
        id_type: text("id_type").parse().unwrap_or(IdType::CitizenId),
        id_number: mask_id(text("id_number")),
        name: mask_name(text("name")),
        real_name_level: 3,
    }
}

/// A token whose signature no longer matches: one character in the middle of the signature
/// changed.
fn forged(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return format!("{token}x");
    };
    let (head, signature) = token.split_at(dot + 1);
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    if let Some(c) = chars.get_mut(middle) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    format!("{head}{}", chars.into_iter().collect::<String>())
}
