//! The routing tables on SQLite and PostgreSQL: accepting with idempotency keys (alone and
//! in a batch), claiming with
//! leases (never the same delivery twice at once), recording attempts, dead letters and replay,
//! and deduplicated case events.

use crate::on_both_backends;

use std::collections::HashSet;
use tongban::audit::AuditEntry;
use tongban::mapping::OpenDocument;
use tongban::store::{
    Accepted, ApplicationToAccept, AttemptOutcome, EventToRecord, FeedText, FinishedAttempt,
    NewApplication, ResultToRecord, Store,
};

fn app<'a>(id: &'a str, key: Option<(&'a str, &'a str)>) -> NewApplication<'a> {
    NewApplication {
        id,
        item_code: "11210100MB1529370K300011800200001",
        item_version: 1,
        department: "11210100MB1529370K",
        system_id: "sy-scjg-food",
        body: "{\"id\":\"x\"}",
        idempotency: key,
        identity: None,
        message: None,
    }
}

async fn idempotency_keys_return_the_first_application(store: &Store) {
    assert!(matches!(
        store
            .accept_application(&app("A-1", Some(("k", "h1"))))
            .await
            .unwrap(),
        Accepted::New { .. }
    ));
    assert_eq!(
        store
            .accept_application(&app("A-2", Some(("k", "h1"))))
            .await
            .unwrap(),
        Accepted::Replayed {
            application_id: "A-1".into()
        }
    );
    assert_eq!(
        store
            .accept_application(&app("A-3", Some(("k", "h2"))))
            .await
            .unwrap(),
        Accepted::KeyReused
    );
    assert_eq!(
        store.accept_application(&app("A-1", None)).await.unwrap(),
        Accepted::DuplicateId
    );
    assert!(
        store.application("A-2").await.unwrap().is_none(),
        "a replay stores nothing"
    );
    assert_eq!(store.deliveries_of("A-1").await.unwrap().len(), 1);
}

fn to_accept(id: &str, key: Option<(&str, &str)>) -> ApplicationToAccept {
    let a = app(id, key);
    ApplicationToAccept {
        id: id.into(),
        item_code: a.item_code.into(),
        item_version: a.item_version,
        department: "11210100MB1529370K".into(),
        system_id: a.system_id.into(),
        body: a.body.into(),
        idempotency: key.map(|(k, h)| (k.into(), h.into())),
        identity: None,
        message: None,
        accesses: Vec::new(),
        trace_context: None,
        audit: Some(AuditEntry {
            actor: "key:platform".into(),
            action: "POST /api/v1/applications".into(),
            target: format!("/api/v1/applications/{id}"),
            outcome: "ok 202".into(),
            detail: "accepted".into(),
        }),
    }
}

async fn a_batch_accepts_each_application_as_alone_in_one_transaction(store: &Store) {
    store
        .accept_application(&app("B-0", Some(("k0", "h0"))))
        .await
        .unwrap();
    let batch = [
        to_accept("B-1", None),
        to_accept("B-0", None),               // an id taken before the batch
        to_accept("B-2", Some(("k", "h1"))),  // a new key
        to_accept("B-3", Some(("k", "h1"))),  // the same request again, in the same batch
        to_accept("B-4", Some(("k", "h2"))),  // the key for another request
        to_accept("B-1", Some(("k9", "h9"))), // an id taken earlier in the batch, with a key
        to_accept("B-5", Some(("k0", "h0"))), // a replay of a request from before the batch
    ];
    let results = store.accept_applications(&batch).await.unwrap();
    let replayed = |id: &str| Accepted::Replayed {
        application_id: id.into(),
    };
    assert!(matches!(results[0], Accepted::New { .. }), "{results:?}");
    assert_eq!(results[1], Accepted::DuplicateId);
    assert!(matches!(results[2], Accepted::New { .. }), "{results:?}");
    assert_eq!(results[3], replayed("B-2"));
    assert_eq!(results[4], Accepted::KeyReused);
    assert_eq!(results[5], Accepted::DuplicateId);
    assert_eq!(results[6], replayed("B-0"));
    // Only the new ones left a trace: their rows, deliveries and audit records.
    for id in ["B-1", "B-2"] {
        assert_eq!(store.deliveries_of(id).await.unwrap().len(), 1, "{id}");
    }
    for id in ["B-3", "B-4", "B-5"] {
        assert!(store.application(id).await.unwrap().is_none(), "{id}");
    }
    // The key of the refused duplicate was not kept: it is free for its own request.
    assert!(matches!(
        store
            .accept_application(&app("B-9", Some(("k9", "h9"))))
            .await
            .unwrap(),
        Accepted::New { .. }
    ));
    let audit = store.audit_records().await.unwrap();
    let targets: Vec<&str> = audit.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/api/v1/applications/B-1", "/api/v1/applications/B-2"]
    );
    assert!(tongban::audit::verify(&audit).is_intact());
}

/// A batch whose applications repeat no id or key among themselves is written a few statements
/// for the whole batch; it meets what the store held before exactly as one at a time would.
async fn a_batch_meets_what_the_store_held_before_as_one_at_a_time_would(store: &Store) {
    store
        .accept_application(&app("P-0", Some(("pk0", "h0"))))
        .await
        .unwrap();
    store
        .accept_application(&app("P-1", Some(("pk1", "h1"))))
        .await
        .unwrap();
    let mut batch: Vec<ApplicationToAccept> = (10..80)
        .map(|n| to_accept(&format!("P-{n}"), None))
        .collect();
    batch.push(to_accept("P-0", Some(("pk-new", "hn")))); // an id taken before, with a new key
    batch.push(to_accept("P-2", Some(("pk0", "h0")))); // a replay of a request from before
    batch.push(to_accept("P-3", Some(("pk1", "other")))); // a key used before for another
    batch.push(to_accept("P-4", Some(("pk4", "h4")))); // a new key
    let results = store.accept_applications(&batch).await.unwrap();
    assert!(
        results[..70]
            .iter()
            .all(|r| matches!(r, Accepted::New { .. })),
        "{results:?}"
    );
    assert_eq!(results[70], Accepted::DuplicateId);
    assert_eq!(
        results[71],
        Accepted::Replayed {
            application_id: "P-0".into()
        }
    );
    assert_eq!(results[72], Accepted::KeyReused);
    assert!(matches!(results[73], Accepted::New { .. }));
    for n in (10..80).chain([4]) {
        let id = format!("P-{n}");
        assert_eq!(store.deliveries_of(&id).await.unwrap().len(), 1, "{id}");
    }
    for id in ["P-2", "P-3"] {
        assert!(store.application(id).await.unwrap().is_none(), "{id}");
    }
    // The duplicate's key was not kept; the new one was.
    assert!(matches!(
        store
            .accept_application(&app("P-90", Some(("pk-new", "hn"))))
            .await
            .unwrap(),
        Accepted::New { .. }
    ));
    assert_eq!(
        store
            .accept_application(&app("P-91", Some(("pk4", "h4"))))
            .await
            .unwrap(),
        Accepted::Replayed {
            application_id: "P-4".into()
        }
    );
    let audit = store.audit_records().await.unwrap();
    assert_eq!(
        audit.len(),
        71,
        "one record per new application of the batch"
    );
    assert!(tongban::audit::verify(&audit).is_intact());
}

/// A case event of `application` as the store is given it, its feed entry made up here (the
/// store keeps what it is given).
fn stored_event(application: &str, id: &str, node: &str, state: &str) -> EventToRecord {
    EventToRecord {
        system_id: "sy-scjg-food".into(),
        event_id: id.into(),
        application_id: application.into(),
        node_name: node.into(),
        occurred_at: "2026-11-20T09:30:00+08:00".into(),
        body: format!(r#"{{"event_id":"{id}","handler":{{"name":"张三"}}}}"#),
        state: state.parse().unwrap(),
        settles: None,
        feed: FeedText {
            body: format!(r#"{{"event_id":"{id}","handler":{{"name":"张*"}}}}"#),
            routing_key: format!("event.sy-scjg-food.{id}"),
            department: "11210100MB1529370K".into(),
            item_code: "ITEM".into(),
        },
    }
}

async fn a_batch_of_events_is_deduplicated_within_itself_and_against_the_store(store: &Store) {
    store.accept_application(&app("E-1", None)).await.unwrap();
    let event = |id: &str, node: &str, state: &str| stored_event("E-1", id, node, state);
    let mut moved = store.feed_moved();
    let first = [
        event("e1", "受理", "in_progress"),
        event("e1", "受理", "in_progress"),
    ];
    assert_eq!(store.record_events(&first).await.unwrap(), [true, false]);
    assert!(moved.has_changed().unwrap());
    moved.mark_unchanged();
    let second = [
        event("e1", "受理", "in_progress"),
        event("e2", "办结", "completed"),
    ];
    assert_eq!(store.record_events(&second).await.unwrap(), [false, true]);
    assert_eq!(store.events_of("E-1").await.unwrap().len(), 2);
    assert_eq!(
        store
            .application("E-1")
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "completed"
    );
    assert_eq!(
        store.feed_head().await.unwrap(),
        2,
        "one feed entry per new event"
    );
    let feed = store
        .feed_after(&tongban::store::FeedQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let given = stored_event("E-1", "e2", "办结", "completed").feed;
    assert_eq!(
        (
            feed[1].body.as_str(),
            feed[1].routing_key.as_str(),
            feed[1].department.as_str(),
            feed[1].item_code.as_str()
        ),
        (
            given.body.as_str(),
            given.routing_key.as_str(),
            given.department.as_str(),
            given.item_code.as_str()
        ),
        "the feed entry is kept as given"
    );
    assert!(moved.has_changed().unwrap());
    moved.mark_unchanged();
    assert_eq!(store.record_events(&second).await.unwrap(), [false, false]);
    assert!(!moved.has_changed().unwrap(), "nothing new, nobody woken");

    // Events committed together arrived together: one arrival time, whatever the batch's size
    // (the supervision engine does not hold their order among themselves against the system).
    let batch: Vec<EventToRecord> = (0..60)
        .map(|n| event(&format!("b{n}"), "审查", "in_progress"))
        .collect();
    assert!(
        store
            .record_events(&batch)
            .await
            .unwrap()
            .iter()
            .all(|new| *new)
    );
    let arrivals: std::collections::BTreeSet<i64> = store
        .events_of("E-1")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_id.starts_with('b'))
        .map(|e| e.received_at)
        .collect();
    assert_eq!(arrivals.len(), 1, "{arrivals:?}");
}

async fn a_claimed_delivery_is_not_claimed_again_until_its_lease_lapses(store: &Store) {
    for i in 0..10 {
        store
            .accept_application(&app(&format!("B-{i}"), None))
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        store.claim_deliveries("sy-scjg-food", 6, 60_000),
        store.claim_deliveries("sy-scjg-food", 6, 60_000)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ids_a: HashSet<String> = a.iter().map(|d| d.id.clone()).collect();
    let ids_b: HashSet<String> = b.iter().map(|d| d.id.clone()).collect();
    assert!(
        ids_a.is_disjoint(&ids_b),
        "two claimers never get the same delivery"
    );
    assert_eq!(ids_a.len() + ids_b.len(), 10);
    assert!(
        store
            .claim_deliveries("sy-scjg-food", 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_deliveries("other-system", 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.release_all_claims().await.unwrap(), 10);
    assert_eq!(
        store
            .claim_deliveries("sy-scjg-food", 20, -1)
            .await
            .unwrap()
            .len(),
        10
    );
    // A lease in the past has lapsed: everything can be claimed again.
    assert_eq!(
        store
            .claim_deliveries("sy-scjg-food", 20, 60_000)
            .await
            .unwrap()
            .len(),
        10
    );
}

/// Attempts of several outcomes recorded in one batch move each delivery and application as
/// one at a time would: delivered, retried later with its reason, dead with its reason.
async fn a_batch_of_attempts_moves_each_delivery_by_its_outcome(store: &Store) {
    for id in ["M-1", "M-2", "M-3"] {
        store.accept_application(&app(id, None)).await.unwrap();
    }
    let mut claimed = store
        .claim_deliveries("sy-scjg-food", 10, 60_000)
        .await
        .unwrap();
    claimed.sort_by(|a, b| a.application_id.cmp(&b.application_id));
    assert_eq!(claimed.len(), 3);
    let later = tongban::clock::now_millis() + 60_000;
    let outcomes = [
        AttemptOutcome::Delivered { status: Some(200) },
        AttemptOutcome::Retry {
            next_attempt_at: later,
            status: Some(503),
            reason: "answered 503".into(),
        },
        AttemptOutcome::Dead {
            status: Some(400),
            reason: "answered 400".into(),
        },
    ];
    let batch: Vec<FinishedAttempt> = claimed
        .iter()
        .zip(outcomes)
        .map(|(d, o)| FinishedAttempt::new(d, 0, 7, o))
        .collect();
    store.record_attempts(&batch).await.unwrap();
    let state = |id: &'static str| async move {
        let d = store.deliveries_of(id).await.unwrap().remove(0);
        let a = store.application(id).await.unwrap().unwrap();
        (
            d.status.as_str().to_owned(),
            d.attempts,
            d.last_error,
            d.next_attempt_at,
            a.state.as_str().to_owned(),
        )
    };
    let delivered = state("M-1").await;
    assert_eq!(
        (
            delivered.0.as_str(),
            delivered.1,
            delivered.2.as_deref(),
            delivered.4.as_str()
        ),
        ("delivered", 1, None, "delivered")
    );
    let retried = state("M-2").await;
    assert_eq!(
        (
            retried.0.as_str(),
            retried.1,
            retried.2.as_deref(),
            retried.3,
            retried.4.as_str()
        ),
        ("pending", 1, Some("answered 503"), later, "accepted")
    );
    let dead = state("M-3").await;
    assert_eq!(
        (dead.0.as_str(), dead.1, dead.2.as_deref(), dead.4.as_str()),
        ("dead", 1, Some("answered 400"), "undeliverable")
    );
    for (d, kind) in claimed.iter().zip(["delivered", "retry", "dead"]) {
        let log = store.attempts_of(&d.id).await.unwrap();
        assert_eq!(log.len(), 1, "{}", d.id);
        assert_eq!((log[0].outcome.as_str(), log[0].duration_ms), (kind, 7));
    }
    // Released: the retried one is claimed again once due, not before.
    assert!(
        store
            .claim_deliveries("sy-scjg-food", 10, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn attempts_dead_letters_and_replay(store: &Store) {
    store.accept_application(&app("C-1", None)).await.unwrap();
    let claimed = store
        .claim_deliveries("sy-scjg-food", 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    let later = tongban::clock::now_millis() + 60_000;
    store
        .record_attempt(
            &claimed,
            0,
            5,
            &AttemptOutcome::Retry {
                next_attempt_at: later,
                status: Some(503),
                reason: "answered 503".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries("sy-scjg-food", 1, 60_000)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    store.release_delivery(&claimed.id, 0).await.unwrap();
    let again = store
        .claim_deliveries("sy-scjg-food", 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.attempts, 1);
    store
        .record_attempt(
            &again,
            0,
            5,
            &AttemptOutcome::Dead {
                status: Some(400),
                reason: "answered 400".into(),
            },
        )
        .await
        .unwrap();
    let dead = store.dead_letters(Some("sy-scjg-food"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("answered 400"));
    assert_eq!(
        store
            .application("C-1")
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "undeliverable"
    );
    assert!(
        store
            .dead_letters(Some("other"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let replayed = store
        .replay_dead_letter(&claimed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed.status, tongban::model::DeliveryState::Pending);
    assert!(
        store
            .replay_dead_letter(&claimed.id)
            .await
            .unwrap()
            .is_none(),
        "only dead letters replay"
    );
    let third = store
        .claim_deliveries("sy-scjg-food", 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(third.attempts, 2);
    assert_eq!(
        third.attempts_in_window, 0,
        "a replay renews the retry budget"
    );
    store
        .record_attempt(
            &third,
            0,
            5,
            &AttemptOutcome::Delivered { status: Some(200) },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .application("C-1")
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "delivered"
    );
    let attempts = store.attempts_of(&claimed.id).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["retry", "dead", "delivered"]);
}

async fn events_are_deduplicated_and_move_the_state(store: &Store) {
    store.accept_application(&app("D-1", None)).await.unwrap();
    let event = |id: &str, node: &str, state: &str| stored_event("D-1", id, node, state);
    assert!(
        store
            .record_event(&event("e1", "受理", "in_progress"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_event(&event("e1", "受理", "in_progress"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .application("D-1")
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "in_progress"
    );
    assert!(
        store
            .record_event(&event("e2", "办结", "completed"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_event(&event("e3", "送达", "in_progress"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .application("D-1")
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "completed",
        "a completed case stays completed"
    );
    assert_eq!(store.events_of("D-1").await.unwrap().len(), 3);
    assert!(
        store
            .record_result(&result("L1", 1, "D-1", None))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_result(&result("L1", 1, "D-1", None))
            .await
            .unwrap()
    );
}

/// The message written at acceptance comes back from a claim byte for byte (GBK bytes that
/// are no UTF-8 among them), with its open places, one at a time and in a batch; a delivery
/// without one comes back without one.
async fn a_delivery_keeps_the_message_written_when_it_was_accepted(store: &Store) {
    let gbk = |text: &str| encoding_rs::GBK.encode(text).0.into_owned();
    let head = gbk("<申请><令牌>");
    let open = OpenDocument {
        assertion_at: vec![head.len(), head.len()],
        bytes: [head, gbk("</令牌></申请>")].concat(),
    };
    let single = NewApplication {
        message: Some(&open),
        ..app("M-1", None)
    };
    store.accept_application(&single).await.unwrap();
    let mut batch = to_accept("M-2", None);
    batch.message = Some(open.clone());
    store
        .accept_applications(&[batch, to_accept("M-3", None)])
        .await
        .unwrap();
    let claimed = store
        .claim_deliveries("sy-scjg-food", 10, 60_000)
        .await
        .unwrap();
    let message_of = |id: &str| {
        claimed
            .iter()
            .find(|d| d.application_id == id)
            .unwrap_or_else(|| panic!("{id} claimed"))
            .message
            .clone()
    };
    assert_eq!(message_of("M-1").as_ref(), Some(&open));
    assert_eq!(message_of("M-2").as_ref(), Some(&open));
    assert_eq!(message_of("M-3"), None);
    let closed = open.closed(Some("JWT"));
    assert_eq!(
        encoding_rs::GBK.decode(&closed).0,
        "<申请><令牌>JWTJWT</令牌></申请>"
    );

    // A replayed dead letter is written again at its next attempt, with the mapping then in
    // force: its stored message is gone.
    let first = claimed.iter().find(|d| d.application_id == "M-1").unwrap();
    let dead = AttemptOutcome::Dead {
        status: Some(400),
        reason: "refused".into(),
    };
    store.record_attempt(first, 0, 5, &dead).await.unwrap();
    store.replay_dead_letter(&first.id).await.unwrap().unwrap();
    let replayed = store
        .claim_deliveries("sy-scjg-food", 10, 60_000)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0].application_id, "M-1");
    assert_eq!(replayed[0].message, None);
}

/// A version of the license `L` (its id `L.<version>`).
/// A feed entry for a revocation, as the service would make it.
fn revoked_feed() -> tongban::store::FeedText {
    tongban::store::FeedText {
        body: "{}".into(),
        routing_key: "result.sy-scjg-food.revoked".into(),
        department: String::new(),
        item_code: String::new(),
    }
}

fn result<'a>(
    license_id: &'a str,
    version: i64,
    application_id: &'a str,
    supersedes: Option<&'a str>,
) -> ResultToRecord<'a> {
    ResultToRecord {
        system_id: "sy-scjg-food",
        license_id,
        license_key: "L",
        version,
        application_id,
        body: "{}",
        supersedes,
        state: tongban::model::ResultState::Valid,
        seal: None,
        holder_key: None,
        license_type: None,
        feed: None,
    }
}

/// Every version is kept; the one a new version supersedes is marked so in the same write, and
/// a revocation keeps its reason and time and changes only a valid version.
async fn result_versions_are_kept_superseded_and_revoked(store: &Store) {
    assert!(
        store
            .record_result(&result("L.1", 1, "A-1", None))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_result(&result("L.2", 2, "A-2", Some("L.1")))
            .await
            .unwrap()
    );
    let versions = store.license_versions("sy-scjg-food", "L").await.unwrap();
    let states: Vec<(&str, &str, Option<&str>)> = versions
        .iter()
        .map(|v| {
            (
                v.license_id.as_str(),
                v.state.as_str(),
                v.superseded_by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("L.1", "superseded", Some("L.2")), ("L.2", "valid", None)]
    );
    assert!(versions[0].state_at.is_some() && versions[1].state_at.is_none());
    assert!(
        !store
            .revoke_result("sy-scjg-food", "L.1", "why", 5, &revoked_feed())
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_result("sy-scjg-food", "L.2", "因故撤销", 7, &revoked_feed())
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_result("sy-scjg-food", "L.2", "again", 9, &revoked_feed())
            .await
            .unwrap()
    );
    let revoked = store.results_by_license_id("L.2").await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].state.as_str(), "revoked");
    assert_eq!(revoked[0].state_reason.as_deref(), Some("因故撤销"));
    assert_eq!(revoked[0].state_at, Some(7));
    assert_eq!(store.result_records_of("A-2").await.unwrap().len(), 1);
    // Another system's id is another license.
    assert!(
        store
            .license_versions("ln-rst-card", "L")
            .await
            .unwrap()
            .is_empty()
    );
}

on_both_backends!(
    result_versions_are_kept_superseded_and_revoked,
    a_delivery_keeps_the_message_written_when_it_was_accepted,
    a_batch_meets_what_the_store_held_before_as_one_at_a_time_would,
    a_batch_of_attempts_moves_each_delivery_by_its_outcome,
    idempotency_keys_return_the_first_application,
    a_batch_accepts_each_application_as_alone_in_one_transaction,
    a_batch_of_events_is_deduplicated_within_itself_and_against_the_store,
    a_claimed_delivery_is_not_claimed_again_until_its_lease_lapses,
    attempts_dead_letters_and_replay,
    events_are_deduplicated_and_move_the_state,
);
