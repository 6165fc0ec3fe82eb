//! The store on SQLite and PostgreSQL: item versions, the change feed, filters, pagination,
//! concurrency, and failing clearly when the database cannot be reached.

use crate::common;
use crate::on_both_backends;

use std::collections::HashSet;
use tongban::catalog::{ChangeKind, Item, ItemQuery, ItemStatus, PutOutcome};
use tongban::store::Store;

fn items() -> Vec<Item> {
    common::example_items()
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("example items deserialize"))
        .collect()
}

async fn versions_are_immutable_and_recorded_in_the_feed(store: &Store) {
    let mut item = items().remove(0);
    assert_eq!(
        store.put_item(&item, None).await.unwrap(),
        PutOutcome::Created { version: 1 }
    );
    assert_eq!(
        store.put_item(&item, None).await.unwrap(),
        PutOutcome::Unchanged { version: 1 }
    );

    let first_name = item.name.clone();
    item.name.push_str("（变更）");
    item.status = ItemStatus::Suspended;
    assert_eq!(
        store.put_item(&item, None).await.unwrap(),
        PutOutcome::Updated {
            version: 2,
            changed: vec!["name".into(), "status".into()]
        }
    );
    let current = store.current_item(&item.code).await.unwrap().unwrap();
    assert_eq!(current.version, Some(2));
    assert_eq!(current.name, item.name);
    let old = store.item_version(&item.code, 1).await.unwrap().unwrap();
    assert_eq!(old.name, first_name);
    assert_eq!(old.status, ItemStatus::Active);
    assert!(store.item_version(&item.code, 3).await.unwrap().is_none());

    let changes = store.changes_after(0, 10).await.unwrap();
    assert_eq!(changes.len(), 2, "an unchanged put records nothing");
    assert_eq!(changes[0].kind, ChangeKind::Created);
    assert_eq!(changes[1].kind, ChangeKind::Updated);
    assert_eq!(
        changes[1].changed,
        vec!["name".to_string(), "status".to_string()]
    );
    assert!(changes[0].seq < changes[1].seq);
    assert_eq!(
        store.changes_after(changes[0].seq, 10).await.unwrap().len(),
        1
    );
    assert!(changes[0].at.ends_with("+08:00"));
}

async fn a_stale_base_version_is_refused(store: &Store) {
    let mut item = items().remove(1);
    assert_eq!(
        store.put_item(&item, Some(1)).await.unwrap(),
        PutOutcome::Conflict { current: 0 }
    );
    assert_eq!(
        store.put_item(&item, Some(0)).await.unwrap(),
        PutOutcome::Created { version: 1 }
    );
    item.name.push('新');
    assert_eq!(
        store.put_item(&item, Some(0)).await.unwrap(),
        PutOutcome::Conflict { current: 1 }
    );
    assert!(
        store.changes_after(0, 10).await.unwrap().len() == 1,
        "a conflict records nothing"
    );
    assert!(matches!(
        store.put_item(&item, Some(1)).await.unwrap(),
        PutOutcome::Updated { version: 2, .. }
    ));
}

async fn filters_and_pages_cover_every_item_once(store: &Store) {
    let all = items();
    let outcomes = store.import_items(&all).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, PutOutcome::Created { version: 1 }))
    );
    assert_eq!(store.count_items().await.unwrap(), all.len() as i64);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_items(&ItemQuery {
                after: after.clone(),
                limit: 7,
                ..ItemQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, all.len() as i64);
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|i| i.code.clone()));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<String> = all.iter().map(|i| i.code.clone()).collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "pages are in code order, with no item missing or repeated"
    );

    let uscc = all[0].department.uscc.clone();
    let by_uscc = store
        .list_items(&ItemQuery {
            department: Some(uscc.clone()),
            limit: 500,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    let expected_count = all.iter().filter(|i| i.department.uscc == uscc).count();
    assert_eq!(by_uscc.items.len(), expected_count);
    assert!(by_uscc.items.iter().all(|i| i.department.uscc == uscc));

    let by_name = store
        .list_items(&ItemQuery {
            department: Some("民政".into()),
            limit: 500,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert!(!by_name.items.is_empty());
    assert!(
        by_name
            .items
            .iter()
            .all(|i| i.department.name.contains("民政"))
    );

    let licences = store
        .list_items(&ItemQuery {
            item_type: Some("01".into()),
            status: Some(ItemStatus::Active),
            limit: 500,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    let expected_count = all
        .iter()
        .filter(|i| i.item_type == "01" && i.status == ItemStatus::Active)
        .count();
    assert_eq!(licences.total, expected_count as i64);

    let word: String = all[3].name.chars().take(2).collect();
    let by_text = store
        .list_items(&ItemQuery {
            text: Some(word.clone()),
            limit: 500,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert!(by_text.items.iter().any(|i| i.code == all[3].code));
    assert!(
        by_text
            .items
            .iter()
            .all(|i| i.name.contains(&word) || i.code.contains(&word))
    );

    let wildcard = store
        .list_items(&ItemQuery {
            text: Some("%".into()),
            limit: 500,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        wildcard.total, 0,
        "LIKE wildcards in the text are matched literally"
    );
}

async fn concurrent_writers_get_unique_gapless_sequence_numbers(store: &Store) {
    let all = items();
    let mut tasks = Vec::new();
    for item in all.iter().take(16).cloned() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut item = item;
            store.put_item(&item, None).await.unwrap();
            item.name.push('改');
            store.put_item(&item, None).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let changes = store.changes_after(0, 1000).await.unwrap();
    assert_eq!(changes.len(), 32);
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=32).collect::<Vec<i64>>());
    let pairs: HashSet<(String, i64)> = changes
        .iter()
        .map(|c| (c.code.clone(), c.version))
        .collect();
    assert_eq!(pairs.len(), 32);
    for c in &changes {
        let expected = if c.version == 1 {
            ChangeKind::Created
        } else {
            ChangeKind::Updated
        };
        assert_eq!(c.kind, expected);
    }
}

async fn ping_answers(store: &Store) {
    store.ping().await.unwrap();
}

on_both_backends!(
    versions_are_immutable_and_recorded_in_the_feed,
    a_stale_base_version_is_refused,
    filters_and_pages_cover_every_item_once,
    concurrent_writers_get_unique_gapless_sequence_numbers,
    ping_answers,
);

#[tokio::test]
async fn an_unreachable_store_fails_with_a_clear_message_and_no_password() {
    let err = Store::open(
        "postgres://hub:s3cret@127.0.0.1:1/tongban",
        &common::repo(),
        1,
    )
    .await
    .expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(
        message.contains("cannot reach the store at postgres://hub:***@127.0.0.1:1/tongban"),
        "{message}"
    );
    assert!(!message.contains("s3cret"));
}

#[tokio::test]
async fn reopening_a_sqlite_store_keeps_its_data_and_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let item = items().remove(0);
    {
        let store = Store::open("sqlite://data/hub.db", dir.path(), 2)
            .await
            .unwrap();
        store.put_item(&item, None).await.unwrap();
        store.close().await;
    }
    assert!(
        dir.path().join("data/hub.db").exists(),
        "created under the configuration directory"
    );
    let store = Store::open("sqlite://data/hub.db", dir.path(), 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .current_item(&item.code)
            .await
            .unwrap()
            .unwrap()
            .version,
        Some(1)
    );
}

#[tokio::test]
async fn a_sqlite_path_that_cannot_be_created_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), "a file, not a directory").unwrap();
    let err = Store::open("sqlite://data/hub.db", dir.path(), 1)
        .await
        .expect_err("data is a file");
    assert!(
        err.to_string()
            .contains("cannot create the store's directory"),
        "{err}"
    );
}
