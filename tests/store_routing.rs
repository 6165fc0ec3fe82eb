//! The routing tables on SQLite and PostgreSQL: accepting with idempotency keys, claiming with
//! leases (never the same delivery twice at once), recording attempts, dead letters and replay,
//! and deduplicated case events.

mod common;

use std::collections::HashSet;
use tongban::store::{Accepted, AttemptOutcome, NewApplication, NewEvent, Store};

fn app<'a>(id: &'a str, key: Option<(&'a str, &'a str)>) -> NewApplication<'a> {
    NewApplication {
        id,
        item_code: "11210100MB1529370K300011800200001",
        item_version: 1,
        system_id: "sy-scjg-food",
        body: "{\"id\":\"x\"}",
        idempotency: key,
        identity: None,
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
        store.application("C-1").await.unwrap().unwrap().state,
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
    assert_eq!(replayed.status, "pending");
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
        store.application("C-1").await.unwrap().unwrap().state,
        "delivered"
    );
    let attempts = store.attempts_of(&claimed.id).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["retry", "dead", "delivered"]);
}

async fn events_are_deduplicated_and_move_the_state(store: &Store) {
    store.accept_application(&app("D-1", None)).await.unwrap();
    let event = |id: &'static str, node: &'static str, state: &'static str| NewEvent {
        system_id: "sy-scjg-food",
        event_id: id,
        application_id: "D-1",
        node_name: node,
        occurred_at: "2026-11-20T09:30:00+08:00",
        body: "{}",
        state,
    };
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
        store.application("D-1").await.unwrap().unwrap().state,
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
        store.application("D-1").await.unwrap().unwrap().state,
        "completed",
        "a completed case stays completed"
    );
    assert_eq!(store.events_of("D-1").await.unwrap().len(), 3);
    assert!(
        store
            .record_result("sy-scjg-food", "L1", "D-1", "{}")
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_result("sy-scjg-food", "L1", "D-1", "{}")
            .await
            .unwrap()
    );
}

on_both_backends!(
    idempotency_keys_return_the_first_application,
    a_claimed_delivery_is_not_claimed_again_until_its_lease_lapses,
    attempts_dead_letters_and_replay,
    events_are_deduplicated_and_move_the_state,
);
