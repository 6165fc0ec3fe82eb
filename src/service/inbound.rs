//! Case events and results coming back from department systems, however they arrive (webhook,
//! queue, polling): mapped from the system's own format, checked against the application they
//! concern and, for case events, against the clock (results: against the license, the
//! department, the applicant, the completion and earlier versions, see [`super::results`]),
//! deduplicated by (system, the system's own id), and stored.
//!
//! The hub refuses only what it cannot understand or cannot take: a message that does not map,
//! one about an application the system does not handle, a result that is not the license it
//! claims to be or does not answer its application (see [`super::results`]), or a case event dated further ahead of
//! its arrival than `[supervision] future_limit_minutes` (a day: that is no clock a little off
//! but a date that cannot be a fact, and every due would run from it). A case event dated ahead
//! by less is taken, with its dues running from its stated time, and supervision flags it
//! (`implausible_time`) once it is more than `clock_tolerance_minutes` ahead. Whatever the way
//! in, a refusal is recorded ([`Store::record_refusal`]) for the supervision rule
//! `events_refused` and logged at WARN with its reasons, once per message: the same message
//! refused again (posted again, polled again, redelivered) is known by its [`fingerprint`], is
//! not recorded or raised again, and is logged at INFO. The reasons are mapping, schema and hub
//! messages, which never quote a value, and ID and phone numbers are scrubbed from them all
//! the same.

use super::probe_inbox::{ProbeInbox, about_probe};
use super::sealing::Sealer;
use crate::clock::format_millis;
use crate::config::Config;
use crate::mapping::MapError;
use crate::model::parse_time;
use crate::model::{ApplicationState, CaseEvent, MessageKind, Via};
use crate::personal::PersonalValues;
use crate::store::group::{GroupCommit, GroupError};
use crate::store::{ApplicationRecord, EventToRecord, FeedText, NewRefusal, Store, StoreError};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::InboundOutcome;
use crate::telemetry::trace::{self, SpanContext, SpanKind, Tracer};
use serde_json::Value;
use std::sync::Arc;

/// Whether a message was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    New,
    /// The system sent this one before; nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("no connected system `{0}`")]
    UnknownSystem(String),
    #[error("system `{0}` publishes no results")]
    NoResults(String),
    #[error("the message does not map to a canonical one")]
    Mapping(Vec<MapError>),
    /// The message maps, but the hub will not take it; each reason says why, the class
    /// what kind of reason came first.
    #[error("{}", .1.join("; "))]
    Refused(RefusalClass, Vec<String>),
    /// About a probe application no probe waits for (any more): a test, never recorded.
    #[error(
        "application {0} is a probe application (模拟办事) and no probe waits for it any more: not recorded"
    )]
    ProbeOver(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event could not be committed; like [`InboundError::Store`], worth trying again.
    #[error(transparent)]
    Unrecorded(#[from] GroupError),
}

/// What kind of reason a message was refused for, in a small fixed set (for metrics: the
/// reasons themselves are free text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// Its body was not read: too large, too slow to arrive, a `Content-Type` not ASCII.
    Unreadable,
    /// Declared as a media type its mapping does not read.
    MediaType,
    /// It does not map to a canonical message (or its mapping is not loaded).
    Mapping,
    /// A result from a system that publishes none.
    NoResults,
    /// It says it comes from another system.
    WrongSystem,
    /// About no application the hub routed.
    UnknownApplication,
    /// About an application routed to another system, or of an item this system does not
    /// handle.
    NotOwner,
    /// Dated too far ahead of its arrival.
    FutureTime,
    /// It maps but does not read as the case event or result it should be.
    Invalid,
    /// A result that fails the license's checks (identifier, issuer, holder, completion,
    /// versions).
    License,
    /// About a probe application, and the probe could not take it (never counted: what is
    /// about a probe is a test).
    Probe,
}

impl RefusalClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalClass::Unreadable => "unreadable",
            RefusalClass::MediaType => "media_type",
            RefusalClass::Mapping => "mapping",
            RefusalClass::NoResults => "no_results",
            RefusalClass::WrongSystem => "wrong_system",
            RefusalClass::UnknownApplication => "unknown_application",
            RefusalClass::NotOwner => "not_owner",
            RefusalClass::FutureTime => "future_time",
            RefusalClass::Invalid => "invalid",
            RefusalClass::License => "license",
            RefusalClass::Probe => "probe",
        }
    }
}

impl InboundError {
    /// What kind of failure this is, in words free of what the message said.
    pub fn kind(&self) -> &'static str {
        match self {
            InboundError::UnknownSystem(_) => "no such connected system",
            InboundError::NoResults(_) => "the system publishes no results",
            InboundError::Mapping(_) => "the message does not map",
            InboundError::Refused(..) => "the message was refused",
            InboundError::ProbeOver(_) => "about a probe application no probe waits for",
            InboundError::Store(_) | InboundError::Unrecorded(_) => "the store did not keep it",
        }
    }

    /// Why the hub refused the message, one reason each, masked; `None` when it did not refuse
    /// it (an unknown system is nobody's message, a store failure is the hub's).
    pub fn refusal_reasons(&self) -> Option<Vec<String>> {
        let reasons = match self {
            InboundError::Mapping(errors) => errors.iter().map(|e| e.to_string()).collect(),
            InboundError::NoResults(_) => vec![self.to_string()],
            InboundError::Refused(_, reasons) => reasons.clone(),
            InboundError::UnknownSystem(_)
            | InboundError::ProbeOver(_)
            | InboundError::Store(_)
            | InboundError::Unrecorded(_) => return None,
        };
        Some(
            reasons
                .iter()
                .map(|r| crate::personal::mask_text(r))
                .collect(),
        )
    }

    /// The class of the hub's refusal; `None` when it did not refuse the message (see
    /// [`InboundError::refusal_reasons`]).
    pub fn refusal_class(&self) -> Option<RefusalClass> {
        match self {
            InboundError::Mapping(_) => Some(RefusalClass::Mapping),
            InboundError::NoResults(_) => Some(RefusalClass::NoResults),
            InboundError::Refused(class, _) => Some(*class),
            InboundError::UnknownSystem(_)
            | InboundError::ProbeOver(_)
            | InboundError::Store(_)
            | InboundError::Unrecorded(_) => None,
        }
    }
}

/// Case events recorded together: events arriving while a commit is in flight share the next
/// one (see [`crate::store::group`]), each caller answered once its event is durable.
pub type EventRecorder = GroupCommit<EventToRecord, bool>;

/// Events recorded together at most.
const EVENT_BATCH: usize = 128;

/// Where what systems send is recorded: case events in groups, results sealed first, and
/// what is about a probe application to the probe listening for it.
#[derive(Clone)]
pub struct Recorder {
    pub events: EventRecorder,
    pub sealer: Arc<Sealer>,
    pub probes: ProbeInbox,
    /// Metrics and traces of what comes in.
    pub telemetry: Arc<Telemetry>,
}

impl Recorder {
    /// A recorder on the current tokio runtime, sealing results with `sealer`.
    pub fn spawn(store: Store, sealer: Arc<Sealer>, telemetry: Arc<Telemetry>) -> Recorder {
        Recorder {
            events: event_recorder(store, &telemetry),
            sealer,
            probes: ProbeInbox::default(),
            telemetry,
        }
    }
}

/// Starts a recorder for case events on the current tokio runtime.
fn event_recorder(store: Store, telemetry: &Telemetry) -> EventRecorder {
    GroupCommit::spawn_observed(
        "case event",
        EVENT_BATCH,
        EVENT_BATCH * 8,
        Some(telemetry.metrics.commit_observer("case_event")),
        move |events| {
            let store = store.clone();
            async move {
                let result = store.record_events(&events).await;
                (events, result)
            }
        },
    )
}

/// Receives one message of `kind` from `system`, in the system's own format, that came `via`
/// the given way. A refusal is recorded and logged before it is returned (see the module
/// documentation); recording it is best effort, since the message is lost to the hub either
/// way and the caller still answers the system. `trace` is the context the system sent the
/// message under (its `traceparent`), if any.
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    config: &Config,
    store: &Store,
    recorder: &Recorder,
    system: &str,
    kind: MessageKind,
    body: &[u8],
    via: Via,
    trace: Option<SpanContext>,
) -> Result<Received, InboundError> {
    // A probe's messages are tests: never recorded, also when they are refused.
    let connected = config.adapters.contains_key(system);
    if let Some(taken) = recorder.probes.offer(system, kind, body, connected) {
        return taken;
    }
    let started = trace::now_ns();
    let mut about = None;
    let received = take(config, store, recorder, system, kind, body, &mut about).await;
    trace_received(
        &recorder.telemetry.tracer,
        started,
        system,
        kind,
        via,
        trace,
        about.as_ref(),
        &received,
    );
    if let Err(e) = &received
        && let Some(reasons) = e.refusal_reasons()
    {
        let fingerprint = fingerprint(None, body);
        refused(
            config,
            store,
            system,
            kind,
            via,
            &reasons,
            Some(&fingerprint),
        )
        .await;
    }
    count(&recorder.telemetry, system, kind, via, &received);
    received
}

/// Records the span of a message received: in its application's trace, under the span the
/// system's `traceparent` named when it is in that trace (the system traced its step as part of
/// the application's), else under the acceptance's; a message about no known application starts
/// its own trace, or continues the system's.
#[allow(clippy::too_many_arguments)]
fn trace_received(
    tracer: &Tracer,
    started: u64,
    system: &str,
    kind: MessageKind,
    via: Via,
    sent_under: Option<SpanContext>,
    about: Option<&(String, Option<String>)>,
    received: &Result<Received, InboundError>,
) {
    let accepted = about
        .and_then(|(_, context)| context.as_deref())
        .and_then(SpanContext::parse);
    let parent = match (sent_under, accepted) {
        (Some(sent), Some(accepted)) if sent.trace_id == accepted.trace_id => Some(sent),
        (_, Some(accepted)) => Some(accepted),
        (sent, None) => sent,
    };
    let span_kind = match via {
        Via::Webhook => SpanKind::Server,
        _ => SpanKind::Consumer,
    };
    let mut span = tracer.start_at(
        match kind {
            MessageKind::CaseEvent => "event.receive",
            MessageKind::Result => "result.receive",
        },
        span_kind,
        parent,
        started,
    );
    if !span.is_recording() {
        return;
    }
    span.set("tongban.system", system.to_string());
    span.set("tongban.via", via.as_str());
    if let Some((application, _)) = about {
        span.set("tongban.application", application.clone());
    }
    match received {
        Ok(Received::New) => span.set("tongban.outcome", "stored"),
        Ok(Received::Duplicate) => span.set("tongban.outcome", "duplicate"),
        Err(e) => {
            span.set("tongban.outcome", "refused");
            // The kind of refusal only: reasons quote what the system sent.
            span.fail(e.kind());
        }
    }
}

/// Counts a message received in the metrics: stored, a duplicate, or refused with its class
/// (a failure that is no refusal is not counted: the message may well come again).
fn count(
    telemetry: &Telemetry,
    system: &str,
    kind: MessageKind,
    via: Via,
    received: &Result<Received, InboundError>,
) {
    let outcome = match received {
        Ok(Received::New) => InboundOutcome::Stored,
        Ok(Received::Duplicate) => InboundOutcome::Duplicate,
        Err(e) => {
            if let Some(class) = e.refusal_class() {
                count_refusal(telemetry, system, kind, via, class);
            }
            return;
        }
    };
    telemetry
        .metrics
        .inbound(system, kind.as_str(), via.as_str(), outcome);
}

/// Counts a refused message in the metrics: refused by the way it came, and its class.
pub fn count_refusal(
    telemetry: &Telemetry,
    system: &str,
    kind: MessageKind,
    via: Via,
    class: RefusalClass,
) {
    let metrics = &telemetry.metrics;
    metrics.inbound(system, kind.as_str(), via.as_str(), InboundOutcome::Refused);
    metrics.inbound_refusal(system, kind.as_str(), class.as_str());
}

/// What tells one message from another for refusals: SHA-256 (hex) of its body as received,
/// after the media type it was `declared` as when that is part of what was refused (a webhook
/// body whose `Content-Type` its mapping does not read: the same bytes declared otherwise are
/// another message).
pub fn fingerprint(declared: Option<&str>, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    if let Some(declared) = declared {
        hasher.update(declared.as_bytes());
        // No media type holds a NUL: the two parts cannot run into each other.
        hasher.update([0u8]);
    }
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records and logs a refusal (also of a webhook's body refused before it is read, or for what
/// it is declared as). `fingerprint` says which message it was ([`fingerprint`]); a message
/// refused before is not recorded again and is logged at INFO, not WARN. `None` (the body was
/// never read) is recorded every time.
pub async fn refused(
    config: &Config,
    store: &Store,
    system: &str,
    kind: MessageKind,
    via: Via,
    reasons: &[String],
    fingerprint: Option<&str>,
) {
    let department = config
        .adapters
        .get(system)
        .map_or("", |a| a.department_uscc.as_str());
    let refusal = NewRefusal {
        system_id: system,
        department,
        kind,
        via,
        at: crate::clock::now_millis(),
        reasons,
        fingerprint,
    };
    let recorded = store.record_refusal(&refusal).await;
    let reasons = reasons.join("; ");
    match recorded {
        Ok(None) => {
            tracing::info!(
                system = %system,
                kind = kind.as_str(),
                via = via.as_str(),
                reasons = %reasons,
                "inbound message refused again; it was refused and recorded before"
            );
            return;
        }
        Ok(Some(_)) => {}
        Err(e) => {
            tracing::error!(system = %system, cause = %e, "cannot record the refusal of an inbound message; events_refused will not see it");
        }
    }
    tracing::warn!(
        system = %system,
        kind = kind.as_str(),
        via = via.as_str(),
        reasons = %reasons,
        "inbound message refused"
    );
}

async fn take(
    config: &Config,
    store: &Store,
    recorder: &Recorder,
    system: &str,
    kind: MessageKind,
    body: &[u8],
    about: &mut Option<(String, Option<String>)>,
) -> Result<Received, InboundError> {
    let arrived = crate::clock::now_millis();
    let adapter = config
        .adapters
        .get(system)
        .ok_or_else(|| InboundError::UnknownSystem(system.to_string()))?;
    let mapping_name = match kind {
        MessageKind::CaseEvent => &adapter.inbound.case_event_mapping,
        MessageKind::Result => adapter
            .inbound
            .result_mapping
            .as_ref()
            .ok_or_else(|| InboundError::NoResults(system.to_string()))?,
    };
    let mapping = config.mappings.get(mapping_name).ok_or_else(|| {
        InboundError::Refused(
            RefusalClass::Mapping,
            vec![format!("mapping `{mapping_name}` is not loaded")],
        )
    })?;
    let canonical = mapping.to_canonical(body).map_err(InboundError::Mapping)?;
    if about_probe(&canonical) {
        let id = canonical["application_id"].as_str().unwrap_or_default();
        return Err(InboundError::ProbeOver(id.to_string()));
    }
    let text = |pointer: &str| {
        canonical
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };

    // Every problem at once, so that the system's operators fix them in one go; the refusal's
    // class is the first problem's.
    let mut problems = Vec::new();
    let mut class = None;
    if text("/system") != system {
        class = class.or(Some(RefusalClass::WrongSystem));
        problems.push(format!(
            "the message says it comes from system `{}`, but it was received for `{system}`",
            text("/system")
        ));
    }
    let application_id = text("/application_id");
    let application = store.application(application_id).await?;
    if let Some(application) = &application {
        *about = Some((application.id.clone(), application.trace_context.clone()));
    }
    match &application {
        None => {
            class = class.or(Some(RefusalClass::UnknownApplication));
            problems.push("no application with this id was routed through the hub".into())
        }
        Some(application) if application.system_id != system => {
            class = class.or(Some(RefusalClass::NotOwner));
            problems.push("the application was routed to another system".into())
        }
        Some(application)
            if !adapter
                .items
                .iter()
                .any(|c| c.code == application.item_code) =>
        {
            class = class.or(Some(RefusalClass::NotOwner));
            problems.push("the application's item is not one this system handles".into())
        }
        Some(_) => {}
    }
    if kind == MessageKind::CaseEvent {
        let limit = config.hub.supervision.thresholds.future_limit_minutes;
        let ahead = times_ahead(&canonical, arrived, limit);
        if !ahead.is_empty() {
            class = class.or(Some(RefusalClass::FutureTime));
        }
        problems.extend(ahead);
    }
    // A case event that mapped is valid against its schema, so it reads as one; read once,
    // it says which step it reports.
    let event = match (kind, &application) {
        (MessageKind::CaseEvent, Some(application)) => {
            match event_to_record(application, &canonical) {
                Ok(event) => Some(event),
                Err(why) => {
                    class = class.or(Some(RefusalClass::Invalid));
                    problems.push(why.to_owned());
                    None
                }
            }
        }
        _ => None,
    };
    // A result is read once too, and checked against the license it claims to be, the
    // department that sends it, the application it answers and what the system sent before.
    let result = match kind {
        MessageKind::Result => {
            let before = problems.len();
            let checked = super::results::check(
                store,
                adapter,
                application.as_ref(),
                &canonical,
                &mut problems,
            )
            .await?;
            if problems.len() > before {
                class = class.or(Some(RefusalClass::License));
            }
            checked
        }
        MessageKind::CaseEvent => None,
    };
    if !problems.is_empty() {
        return Err(InboundError::Refused(
            class.unwrap_or(RefusalClass::Invalid),
            problems,
        ));
    }
    let new = match (event, result) {
        (Some(event), _) => recorder.events.write(event).await?,
        (None, Some(result)) => {
            super::results::record(store, &recorder.sealer, system, &result, &canonical)
                .await?
                .map_err(|problem| InboundError::Refused(RefusalClass::License, vec![problem]))?
        }
        (None, None) => {
            return Err(InboundError::Refused(
                RefusalClass::Invalid,
                vec!["the message is neither a case event nor a result the hub can read".into()],
            ));
        }
    };
    Ok(if new {
        Received::New
    } else {
        Received::Duplicate
    })
}

/// A canonical case event about `application`, ready to store: its step, the state it moves
/// the application to, and its entry in the supervision feed, where it is read beyond the
/// department: handler and free texts masked, with what the application says about its people
/// (see [`crate::personal`]).
pub fn event_to_record(
    application: &ApplicationRecord,
    canonical: &Value,
) -> Result<EventToRecord, &'static str> {
    let event = CaseEvent::from_json(canonical)?;
    let settles = super::results::settlement(&event, application);
    let body = canonical.to_string();
    let masked = PersonalValues::of_application_text(&application.body)
        .masked_event(&body)
        .to_string();
    let occurred_at = canonical
        .get("occurred_at")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(EventToRecord {
        feed: FeedText {
            body: masked,
            routing_key: format!("event.{}.{}", event.system, event.node.name.routing_word()),
            department: application.department.clone(),
            item_code: application.item_code.clone(),
        },
        system_id: event.system,
        event_id: event.event_id,
        application_id: event.application_id,
        node_name: event.node.name.as_str().to_owned(),
        occurred_at,
        body,
        state: ApplicationState::after_step(event.node.name),
        settles,
    })
}

/// The times of a canonical case event more than `limit_minutes` after `arrived_ms`, each as
/// a reason to refuse it: a case event reports what has happened, and a system's clock may be
/// some minutes off (supervision flags that), but a time that far ahead is a date typed wrong
/// or a clock set wrong by days, and every due would run from it.
fn times_ahead(canonical: &Value, arrived_ms: i64, limit_minutes: u32) -> Vec<String> {
    let limit_ms = i64::from(limit_minutes) * 60_000;
    [
        "/occurred_at",
        "/special_procedure/started_at",
        "/special_procedure/ended_at",
    ]
    .into_iter()
    .filter_map(|pointer| {
        let text = canonical.pointer(pointer)?.as_str()?;
        let at = parse_time(text)?;
        (at > arrived_ms.saturating_add(limit_ms)).then(|| {
            format!(
                "{pointer} is {text}, {} after the hub received the message at {}: a case \
                     event reports what has happened, and a time more than {} ahead \
                     ([supervision] future_limit_minutes = {limit_minutes}) is no clock a \
                     little off but a date that cannot be a fact yet (is the system's date right?)",
                crate::clock::duration_text(at - arrived_ms),
                format_millis(arrived_ms),
                crate::clock::duration_text(limit_ms)
            )
        })
    })
    .collect()
}
