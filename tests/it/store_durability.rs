//! The SQLite store when the disk fills and frees again (made full on demand with SQLite's
//! `max_page_count`): no write is reported done that did not commit, nothing stays locked, and
//! the store takes writes again by itself once there is room.

use crate::common;

use common::wait::PATIENCE;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tongban::audit::AuditEntry;
use tongban::catalog::{Item, PutOutcome};
use tongban::store::{Accepted, ApplicationToAccept, Store};

const URL: &str = "sqlite://data/full.db";
const SYSTEM: &str = "sy-scjg-food";

/// An application as the API's group commit hands it to the store, with its audit record.
fn submission(id: &str, body: &str) -> ApplicationToAccept {
    ApplicationToAccept {
        id: id.into(),
        item_code: "11210100MB1529370K300011800200001".into(),
        item_version: 1,
        department: "11210100MB1529370K".into(),
        system_id: SYSTEM.into(),
        body: body.into(),
        idempotency: Some((format!("key-{id}"), "hash".into())),
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

async fn submit(store: &Store, id: &str, body: &str) -> Result<(), String> {
    match store.accept_applications(&[submission(id, body)]).await {
        Ok(results) if matches!(results[..], [Accepted::New { .. }]) => Ok(()),
        Ok(results) => panic!("{id} is new, yet: {results:?}"),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn item() -> Item {
    serde_json::from_value(common::sample_item()).unwrap()
}

/// What another process sees: a store of its own on the same file.
async fn another_process(dir: &Path) -> Store {
    Store::open(URL, dir, 1).await.unwrap()
}

/// Every application reported accepted is in the file, and another process can write to it.
async fn assert_durable_and_unlocked(dir: &Path, accepted: &[String], body: &str) {
    let other = another_process(dir).await;
    let mut missing = Vec::new();
    for id in accepted {
        if other.application(id).await.unwrap().is_none() {
            missing.push(id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} applications answered as accepted never committed: {missing:?}",
        missing.len(),
        accepted.len()
    );
    let written = submit(&other, "from-another-process", body).await;
    assert!(
        written.is_ok(),
        "the hub still holds the write lock: {written:?}"
    );
}

#[tokio::test]
async fn a_connection_whose_transaction_the_full_disk_ended_is_not_used_again() {
    let dir = tempfile::tempdir().unwrap();
    // One connection: the one the full disk left behind is the one every write gets next.
    let store = Store::open(URL, dir.path(), 1).await.unwrap();
    let body = "x".repeat(3000);
    assert_eq!(
        store.put_item(&item(), None).await.unwrap(),
        PutOutcome::Created { version: 1 }
    );
    submit(&store, "before", &body).await.unwrap();

    store.cap_pages(Some(1));
    let mut n = 0;
    let full = loop {
        n += 1;
        if let Err(e) = submit(&store, &format!("full-{n}"), &body).await {
            break e;
        }
        assert!(n < 10_000, "the capped store never filled");
    };
    assert!(full.contains("full"), "{full}");
    store.cap_pages(None);

    // A write that ends in a rollback (nothing changed), then one that commits.
    assert_eq!(
        store.put_item(&item(), None).await.unwrap(),
        PutOutcome::Unchanged { version: 1 }
    );
    submit(&store, "after", &body).await.unwrap();
    let accepted: Vec<String> = ["before".to_string()]
        .into_iter()
        .chain((1..n).map(|i| format!("full-{i}")))
        .chain(["after".to_string()])
        .collect();
    assert_durable_and_unlocked(dir.path(), &accepted, &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_full_disk_under_concurrent_writes_every_accepted_write_is_durable_and_writes_go_on()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(URL, dir.path(), 4).await.unwrap();
    let body = "x".repeat(3000);
    store.put_item(&item(), None).await.unwrap();
    submit(&store, "before", &body).await.unwrap();

    store.cap_pages(Some(1));
    let failures = Arc::new(AtomicUsize::new(0));
    let freed = Arc::new(AtomicBool::new(false));
    // Eight submitters, and a catalog editor whose puts change nothing and roll back.
    let mut submitters = Vec::new();
    for s in 0..8 {
        let (store, failures, freed, body) =
            (store.clone(), failures.clone(), freed.clone(), body.clone());
        submitters.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut since_freed = 0;
            for n in 0.. {
                let id = format!("A-{s}-{n}");
                let was_freed = freed.load(Ordering::SeqCst);
                match submit(&store, &id, &body).await {
                    Ok(()) => {
                        accepted.push(id);
                        if was_freed {
                            since_freed += 1;
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if since_freed == 10 {
                    break;
                }
            }
            accepted
        }));
    }
    let editor = {
        let (store, freed) = (store.clone(), freed.clone());
        tokio::spawn(async move {
            let item = item();
            let mut since_freed = 0;
            while since_freed < 10 {
                let was_freed = freed.load(Ordering::SeqCst);
                if store.put_item(&item, None).await.is_ok() && was_freed {
                    since_freed += 1;
                }
            }
        })
    };
    common::wait::until("writes to fail on the full disk", || {
        failures.load(Ordering::SeqCst) >= 16
    })
    .await;
    store.cap_pages(None);
    freed.store(true, Ordering::SeqCst);

    // Once there is room, every writer gets its writes through again, by itself.
    let mut accepted = vec!["before".to_string()];
    let finished = tokio::time::timeout(PATIENCE, async {
        editor.await.unwrap();
        for s in submitters {
            accepted.extend(s.await.unwrap());
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "writes did not go through again within {PATIENCE:?} of the disk freeing"
    );
    assert_durable_and_unlocked(dir.path(), &accepted, &body).await;
    // And the lanes can claim what was accepted.
    let claimed = store
        .claim_deliveries(SYSTEM, 10_000, 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), accepted.len() + 1, "with another process's");
}
