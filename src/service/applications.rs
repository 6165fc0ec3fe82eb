//! Accepting an application from the unified platform: every rule an application meets before
//! the hub answers 202, in one place.
//!
//! In order: the canonical schema; the item reference read and compared with the catalog
//! (事项数据同源: code, version, name, type, and an item still in force); the item's required
//! materials, and no material it does not have; the applicant is the user the identity system's
//! token proves, at the real-name level the item asks for; a connected system handles the item
//! (in the region, if one is given); the system's mapping writes it (accepted means deliverable).
//! Problems of the document come back all at once. Then the
//! application, its delivery in the outbox and its audit record commit together (in a group
//! with others that arrive meanwhile), and only then is it accepted.

use crate::audit::AuditEntry;
use crate::auth::assertion::Identity;
use crate::auth::tokens::UserIdentity;
use crate::auth::{sha256_hex, subject_digest};
use crate::catalog::Item;
use crate::clock;
use crate::config::{AdapterConfig, Config};
use crate::ids::mask_id;
use crate::mapping::OpenDocument;
use crate::model::{Applicant, Application, ItemRef, ResultState};
use crate::personal::HolderIndex;
use crate::schema::Violation;
use crate::service::admission::{Backlogs, Overloaded};
use crate::service::catalog::CurrentItems;
use crate::store::group::{GroupCommit, GroupError};
use crate::store::{Accepted, AccessToRecord, ApplicationToAccept, Store, StoreError};
use crate::telemetry::Telemetry;
use crate::telemetry::trace::{Span, SpanContext, SpanKind, Tracer};
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// Applications accepted together at most, in one transaction.
const ACCEPT_BATCH: usize = 128;

/// Where accepted applications go: the group commit that stores each with its delivery and its
/// audit record, in batches with others that arrive while a commit is in flight (see
/// [`crate::store::group`]), so a busy platform does not pay an fsync per application.
pub type Acceptor = GroupCommit<ApplicationToAccept, Accepted>;

/// Starts the [`Acceptor`] over `store`, its commits observed in `telemetry`'s metrics.
pub fn acceptor(store: Store, telemetry: &Telemetry) -> Acceptor {
    GroupCommit::spawn_observed(
        "application",
        ACCEPT_BATCH,
        ACCEPT_BATCH * 8,
        Some(telemetry.metrics.commit_observer("application")),
        move |apps| {
            let store = store.clone();
            async move {
                let result = store.accept_applications(&apps).await;
                (apps, result)
            }
        },
    )
}

/// An application as the platform submitted it, with who submitted it and for whom.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The canonical application (JSON), as it came.
    pub body: Value,
    /// The applicant, as the identity system's token proves them.
    pub user: UserIdentity,
    /// The submitter's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// Who submitted it (the platform's principal), for the audit log.
    pub actor: String,
    /// The platform's trace context (its `traceparent`), if it sent one: the application's
    /// trace continues it.
    pub trace_parent: Option<SpanContext>,
}

/// An accepted application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub application_id: String,
    /// The system it goes to.
    pub system_id: String,
    pub accepted_at: i64,
    /// Whether this answers a repeated request (same `Idempotency-Key`, same application):
    /// nothing new was stored.
    pub replayed: bool,
    /// What the audit log says of it (masked).
    pub audit_detail: String,
    /// Required materials the applicant did not submit that the hub attached by reference to
    /// a result the applicant holds: (material id, e-license id).
    pub shared_materials: Vec<(String, String)>,
    /// Materials the applicant submitted although sharing could supply them (counted, not
    /// refused).
    pub submitted_shareable: Vec<String>,
}

/// Why an application was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// What is wrong with the document, every problem at once.
    #[error("the application has {} problem(s)", .0.len())]
    Invalid(Vec<Violation>),
    /// The applicant is not the user the token proves: the members that differ (names only).
    #[error("the applicant is not the user the token identifies: {} differ", .0.join(", "))]
    NotTheApplicant(Vec<&'static str>),
    #[error(
        "item {item} needs real-name level {required} (实名等级); the applicant's token has level {given}"
    )]
    RealNameLevel {
        item: String,
        required: u8,
        given: u8,
    },
    #[error("no connected system handles this item{}", .region.as_deref().map(|r| format!(" in region {r}")).unwrap_or_default())]
    NoSystem { region: Option<String> },
    #[error("this Idempotency-Key was used before for a different request")]
    KeyReused,
    #[error("an application with this id was accepted before")]
    DuplicateId,
    /// The system's outbox is full: accepting more would only queue it without bound.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The group commit did not store it (the store is unavailable, or refused the write).
    #[error(transparent)]
    NotStored(#[from] GroupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AcceptError {
    /// What kind of refusal this is, in words free of what the applicant wrote.
    pub fn kind(&self) -> &'static str {
        match self {
            AcceptError::Invalid(_) => "the application is not valid",
            AcceptError::NotTheApplicant(_) => "the applicant is not the token's user",
            AcceptError::RealNameLevel { .. } => "the token's real-name level is too low",
            AcceptError::NoSystem { .. } => "no connected system handles the item",
            AcceptError::KeyReused => "the Idempotency-Key was used for another request",
            AcceptError::DuplicateId => "the application id was used before",
            AcceptError::Overloaded(_) => "the system's outbox is full",
            AcceptError::NotStored(_) | AcceptError::Store(_) => "the store did not keep it",
        }
    }
}

/// What accepting an application works with: the configuration, the store and the parts of
/// the hub every acceptance shares.
#[derive(Clone, Copy)]
pub struct Acceptance<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub catalog: &'a CurrentItems,
    pub backlogs: &'a Backlogs,
    pub acceptor: &'a Acceptor,
    pub holders: &'a HolderIndex,
    pub tracer: &'a Tracer,
}

/// Accepts `submission` if it meets every rule (see the module documentation), in a span of
/// the application's trace.
pub async fn accept(with: Acceptance<'_>, submission: Submission) -> Result<Receipt, AcceptError> {
    let mut span = with.tracer.start(
        "application.accept",
        SpanKind::Server,
        submission.trace_parent,
    );
    let accepted = accept_traced(with, &span, submission).await;
    match &accepted {
        Ok(receipt) => {
            span.set("tongban.application", receipt.application_id.clone());
            span.set("tongban.system", receipt.system_id.clone());
            span.set("tongban.replayed", receipt.replayed);
        }
        // The error's kind only: its text may name what the applicant wrote.
        Err(e) => span.fail(e.kind()),
    }
    accepted
}

async fn accept_traced(
    with: Acceptance<'_>,
    span: &Span,
    submission: Submission,
) -> Result<Receipt, AcceptError> {
    let Acceptance {
        config,
        store,
        catalog,
        backlogs,
        acceptor,
        holders,
        tracer,
    } = with;
    let Submission {
        mut body,
        user,
        idempotency_key,
        actor,
        trace_parent: _,
    } = submission;
    let trace_context = span.context().traceparent();
    // Member order carries no meaning: the same application in another order is the same
    // request. Hashed as submitted, before the hub adds what sharing supplies.
    let request_hash = sha256_hex(
        crate::schema::sorted_keys(body.clone())
            .to_string()
            .as_bytes(),
    );
    let mut violations = config.schemas.validate("application", &body);
    violations.extend(control_characters(&body));
    let item_code = body
        .pointer("/item/code")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let current = if item_code.is_empty() {
        None
    } else {
        catalog.get(store, &item_code).await?
    };
    // A reference that cannot be read is refused with what is wrong with it: never a skipped
    // comparison with the catalog. The schema may have said the same about a member already.
    let reference = match ItemRef::read(body.get("item")) {
        Ok(reference) => Some(reference),
        Err(problems) => {
            for (pointer, message) in problems {
                let pointer = format!("/item{pointer}");
                if !violations.iter().any(|v| v.pointer == pointer) {
                    violations.push(Violation::new(pointer, message));
                }
            }
            None
        }
    };
    if let Some(reference) = &reference {
        for d in crate::catalog::drift(reference, current.as_deref()) {
            violations.push(Violation::new(format!("/item{}", d.pointer()), d.message()));
        }
    }
    let mut shared = Vec::new();
    if let Some(item) = &current
        && violations.is_empty()
    {
        shared = supply_by_sharing(config, store, holders, &mut body, item).await?;
    }
    if let Some(item) = &current {
        violations.extend(material_problems(&body, item));
    }
    if reference.is_none() || !violations.is_empty() {
        return Err(AcceptError::Invalid(violations));
    }
    // Valid: read into its type, once. (The schema and the reference were checked, so this
    // fails only if the two disagree, which is then said as a problem of the document.)
    let application = Application::deserialize(&body)
        .map_err(|e| AcceptError::Invalid(vec![Violation::new("", e.to_string())]))?;
    let differ = applicant_mismatches(&application.applicant, &user);
    if !differ.is_empty() {
        return Err(AcceptError::NotTheApplicant(differ));
    }
    if let Some(required) = current.as_ref().and_then(|i| i.min_real_name_level)
        && user.real_name_level < required
    {
        return Err(AcceptError::RealNameLevel {
            item: item_code,
            required,
            given: user.real_name_level,
        });
    }
    let region = application.region.clone();
    let adapter = crate::routing::route(config, &application.item.code, region.as_deref())
        .ok_or(AcceptError::NoSystem { region })?;
    let system = adapter.id.clone();

    // Room in the outbox first, before any work for a request that may be refused for want of
    // it; a request repeated under its Idempotency-Key needs none, since it stores nothing new
    // (the store says whether it repeats one).
    let reservation = match backlogs.reserve(store, adapter).await? {
        Ok(reservation) => Some(reservation),
        Err(full) => match &idempotency_key {
            Some(key) if store.idempotency_key_used(key).await? => None,
            _ => return Err(full.into()),
        },
    };

    let id = match application.id {
        Some(id) => id,
        None => {
            let id = new_application_id();
            body["id"] = Value::String(id.clone());
            id
        }
    };
    let body_text = body.to_string();
    // Accepted means deliverable: the application in its system's format, written now, once.
    // (A refusal here gives the room back: the reservation is dropped unkept.)
    let message = {
        let mut map = tracer.start("application.map", SpanKind::Internal, Some(span.context()));
        map.set("tongban.system", system.clone());
        let message = outbound_message(config, adapter, &id, &body, &body_text, &trace_context);
        if message.is_err() {
            map.fail("the system's mapping cannot write it");
        }
        message?
    };
    let identity = serde_json::to_string(&Identity::of(&user))
        .map_err(|e| StoreError::Corrupt(format!("cannot keep the applicant's identity: {e}")))?;
    let submitted_shareable = shareable_but_submitted(&body, current.as_deref());
    let detail = |what: &str| {
        let mut detail = format!(
            "{what} for {system}, item {item_code}, applicant {}, subject {}",
            mask_id(&user.id_number),
            subject_digest(&user.subject)
        );
        if !shared.is_empty() {
            let ids: Vec<&str> = shared.iter().map(|s| s.material.as_str()).collect();
            detail.push_str(&format!("; shared by reference: {}", ids.join(", ")));
        }
        if !submitted_shareable.is_empty() {
            detail.push_str(&format!(
                "; submitted though sharing could supply them: {}",
                submitted_shareable.join(", ")
            ));
        }
        detail
    };
    let department = current
        .as_ref()
        .map(|item| item.department.uscc.clone())
        .unwrap_or_default();
    let accesses = shared
        .iter()
        .map(|s| AccessToRecord {
            id: super::sharing::access_id(),
            holder_key: s.holder_key.clone(),
            department: department.clone(),
            system_id: system.clone(),
            license_id: s.license_id.clone(),
            purpose: MATERIAL_PURPOSE.to_owned(),
            detail: Some(format!("material `{}` for application {id}", s.material)),
        })
        .collect();
    // Recorded in the application's own transaction: one commit, and never one without the other.
    let audit = AuditEntry {
        actor,
        action: "POST /api/v1/applications".into(),
        target: format!("/api/v1/applications/{id}"),
        outcome: "ok 202".into(),
        detail: detail("accepted"),
    };
    let mut commit = tracer.start(
        "application.commit",
        SpanKind::Internal,
        Some(span.context()),
    );
    let accepted = acceptor
        .write(ApplicationToAccept {
            id: id.clone(),
            item_code: item_code.clone(),
            item_version: application.item.version,
            department,
            system_id: system.clone(),
            body: body_text,
            identity: Some(identity),
            message,
            idempotency: idempotency_key.map(|k| (k, request_hash)),
            audit: Some(audit.clone()),
            accesses,
            trace_context: Some(trace_context),
        })
        .await;
    if let Err(e) = &accepted {
        commit.fail(if e.is_permanent() {
            "the store refused the write"
        } else {
            "the store is unavailable"
        });
    }
    commit.end();
    let accepted = accepted?;
    match accepted {
        Accepted::New { accepted_at } => {
            if let Some(reservation) = reservation {
                reservation.keep();
            }
            Ok(Receipt {
                application_id: id,
                system_id: system,
                accepted_at,
                replayed: false,
                audit_detail: audit.detail,
                shared_materials: shared
                    .into_iter()
                    .map(|s| (s.material, s.license_id))
                    .collect(),
                submitted_shareable,
            })
        }
        Accepted::Replayed { application_id } => {
            let record = store.application(&application_id).await?.ok_or_else(|| {
                StoreError::Corrupt("an accepted application cannot be read".into())
            })?;
            Ok(Receipt {
                application_id: record.id,
                system_id: record.system_id,
                accepted_at: record.accepted_at,
                replayed: true,
                audit_detail: detail("answered again (Idempotency-Key)"),
                shared_materials: Vec::new(),
                submitted_shareable: Vec::new(),
            })
        }
        Accepted::KeyReused => Err(AcceptError::KeyReused),
        Accepted::DuplicateId => Err(AcceptError::DuplicateId),
    }
}

/// The application in its system's format, as every attempt will send it (with the attempt's
/// identity assertion in the places left open), or the problems that keep the system's mapping
/// from writing it, each at its pointer: accepted means deliverable, so an application its
/// system's format cannot carry (a number where the system wants an integer) is refused now,
/// not dead-lettered later. A document holding the text that marks the open places is checked
/// the same way but mapped again at each attempt.
fn outbound_message(
    config: &Config,
    adapter: &AdapterConfig,
    id: &str,
    body: &Value,
    body_text: &str,
    traceparent: &str,
) -> Result<Option<OpenDocument>, AcceptError> {
    // The configuration names only mappings it has compiled.
    let Some(mapping) = config.mappings.get(&adapter.outbound.mapping) else {
        return Ok(None);
    };
    match crate::routing::open_message(adapter, mapping, id, body, Some(traceparent)) {
        Ok(_) if OpenDocument::holds_marker(body_text) => Ok(None),
        Ok(open) => Ok(Some(open)),
        Err(errors) => Err(AcceptError::Invalid(
            errors
                .into_iter()
                .map(|e| {
                    Violation::new(
                        if e.path == "/" { String::new() } else { e.path },
                        format!(
                            "{} (the format of system {}: mapping {}, field {})",
                            e.message, adapter.id, mapping.name, e.field
                        ),
                    )
                })
                .collect(),
        )),
    }
}

/// A violation for every string value in `body` that holds a control character other than
/// tab, newline and return: no field of an application means one, and the XML most
/// departments' systems read cannot carry one at all, so it would be accepted only to fail
/// at delivery. (A member name is the schema's to refuse.)
fn control_characters(body: &Value) -> Vec<Violation> {
    let control = |c: char| c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r');
    crate::schema::text_pointers(body, &|s: &str| s.chars().any(control))
        .into_iter()
        .filter(|(_, is_name)| !is_name)
        .filter_map(|(pointer, _)| {
            let c = body.pointer(&pointer)?.as_str()?.chars().find(|&c| control(c))?;
            Some(Violation::new(
                pointer,
                format!(
                    "holds the control character U+{:04X}, which no field of an application may hold",
                    u32::from(c)
                ),
            ))
        })
        .collect()
}

/// The purpose of the hub's own accesses to an applicant's results, made to attach a material
/// by reference; the access's detail names the application.
pub const MATERIAL_PURPOSE: &str = "material-reuse";

/// A required material attached by reference to a result of the applicant's.
struct SharedMaterial {
    material: String,
    license_id: String,
    holder_key: String,
}

/// Attaches to `body` every required material of `item` it lacks whose license type
/// (`shared_by`) the applicant holds a valid, sealed result of that the negative list lets
/// the item's department have for [`MATERIAL_PURPOSE`] (the latest such result), as
/// `{id, name, trust_level: "A", shared_result: {elicense_id}}`; says which it attached.
async fn supply_by_sharing(
    config: &Config,
    store: &Store,
    holders: &HolderIndex,
    body: &mut Value,
    item: &Item,
) -> Result<Vec<SharedMaterial>, StoreError> {
    let applicant = || {
        let id_type = body.pointer("/applicant/id_type")?.as_str()?.parse().ok()?;
        let number = body.pointer("/applicant/id_number")?.as_str()?;
        Some(holders.of(id_type, number))
    };
    let Some(holder_key) = applicant() else {
        return Ok(Vec::new());
    };
    let given: Vec<String> = body
        .get("materials")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut shared = Vec::new();
    for material in item
        .materials
        .iter()
        .filter(|m| m.required && !given.contains(&m.id))
    {
        let Some(license_type) = &material.shared_by else {
            continue;
        };
        let held = store
            .held_results(&holder_key, Some(license_type), &[ResultState::Valid])
            .await?;
        let usable = held.iter().rev().find(|h| {
            h.record.credential.is_some()
                && config
                    .sharing
                    .withheld_by(
                        license_type,
                        h.item_code.as_deref(),
                        &item.department.uscc,
                        MATERIAL_PURPOSE,
                    )
                    .is_none()
        });
        let (Some(found), Some(list)) = (
            usable,
            body.get_mut("materials").and_then(Value::as_array_mut),
        ) else {
            continue;
        };
        list.push(serde_json::json!({
            "id": material.id,
            "name": material.name,
            "trust_level": "A",
            "shared_result": { "elicense_id": found.record.license_id },
        }));
        shared.push(SharedMaterial {
            material: material.id.clone(),
            license_id: found.record.license_id.clone(),
            holder_key: holder_key.clone(),
        });
    }
    Ok(shared)
}

/// The materials `body` submits itself (a digest, not a shared result) that sharing could
/// have supplied.
fn shareable_but_submitted(body: &Value, item: Option<&Item>) -> Vec<String> {
    let Some(item) = item else {
        return Vec::new();
    };
    body.get("materials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("shared_result").is_none())
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .filter(|id| {
            item.materials
                .iter()
                .any(|c| c.id == *id && c.can_be_shared())
        })
        .map(str::to_owned)
        .collect()
}

/// Every required material of `item` the application lacks, and every material it names that
/// `item` does not have.
fn material_problems(body: &Value, item: &Item) -> Vec<Violation> {
    let given: Vec<&str> = body
        .get("materials")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let missing = item
        .materials
        .iter()
        .filter(|m| m.required && !given.contains(&m.id.as_str()))
        .map(|m| {
            Violation::new(
                "/materials",
                format!("required material `{}` ({}) is missing", m.id, m.name),
            )
        });
    let foreign = given
        .iter()
        .enumerate()
        .filter(|(_, id)| !item.materials.iter().any(|m| m.id == **id))
        .map(|(i, _)| {
            Violation::new(
                format!("/materials/{i}/id"),
                "is not a material of this item",
            )
        });
    missing.chain(foreign).collect()
}

/// Which members of the application's applicant differ from the identity the token proves
/// (names of members only: the values are personal data).
fn applicant_mismatches(applicant: &Applicant, user: &UserIdentity) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if applicant.kind != user.applicant_kind {
        differ.push("kind");
    }
    if applicant.id_type != user.id_type {
        differ.push("id_type");
    }
    if !applicant
        .id_number
        .trim()
        .eq_ignore_ascii_case(&user.id_number)
    {
        differ.push("id_number");
    }
    if applicant.name.trim() != user.name {
        differ.push("name");
    }
    differ
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new application id: time-ordered, unique across hub processes sharing a store.
fn new_application_id() -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(
        "TB-{:011x}-{:05x}{:05x}",
        clock::now_millis(),
        std::process::id() & 0xfffff,
        n & 0xfffff
    )
}
