//! Routing tables: accepted applications and their idempotency keys, the outbox of deliveries
//! with every attempt, and the case events and results systems send back.

use super::{Backend, Store, StoreError, rows};
use crate::clock;
use crate::mapping::OpenDocument;
use crate::model::{ApplicationState, AttemptKind, DeliveryState, FeedKind};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// An application to record, with its first delivery.
#[derive(Debug, Clone)]
pub struct NewApplication<'a> {
    pub id: &'a str,
    pub item_code: &'a str,
    pub item_version: i64,
    /// The item's department (USCC), as the catalog gives it.
    pub department: &'a str,
    pub system_id: &'a str,
    /// The canonical application, as JSON text.
    pub body: &'a str,
    /// The caller's `Idempotency-Key` and a hash of its request, if it sent one.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// The applicant's verified identity, already masked, as JSON text: stored on every
    /// delivery so each attempt can carry an identity assertion.
    pub identity: Option<String>,
    /// The delivery's message, written in its system's format when it was accepted.
    pub message: Option<&'a OpenDocument>,
}

/// An application to accept together with others ([`Store::accept_applications`]): an owned
/// [`NewApplication`] with the audit record of its acceptance.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationToAccept {
    pub id: String,
    pub item_code: String,
    pub item_version: i64,
    pub department: String,
    pub system_id: String,
    pub body: String,
    /// The caller's `Idempotency-Key` and a hash of its request.
    pub idempotency: Option<(String, String)>,
    pub identity: Option<String>,
    /// The delivery's message, written in its system's format (see [`NewApplication`]).
    pub message: Option<OpenDocument>,
    pub audit: Option<crate::audit::AuditEntry>,
    /// The `traceparent` of the span that accepted it, continued by everything after.
    pub trace_context: Option<String>,
    /// Accesses to the applicant's results it makes (materials shared by reference), recorded
    /// with it when it is new.
    pub accesses: Vec<super::AccessToRecord>,
}

/// What recording an application came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Committed, with its delivery in the outbox.
    New { accepted_at: i64 },
    /// The idempotency key was used before for the same request: its application.
    Replayed { application_id: String },
    /// The idempotency key was used before for a different request.
    KeyReused,
    /// An application with this id exists already.
    DuplicateId,
}

/// A stored application, without its personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationRecord {
    pub id: String,
    pub item_code: String,
    pub item_version: i64,
    /// The item's department (USCC), `""` when it was not known.
    pub department: String,
    pub system_id: String,
    pub state: ApplicationState,
    pub accepted_at: i64,
    pub updated_at: i64,
    /// The canonical document, for those allowed to see it.
    pub body: String,
    /// The `traceparent` of the span that accepted it (none before traces existed).
    pub trace_context: Option<String>,
}

/// A delivery claimed by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: String,
    pub application_id: String,
    pub payload: String,
    /// Attempts so far, all told (numbering the next one).
    pub attempts: i64,
    /// Attempts since the last replay (what the retry budget counts).
    pub attempts_in_window: i64,
    /// When the retry window began: acceptance, or the last replay.
    pub window_start: i64,
    /// The applicant's verified identity (masked JSON text), if the application came with one.
    pub identity: Option<String>,
    /// Its message as written when it was accepted; `None`: map it for each attempt.
    pub message: Option<OpenDocument>,
    /// Its application's trace context (`traceparent`), if it has one.
    pub trace_context: Option<String>,
}

/// A delivery as `GET /applications/{id}` and the dead-letter list show it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: String,
    pub application_id: String,
    pub system_id: String,
    pub status: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: AttemptKind,
    pub status_code: Option<i64>,
    pub detail: Option<String>,
}

/// One finished attempt, as the lanes hand it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedAttempt {
    pub delivery_id: String,
    pub application_id: String,
    /// Its number: the delivery's attempts before it, plus one.
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: AttemptOutcome,
}

impl FinishedAttempt {
    pub fn new(
        delivery: &ClaimedDelivery,
        started_at: i64,
        duration_ms: i64,
        outcome: AttemptOutcome,
    ) -> FinishedAttempt {
        FinishedAttempt {
            delivery_id: delivery.id.clone(),
            application_id: delivery.application_id.clone(),
            attempt: delivery.attempts + 1,
            started_at,
            duration_ms,
            outcome,
        }
    }
}

/// How an attempt ended, for the store.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered {
        status: Option<u16>,
    },
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: i64,
        status: Option<u16>,
        reason: String,
    },
    /// Give up: the delivery becomes a dead letter.
    Dead {
        status: Option<u16>,
        reason: String,
    },
}

/// A case event to store, with its entry in the supervision feed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventToRecord {
    pub system_id: String,
    pub event_id: String,
    pub application_id: String,
    pub node_name: String,
    pub occurred_at: String,
    /// The canonical event as the system sent it (JSON text).
    pub body: String,
    /// The application's state after this event.
    pub state: ApplicationState,
    /// For a completion: what it makes of the application's results that awaited it.
    pub settles: Option<super::results::Settlement>,
    pub feed: FeedText,
}

/// What the supervision feed shows of a case event or a result's change, made by whoever
/// records it: the store keeps it as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedText {
    /// What those beyond the department see (JSON text, personal data masked).
    pub body: String,
    /// `event.<system>.<step>` or `result.<system>.<state>`.
    pub routing_key: String,
    /// The application's department (USCC), `""` if unknown.
    pub department: String,
    pub item_code: String,
}

impl FeedText {
    /// Appends this as a feed entry of `kind` about `application_id` of `system_id`, inside
    /// `tx`.
    pub(super) async fn append_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        kind: FeedKind,
        system_id: &str,
        application_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let entry = super::NewFeedEntry {
            kind,
            system_id,
            department: &self.department,
            item_code: &self.item_code,
            application_id,
            level: None,
            routing_key: &self.routing_key,
            body: &self.body,
        };
        super::supervision::append_feeds_in_tx(tx, std::slice::from_ref(&entry), at).await?;
        Ok(())
    }
}

/// A stored case event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub system_id: String,
    pub event_id: String,
    pub received_at: i64,
    pub body: String,
}

const DELIVERY_COLUMNS: &str = "id, application_id, system_id, status, attempts, next_attempt_at, last_error, created_at, finished_at";

impl Store {
    /// Records an application and its first delivery in one transaction, honouring the
    /// idempotency key. Only after this returns `New` may the caller answer 202. (The API goes
    /// through [`accept_applications`](Store::accept_applications), with the audit record.)
    pub async fn accept_application(
        &self,
        app: &NewApplication<'_>,
    ) -> Result<Accepted, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let accepted = accept_in_tx(&mut tx, app, None, None, clock::now_millis()).await?;
        turn.commit(tx).await?;
        Ok(accepted)
    }

    /// Accepts several applications in one transaction, each as
    /// [`accept_application`](Store::accept_application) would and with its audit record when
    /// new (no accepted application without its record): the API's group commit. One result
    /// per application, in order; an application that is not new leaves no trace and does not
    /// hold the others back.
    pub async fn accept_applications(
        &self,
        apps: &[ApplicationToAccept],
    ) -> Result<Vec<Accepted>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        let now = clock::now_millis();
        let results = if repeats_within(apps) {
            // Two of them share an id or a key: taken one at a time, so that the later one
            // meets the earlier exactly as it would in a later batch.
            let mut results = Vec::with_capacity(apps.len());
            for a in apps {
                let accepted = accept_in_tx(
                    &mut tx,
                    &a.as_new(),
                    a.audit.as_ref(),
                    a.trace_context.as_deref(),
                    now,
                )
                .await?;
                if matches!(accepted, Accepted::New { .. }) {
                    for access in &a.accesses {
                        super::results::insert_access(&mut tx, access, now).await?;
                    }
                }
                results.push(accepted);
            }
            results
        } else {
            accept_batch_in_tx(&mut tx, apps, now).await?
        };
        turn.commit(tx).await?;
        Ok(results)
    }

    /// Whether the idempotency key `key` was used before.
    pub async fn idempotency_key_used(&self, key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS used FROM idempotency_keys WHERE idem_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Those of `ids` that are stored, by id.
    pub async fn applications(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, ApplicationRecord>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in rows::chunks(ids.len()) {
            let sql = format!(
                "SELECT id, item_code, item_version, department, system_id, state, accepted_at, updated_at, body, \
                 trace_context FROM applications WHERE id IN ({})",
                rows::list(chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for id in &ids[chunk] {
                query = query.bind(id);
            }
            for r in query.fetch_all(&self.pool).await? {
                let record = application_from_row(&r)?;
                out.insert(record.id.clone(), record);
            }
        }
        Ok(out)
    }

    pub async fn application(&self, id: &str) -> Result<Option<ApplicationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, item_code, item_version, department, system_id, state, accepted_at, updated_at, body, \
             trace_context FROM applications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| application_from_row(&r)).transpose()
    }

    /// Claims up to `limit` deliveries of `system` that are due, for `lease_ms`: the oldest
    /// first, and per application only its earliest unfinished message, so messages of one
    /// application go out in order. On PostgreSQL rows claimed by another hub are skipped.
    pub async fn claim_deliveries(
        &self,
        system: &str,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let _turn = self.write_turn().await;
        let now = clock::now_millis();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE deliveries SET claimed_until = $1 WHERE id IN (\
               SELECT d.id FROM deliveries d WHERE d.system_id = $2 AND d.status = 'pending' \
               AND d.next_attempt_at <= $3 AND d.claimed_until < $3 \
               AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.application_id = d.application_id \
                               AND e.seq < d.seq AND e.status <> 'delivered') \
               ORDER BY d.next_attempt_at LIMIT $4 {lock}) \
             RETURNING id, application_id, payload, attempts, attempts_base, window_start, identity, \
               message, assertion_at, trace_context"
        );
        let rows = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(system)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.leases)
            .await?;
        rows.iter()
            .map(|r| {
                let attempts: i64 = r.try_get("attempts")?;
                let base: i64 = r.try_get("attempts_base")?;
                Ok(ClaimedDelivery {
                    id: r.try_get("id")?,
                    application_id: r.try_get("application_id")?,
                    payload: r.try_get("payload")?,
                    attempts,
                    attempts_in_window: attempts - base,
                    window_start: r.try_get("window_start")?,
                    identity: r.try_get("identity")?,
                    message: open_document(r.try_get("message")?, r.try_get("assertion_at")?)?,
                    trace_context: r.try_get("trace_context")?,
                })
            })
            .collect()
    }

    /// Gives up every claim, e.g. at start when this process is the store's only user.
    pub async fn release_all_claims(&self) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        Ok(
            sqlx::query("UPDATE deliveries SET claimed_until = 0 WHERE claimed_until <> 0")
                .execute(&self.leases)
                .await?
                .rows_affected(),
        )
    }

    /// Hands a claimed delivery back untried, due again at `next_attempt_at`.
    pub async fn release_delivery(&self, id: &str, next_attempt_at: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE deliveries SET claimed_until = 0, next_attempt_at = $2 WHERE id = $1")
            .bind(id)
            .bind(next_attempt_at)
            .execute(&self.leases)
            .await?;
        Ok(())
    }

    /// Records one attempt and its outcome on the delivery (and the application).
    pub async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        started_at: i64,
        duration_ms: i64,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        self.record_attempts(&[FinishedAttempt::new(
            delivery,
            started_at,
            duration_ms,
            outcome.clone(),
        )])
        .await
    }

    /// Records attempts and their outcomes in one transaction: the outbox lanes' group commit.
    pub async fn record_attempts(&self, attempts: &[FinishedAttempt]) -> Result<(), StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        // In application order, like `record_events`, so that batches cannot deadlock.
        let mut sorted: Vec<&FinishedAttempt> = attempts.iter().collect();
        sorted.sort_by(|a, b| a.application_id.cmp(&b.application_id));
        let mut deliveries = std::collections::HashSet::new();
        if sorted
            .iter()
            .all(|a| deliveries.insert(a.delivery_id.as_str()))
        {
            record_attempts_in_tx(&mut tx, &sorted, clock::now_millis()).await?;
        } else {
            // Two attempts at one delivery: one at a time, in order.
            for a in sorted {
                record_attempt_in_tx(&mut tx, a).await?;
            }
        }
        turn.commit(tx).await?;
        Ok(())
    }

    pub async fn deliveries_of(
        &self,
        application_id: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE application_id = $1 ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(application_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn attempts_of(&self, delivery_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, started_at, duration_ms, outcome, status_code, detail FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    attempt: r.try_get("attempt")?,
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    outcome: super::parsed(r, "outcome")?,
                    status_code: r.try_get("status_code")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Dead letters, newest first, optionally of one system.
    pub async fn dead_letters(
        &self,
        system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let (filter, bind) = match system {
            Some(s) => ("AND system_id = $2", Some(s)),
            None => ("", None),
        };
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'dead' {filter} ORDER BY finished_at DESC, id LIMIT $1"
        );
        let mut q = sqlx::query(&sql).bind(i64::from(limit));
        if let Some(s) = bind {
            q = q.bind(s);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Puts a dead letter back in the outbox with a fresh retry budget, its stored message
    /// dropped (so its next attempt writes it with the mapping then in force). Returns the
    /// delivery, or `None` when there is no dead letter with that id.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let now = clock::now_millis();
        let (turn, mut tx) = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts_base = attempts, window_start = $2, \
             next_attempt_at = $2, claimed_until = 0, finished_at = NULL, message = NULL, assertion_at = NULL \
             WHERE id = $1 AND status = 'dead'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            turn.rollback(tx).await?;
            return Ok(None);
        }
        sqlx::query(
            "UPDATE applications SET state = 'accepted', updated_at = $2 WHERE id = \
             (SELECT application_id FROM deliveries WHERE id = $1) AND state = 'undeliverable'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
        let record = delivery_from_row(&row)?;
        turn.commit(tx).await?;
        Ok(Some(record))
    }

    /// Stores a case event unless the system sent it before, with its application's new state
    /// and its feed entry, in one transaction. Returns whether it was new.
    pub async fn record_event(&self, event: &EventToRecord) -> Result<bool, StoreError> {
        let new = self.record_events(std::slice::from_ref(event)).await?;
        Ok(new.first().copied().unwrap_or(false))
    }

    /// Stores case events in one transaction, each as [`record_event`](Store::record_event)
    /// would: the inbound side's group commit. Whether each was new, in order (an event the
    /// system sent before, or earlier in the same batch, is not). A few statements for the
    /// whole batch: the events, the applications' states, the feed entries.
    pub async fn record_events(&self, events: &[EventToRecord]) -> Result<Vec<bool>, StoreError> {
        let (turn, mut tx) = self.begin_write().await?;
        // One arrival time for the whole batch: events committed together arrived together,
        // and the supervision engine reads equal arrival times as one report (their order
        // among themselves is not held against the system).
        let now = clock::now_millis();
        let new = record_events_in_tx(&mut tx, events, now).await?;
        turn.commit(tx).await?;
        if new.contains(&true) {
            self.signal_feed_moved();
        }
        Ok(new)
    }

    pub async fn events_of(&self, application_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, event_id, received_at, body FROM case_events WHERE application_id = $1 \
             ORDER BY received_at, event_id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRecord {
                    system_id: r.try_get("system_id")?,
                    event_id: r.try_get("event_id")?,
                    received_at: r.try_get("received_at")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }

    /// The case events of each of `application_ids`, in [`events_of`](Store::events_of)'s
    /// order per application: a few statements for a whole batch of cases.
    pub async fn events_of_applications(
        &self,
        application_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<EventRecord>>, StoreError> {
        let mut out: std::collections::HashMap<String, Vec<EventRecord>> =
            std::collections::HashMap::with_capacity(application_ids.len());
        for chunk in rows::chunks(application_ids.len()) {
            let sql = format!(
                "SELECT application_id, system_id, event_id, received_at, body FROM case_events \
                 WHERE application_id IN ({}) ORDER BY application_id, received_at, event_id",
                rows::list(chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for id in &application_ids[chunk] {
                query = query.bind(id);
            }
            for r in query.fetch_all(&self.pool).await? {
                out.entry(r.try_get("application_id")?)
                    .or_default()
                    .push(EventRecord {
                        system_id: r.try_get("system_id")?,
                        event_id: r.try_get("event_id")?,
                        received_at: r.try_get("received_at")?,
                        body: r.try_get("body")?,
                    });
            }
        }
        Ok(out)
    }

    /// The results stored for an application: (system, license id), in the order received.
    pub async fn results_of(
        &self,
        application_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT system_id, license_id FROM results WHERE application_id = $1 \
             ORDER BY received_at, license_id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("system_id")?, r.try_get("license_id")?)))
            .collect()
    }

    /// How many deliveries of `system` wait in the outbox (not yet delivered or dead), from
    /// every hub sharing the store.
    pub async fn outbox_depth(&self, system: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE system_id = $1 AND status = $2",
        )
        .bind(system)
        .bind(DeliveryState::Pending.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    /// How many deliveries of a system are in each status, for metrics and tests.
    pub async fn delivery_counts(&self, system: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries WHERE system_id = $1 GROUP BY status ORDER BY status")
            .bind(system)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}

fn application_from_row(r: &AnyRow) -> Result<ApplicationRecord, StoreError> {
    Ok(ApplicationRecord {
        id: r.try_get("id")?,
        item_code: r.try_get("item_code")?,
        item_version: r.try_get("item_version")?,
        department: r.try_get("department")?,
        system_id: r.try_get("system_id")?,
        state: super::parsed(r, "state")?,
        accepted_at: r.try_get("accepted_at")?,
        updated_at: r.try_get("updated_at")?,
        body: r.try_get("body")?,
        trace_context: r.try_get("trace_context")?,
    })
}

fn delivery_from_row(r: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        system_id: r.try_get("system_id")?,
        status: super::parsed(r, "status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Records `attempts` (at most one per delivery) and their outcomes inside `tx`, a few
/// statements for the whole batch: the attempts, then for each kind of outcome its deliveries
/// and applications.
async fn record_attempts_in_tx(
    tx: &mut Transaction<'static, Any>,
    attempts: &[&FinishedAttempt],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in rows::chunks(attempts.len()) {
        let sql = format!(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, outcome, status_code, detail) \
             VALUES {}",
            rows::values(chunk.len(), 7, 1)
        );
        let mut query = sqlx::query(&sql);
        for a in &attempts[chunk] {
            let (kind, status, detail) = match &a.outcome {
                AttemptOutcome::Delivered { status } => (AttemptKind::Delivered, *status, None),
                AttemptOutcome::Retry { status, reason, .. } => {
                    (AttemptKind::Retry, *status, Some(reason.as_str()))
                }
                AttemptOutcome::Dead { status, reason } => {
                    (AttemptKind::Dead, *status, Some(reason.as_str()))
                }
            };
            query = query
                .bind(&a.delivery_id)
                .bind(a.attempt)
                .bind(a.started_at)
                .bind(a.duration_ms)
                .bind(kind.as_str())
                .bind(status.map(i64::from))
                .bind(detail);
        }
        query.execute(&mut **tx).await?;
    }
    let of = |kind: AttemptKind| -> Vec<&FinishedAttempt> {
        attempts
            .iter()
            .copied()
            .filter(|a| {
                kind == match a.outcome {
                    AttemptOutcome::Delivered { .. } => AttemptKind::Delivered,
                    AttemptOutcome::Retry { .. } => AttemptKind::Retry,
                    AttemptOutcome::Dead { .. } => AttemptKind::Dead,
                }
            })
            .collect()
    };
    let reason = |a: &FinishedAttempt| match &a.outcome {
        AttemptOutcome::Retry { reason, .. } | AttemptOutcome::Dead { reason, .. } => {
            Some(reason.clone())
        }
        AttemptOutcome::Delivered { .. } => None,
    };
    for group in [of(AttemptKind::Delivered), of(AttemptKind::Dead)] {
        let (delivery_state, application_state, only_from) = match group.first().map(|a| &a.outcome)
        {
            None => continue,
            Some(AttemptOutcome::Delivered { .. }) => (
                DeliveryState::Delivered,
                ApplicationState::Delivered,
                Some(ApplicationState::Accepted),
            ),
            Some(_) => (DeliveryState::Dead, ApplicationState::Undeliverable, None),
        };
        for chunk in rows::chunks(group.len()) {
            let n = chunk.len();
            // Parameters: the ids 1..=n, the attempt counts, the reasons, then the state and
            // the time.
            let sql = format!(
                "UPDATE deliveries SET status = ${}, attempts = {}, claimed_until = 0, last_error = {}, \
                 finished_at = ${} WHERE id IN ({})",
                3 * n + 1,
                rows::case_of("id", n, 1, n + 1),
                rows::case_of("id", n, 1, 2 * n + 1),
                3 * n + 2,
                rows::list(n, 1)
            );
            let part = &group[chunk];
            let mut query = sqlx::query(&sql);
            for a in part {
                query = query.bind(&a.delivery_id);
            }
            for a in part {
                query = query.bind(a.attempt);
            }
            for a in part {
                query = query.bind(reason(a));
            }
            query
                .bind(delivery_state.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            let sql = format!(
                "UPDATE applications SET state = $1, updated_at = $2 WHERE {} id IN ({})",
                if only_from.is_some() {
                    "state = $3 AND"
                } else {
                    ""
                },
                rows::list(n, if only_from.is_some() { 4 } else { 3 })
            );
            let mut query = sqlx::query(&sql).bind(application_state.as_str()).bind(now);
            if let Some(from) = only_from {
                query = query.bind(from.as_str());
            }
            for a in part {
                query = query.bind(&a.application_id);
            }
            query.execute(&mut **tx).await?;
        }
    }
    let retried = of(AttemptKind::Retry);
    for chunk in rows::chunks(retried.len()) {
        let n = chunk.len();
        let sql = format!(
            "UPDATE deliveries SET attempts = {}, claimed_until = 0, last_error = {}, next_attempt_at = {} \
             WHERE id IN ({})",
            rows::case_of("id", n, 1, n + 1),
            rows::case_of("id", n, 1, 2 * n + 1),
            rows::case_of("id", n, 1, 3 * n + 1),
            rows::list(n, 1)
        );
        let part = &retried[chunk];
        let mut query = sqlx::query(&sql);
        for a in part {
            query = query.bind(&a.delivery_id);
        }
        for a in part {
            query = query.bind(a.attempt);
        }
        for a in part {
            query = query.bind(reason(a));
        }
        for a in part {
            let next = match a.outcome {
                AttemptOutcome::Retry {
                    next_attempt_at, ..
                } => next_attempt_at,
                _ => now,
            };
            query = query.bind(next);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn record_attempt_in_tx(
    tx: &mut Transaction<'static, Any>,
    a: &FinishedAttempt,
) -> Result<(), StoreError> {
    let now = clock::now_millis();
    let (kind, status, detail) = match &a.outcome {
        AttemptOutcome::Delivered { status } => (AttemptKind::Delivered, *status, None),
        AttemptOutcome::Retry { status, reason, .. } => {
            (AttemptKind::Retry, *status, Some(reason.as_str()))
        }
        AttemptOutcome::Dead { status, reason } => {
            (AttemptKind::Dead, *status, Some(reason.as_str()))
        }
    };
    sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, outcome, status_code, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.delivery_id)
        .bind(a.attempt)
        .bind(a.started_at)
        .bind(a.duration_ms)
        .bind(kind.as_str())
        .bind(status.map(i64::from))
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    match &a.outcome {
        AttemptOutcome::Delivered { .. } => {
            sqlx::query(
                    "UPDATE deliveries SET status = 'delivered', attempts = $2, claimed_until = 0, last_error = NULL, \
                     finished_at = $3 WHERE id = $1",
                )
                .bind(&a.delivery_id)
                .bind(a.attempt)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            sqlx::query("UPDATE applications SET state = 'delivered', updated_at = $2 WHERE id = $1 AND state = 'accepted'")
                    .bind(&a.application_id)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
        }
        AttemptOutcome::Retry {
            next_attempt_at,
            reason,
            ..
        } => {
            sqlx::query(
                    "UPDATE deliveries SET attempts = $2, claimed_until = 0, last_error = $3, next_attempt_at = $4 WHERE id = $1",
                )
                .bind(&a.delivery_id)
                .bind(a.attempt)
                .bind(reason)
                .bind(next_attempt_at)
                .execute(&mut **tx)
                .await?;
        }
        AttemptOutcome::Dead { reason, .. } => {
            sqlx::query(
                    "UPDATE deliveries SET status = 'dead', attempts = $2, claimed_until = 0, last_error = $3, \
                     finished_at = $4 WHERE id = $1",
                )
                .bind(&a.delivery_id)
                .bind(a.attempt)
                .bind(reason)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "UPDATE applications SET state = 'undeliverable', updated_at = $2 WHERE id = $1",
            )
            .bind(&a.application_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Accepts one application inside `tx`. Leaves nothing behind when it is not new (a replayed
/// or reused idempotency key, an id taken), so that others in the same transaction go on.
async fn accept_in_tx(
    tx: &mut Transaction<'static, Any>,
    app: &NewApplication<'_>,
    audit: Option<&crate::audit::AuditEntry>,
    trace_context: Option<&str>,
    now: i64,
) -> Result<Accepted, StoreError> {
    if let Some((key, hash)) = app.idempotency {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (idem_key, request_hash, application_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(key)
        .bind(hash)
        .bind(app.id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query(
                "SELECT request_hash, application_id FROM idempotency_keys WHERE idem_key = $1",
            )
            .bind(key)
            .fetch_one(&mut **tx)
            .await?;
            let stored_hash: String = row.try_get("request_hash")?;
            return Ok(if stored_hash == hash {
                Accepted::Replayed {
                    application_id: row.try_get("application_id")?,
                }
            } else {
                Accepted::KeyReused
            });
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO applications (id, item_code, item_version, department, system_id, state, body, accepted_at, updated_at, \
         trace_context) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(app.id)
    .bind(app.item_code)
    .bind(app.item_version)
    .bind(app.department)
    .bind(app.system_id)
    .bind(ApplicationState::Accepted.as_str())
    .bind(app.body)
    .bind(now)
    .bind(trace_context)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        // The key just recorded must not point at someone else's application.
        if let Some((key, _)) = app.idempotency {
            sqlx::query("DELETE FROM idempotency_keys WHERE idem_key = $1 AND application_id = $2")
                .bind(key)
                .bind(app.id)
                .execute(&mut **tx)
                .await?;
        }
        return Ok(Accepted::DuplicateId);
    }
    sqlx::query(
        "INSERT INTO deliveries (id, application_id, seq, system_id, status, payload, attempts, attempts_base, \
         window_start, next_attempt_at, claimed_until, created_at, identity, message, assertion_at, trace_context) \
         VALUES ($1, $2, 1, $3, 'pending', $4, 0, 0, $5, $5, 0, $5, $6, $7, $8, $9)",
    )
    .bind(first_delivery_id(app.id))
    .bind(app.id)
    .bind(app.system_id)
    .bind(app.body)
    .bind(now)
    .bind(app.identity.as_deref())
    .bind(app.message.map(|m| m.bytes.as_slice()))
    .bind(app.message.map(|m| offsets_text(&m.assertion_at)))
    .bind(trace_context)
    .execute(&mut **tx)
    .await?;
    if let Some(entry) = audit {
        super::audit::append_audit_in_tx(tx, entry).await?;
    }
    Ok(Accepted::New { accepted_at: now })
}

impl ApplicationToAccept {
    fn as_new(&self) -> NewApplication<'_> {
        NewApplication {
            id: &self.id,
            item_code: &self.item_code,
            item_version: self.item_version,
            department: &self.department,
            system_id: &self.system_id,
            body: &self.body,
            idempotency: self
                .idempotency
                .as_ref()
                .map(|(key, hash)| (key.as_str(), hash.as_str())),
            identity: self.identity.clone(),
            message: self.message.as_ref(),
        }
    }
}

/// Whether two of `apps` share an application id or an idempotency key.
fn repeats_within(apps: &[ApplicationToAccept]) -> bool {
    let mut ids = std::collections::HashSet::with_capacity(apps.len());
    let mut keys = std::collections::HashSet::new();
    apps.iter().any(|a| {
        !ids.insert(a.id.as_str())
            || a.idempotency
                .as_ref()
                .is_some_and(|(key, _)| !keys.insert(key.as_str()))
    })
}

/// Accepts `apps` (no two with the same id or key) inside `tx`, each as [`accept_in_tx`]
/// would, a few statements for the whole batch: the keys first (a key used before answers for
/// its application), then the applications (an id taken before makes a duplicate, whose key is
/// taken back), then their deliveries and audit records.
async fn accept_batch_in_tx(
    tx: &mut Transaction<'static, Any>,
    apps: &[ApplicationToAccept],
    now: i64,
) -> Result<Vec<Accepted>, StoreError> {
    let mut results: Vec<Option<Accepted>> = vec![None; apps.len()];
    let keyed: Vec<usize> = (0..apps.len())
        .filter(|&i| apps[i].idempotency.is_some())
        .collect();
    if !keyed.is_empty() {
        let mut fresh = std::collections::HashSet::new();
        for chunk in rows::chunks(keyed.len()) {
            let sql = format!(
                "INSERT INTO idempotency_keys (idem_key, request_hash, application_id, created_at) \
                 VALUES {} ON CONFLICT (idem_key) DO NOTHING RETURNING idem_key",
                rows::values(chunk.len(), 4, 1)
            );
            let mut query = sqlx::query(&sql);
            for &i in &keyed[chunk] {
                let (key, hash) = apps[i].idempotency.as_ref().expect("keyed");
                query = query.bind(key).bind(hash).bind(&apps[i].id).bind(now);
            }
            for row in query.fetch_all(&mut **tx).await? {
                fresh.insert(row.try_get::<String, _>("idem_key")?);
            }
        }
        let used: Vec<usize> = keyed
            .iter()
            .copied()
            .filter(|&i| {
                let (key, _) = apps[i].idempotency.as_ref().expect("keyed");
                !fresh.contains(key)
            })
            .collect();
        for chunk in rows::chunks(used.len()) {
            let sql = format!(
                "SELECT idem_key, request_hash, application_id FROM idempotency_keys WHERE idem_key IN ({})",
                rows::list(chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for &i in &used[chunk.clone()] {
                query = query.bind(&apps[i].idempotency.as_ref().expect("keyed").0);
            }
            let found = query.fetch_all(&mut **tx).await?;
            for &i in &used[chunk] {
                let (key, hash) = apps[i].idempotency.as_ref().expect("keyed");
                let row = found
                    .iter()
                    .find(|r| r.try_get::<String, _>("idem_key").is_ok_and(|k| &k == key))
                    .ok_or_else(|| StoreError::Corrupt("an idempotency key vanished".into()))?;
                let stored_hash: String = row.try_get("request_hash")?;
                results[i] = Some(if &stored_hash == hash {
                    Accepted::Replayed {
                        application_id: row.try_get("application_id")?,
                    }
                } else {
                    Accepted::KeyReused
                });
            }
        }
    }
    let candidates: Vec<usize> = (0..apps.len()).filter(|&i| results[i].is_none()).collect();
    let mut inserted = std::collections::HashSet::new();
    for chunk in rows::chunks(candidates.len()) {
        let sql = format!(
            "INSERT INTO applications (id, item_code, item_version, department, system_id, state, body, accepted_at, updated_at, \
             trace_context) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            rows::values(chunk.len(), 10, 1)
        );
        let mut query = sqlx::query(&sql);
        for &i in &candidates[chunk] {
            let a = &apps[i];
            query = query
                .bind(&a.id)
                .bind(&a.item_code)
                .bind(a.item_version)
                .bind(&a.department)
                .bind(&a.system_id)
                .bind(ApplicationState::Accepted.as_str())
                .bind(&a.body)
                .bind(now)
                .bind(now)
                .bind(a.trace_context.as_deref());
        }
        for row in query.fetch_all(&mut **tx).await? {
            inserted.insert(row.try_get::<String, _>("id")?);
        }
    }
    let mut new = Vec::with_capacity(candidates.len());
    for i in candidates {
        let a = &apps[i];
        if inserted.contains(&a.id) {
            results[i] = Some(Accepted::New { accepted_at: now });
            new.push(i);
        } else {
            // The key just recorded must not point at someone else's application.
            if let Some((key, _)) = &a.idempotency {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE idem_key = $1 AND application_id = $2",
                )
                .bind(key)
                .bind(&a.id)
                .execute(&mut **tx)
                .await?;
            }
            results[i] = Some(Accepted::DuplicateId);
        }
    }
    for chunk in rows::chunks(new.len()) {
        let sql = format!(
            "INSERT INTO deliveries (id, application_id, seq, system_id, status, payload, attempts, attempts_base, \
             window_start, next_attempt_at, claimed_until, created_at, identity, message, assertion_at, trace_context) \
             VALUES {}",
            rows::values(chunk.len(), 16, 1)
        );
        let mut query = sqlx::query(&sql);
        for &i in &new[chunk] {
            let a = &apps[i];
            query = query
                .bind(first_delivery_id(&a.id))
                .bind(&a.id)
                .bind(1_i64)
                .bind(&a.system_id)
                .bind(DeliveryState::Pending.as_str())
                .bind(&a.body)
                .bind(0_i64)
                .bind(0_i64)
                .bind(now)
                .bind(now)
                .bind(0_i64)
                .bind(now)
                .bind(a.identity.as_deref())
                .bind(a.message.as_ref().map(|m| m.bytes.as_slice()))
                .bind(a.message.as_ref().map(|m| offsets_text(&m.assertion_at)))
                .bind(a.trace_context.as_deref());
        }
        query.execute(&mut **tx).await?;
    }
    let audits: Vec<&crate::audit::AuditEntry> =
        new.iter().filter_map(|&i| apps[i].audit.as_ref()).collect();
    super::audit::append_audits_in_tx(tx, &audits).await?;
    for &i in &new {
        for access in &apps[i].accesses {
            super::results::insert_access(tx, access, now).await?;
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Corrupt("an application was left undecided".into())))
        .collect()
}

/// The id of an application's first delivery. `~` cannot occur in an application id, and needs
/// no escaping in a URL.
fn first_delivery_id(application_id: &str) -> String {
    format!("{application_id}~1")
}

/// Stores `events` inside `tx` (see [`Store::record_events`]).
async fn record_events_in_tx(
    tx: &mut Transaction<'static, Any>,
    events: &[EventToRecord],
    now: i64,
) -> Result<Vec<bool>, StoreError> {
    // The feed's counter row before any application row, in every transaction that takes
    // both: the same order everywhere, so no deadlock on PostgreSQL.
    sqlx::query("UPDATE counters SET value = value WHERE name = 'supervision_feed'")
        .execute(&mut **tx)
        .await?;
    let mut stored = std::collections::HashSet::new();
    for chunk in rows::chunks(events.len()) {
        let sql = format!(
            "INSERT INTO case_events (system_id, event_id, application_id, node_name, occurred_at, received_at, body) \
             VALUES {} ON CONFLICT (system_id, event_id) DO NOTHING RETURNING system_id, event_id",
            rows::values(chunk.len(), 7, 1)
        );
        let mut query = sqlx::query(&sql);
        for e in &events[chunk] {
            query = query
                .bind(&e.system_id)
                .bind(&e.event_id)
                .bind(&e.application_id)
                .bind(&e.node_name)
                .bind(&e.occurred_at)
                .bind(now)
                .bind(&e.body);
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert((
                row.try_get::<String, _>("system_id")?,
                row.try_get::<String, _>("event_id")?,
            ));
        }
    }
    // New: stored now, and the first of its id in the batch.
    let new: Vec<bool> = events
        .iter()
        .map(|e| stored.remove(&(e.system_id.clone(), e.event_id.clone())))
        .collect();
    let fresh: Vec<&EventToRecord> = events
        .iter()
        .zip(&new)
        .filter_map(|(e, n)| n.then_some(e))
        .collect();
    if fresh.is_empty() {
        return Ok(new);
    }
    // A completed application stays completed, whatever comes after; in progress first, so
    // that a batch holding both ends completed.
    for state in [ApplicationState::InProgress, ApplicationState::Completed] {
        let mut ids: Vec<&str> = fresh
            .iter()
            .filter(|e| e.state == state)
            .map(|e| e.application_id.as_str())
            .collect();
        // In one order in every batch (attempts too), so that two cannot deadlock.
        ids.sort_unstable();
        ids.dedup();
        for chunk in rows::chunks(ids.len()) {
            let sql = format!(
                "UPDATE applications SET state = $1, updated_at = $2 WHERE state <> $3 AND id IN ({})",
                rows::list(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql)
                .bind(state.as_str())
                .bind(now)
                .bind(ApplicationState::Completed.as_str());
            for id in &ids[chunk] {
                query = query.bind(*id);
            }
            query.execute(&mut **tx).await?;
        }
    }
    // Results that came before their application's completion are settled with it, and the
    // feed says so when there were any.
    let mut settled = Vec::new();
    for e in fresh.iter().copied() {
        if let Some(settlement) = &e.settles
            && super::results::settle_in(tx, &e.application_id, settlement, now).await? > 0
        {
            settled.push((e, &settlement.feed));
        }
    }
    // The feed entries commit with the events, so the feed has every stored event.
    let events = fresh.iter().map(|e| (FeedKind::Event, *e, &e.feed));
    let results = settled
        .into_iter()
        .map(|(e, feed)| (FeedKind::Result, e, feed));
    let entries: Vec<super::NewFeedEntry<'_>> = events
        .chain(results)
        .map(|(kind, e, feed)| super::NewFeedEntry {
            kind,
            system_id: &e.system_id,
            department: &feed.department,
            item_code: &feed.item_code,
            application_id: &e.application_id,
            level: None,
            routing_key: &feed.routing_key,
            body: &feed.body,
        })
        .collect();
    super::supervision::append_feeds_in_tx(tx, &entries, now).await?;
    Ok(new)
}

/// Offsets as the `assertion_at` column keeps them: `12,345`.
fn offsets_text(offsets: &[usize]) -> String {
    let texts: Vec<String> = offsets.iter().map(usize::to_string).collect();
    texts.join(",")
}

/// A delivery's stored message, if it has one.
fn open_document(
    bytes: Option<Vec<u8>>,
    offsets: Option<String>,
) -> Result<Option<OpenDocument>, StoreError> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let assertion_at = offsets
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<usize>().ok().filter(|at| *at <= bytes.len()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a delivery's assertion offsets are not offsets in its message: {offsets:?}"
            ))
        })?;
    Ok(Some(OpenDocument {
        bytes,
        assertion_at,
    }))
}
