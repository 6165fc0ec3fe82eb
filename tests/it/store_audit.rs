//! The identity and audit tables on SQLite and PostgreSQL: the audit chain as appended (also by
//! concurrent writers), its listing filters, tampering done with SQL straight on the database
//! and what verification says about it, API keys, and the applicant's identity on deliveries.

use crate::common;
use crate::on_both_backends;

use sqlx::Executor;
use tongban::audit::{self, AuditEntry, AuditRecord, Finding, GENESIS};
use tongban::store::{AuditQuery, NewApiKey, NewApplication, Store};

fn entry(actor: &str, action: &str, outcome: &str, n: usize) -> AuditEntry {
    AuditEntry {
        actor: actor.to_string(),
        action: action.to_string(),
        target: format!("item:{n}"),
        outcome: outcome.to_string(),
        detail: format!("call {n}"),
    }
}

async fn append_n(store: &Store, n: usize) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            store
                .append_audit(&entry("staff:s1", "catalog.put", "ok 200", i))
                .await
                .unwrap(),
        );
    }
    out
}

async fn appends_form_a_chain(store: &Store) {
    let empty = audit::verify(&store.audit_records().await.unwrap());
    assert!(empty.is_intact());
    assert_eq!((empty.records, empty.head.as_str()), (0, GENESIS));

    let appended = append_n(store, 5).await;
    assert_eq!(
        appended.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(appended[0].prev_hash, GENESIS);
    for pair in appended.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let stored = store.audit_records().await.unwrap();
    assert_eq!(stored, appended, "records read back as appended");
    let v = audit::verify(&stored);
    assert!(v.is_intact(), "{:?}", v.findings);
    assert_eq!(v.records, 5);
    assert_eq!(v.head, appended[4].hash);
}

async fn concurrent_appends_are_gapless(store: &Store) {
    const TASKS: usize = 4;
    const EACH: usize = 260;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let actor = format!("system:s{t}");
                let r = store
                    .append_audit(&entry(&actor, "events.post", "ok 202", i))
                    .await
                    .unwrap();
                seqs.push(r.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let seqs = h.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs rise"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=(TASKS * EACH) as i64).collect();
    assert_eq!(all, expected, "seqs are gapless and unique");
    // More records than one page of `audit_records`.
    let stored = store.audit_records().await.unwrap();
    assert_eq!(stored.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
    let v = audit::verify(&stored);
    assert!(v.is_intact(), "{:?}", v.findings);
    assert_eq!(v.records, TASKS * EACH);
    assert_eq!(v.head, stored.last().unwrap().hash);
}

async fn a_batch_appends_in_order_in_one_chain_with_single_appends(store: &Store) {
    append_n(store, 2).await;
    let batch: Vec<AuditEntry> = (0..5)
        .map(|i| entry("anonymous", "POST /api/v1/keys", "refused 401", i))
        .collect();
    let appended = store.append_audit_batch(&batch).await.unwrap();
    assert_eq!(
        appended.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7]
    );
    assert_eq!(
        appended
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>(),
        ["item:0", "item:1", "item:2", "item:3", "item:4"],
        "in the order given"
    );
    assert!(store.append_audit_batch(&[]).await.unwrap().is_empty());
    append_n(store, 1).await;
    let stored = store.audit_records().await.unwrap();
    assert_eq!(stored.len(), 8);
    assert_eq!(stored[2].prev_hash, stored[1].hash);
    assert_eq!(stored[7].prev_hash, stored[6].hash);
    let v = audit::verify(&stored);
    assert!(v.is_intact(), "{:?}", v.findings);
}

async fn list_audit_filters(store: &Store) {
    let plan = [
        ("staff:a", "keys.issue", "ok 201"),
        ("staff:b", "keys.revoke", "ok 200"),
        ("staff:a", "keys.revoke", "refused 403"),
        ("key:k1", "applications.submit", "ok 202"),
        ("staff:a", "keys.issue", "ok 201"),
        ("staff:b", "dead_letters.replay", "failed 503"),
    ];
    for (i, (actor, action, outcome)) in plan.iter().enumerate() {
        store
            .append_audit(&entry(actor, action, outcome, i))
            .await
            .unwrap();
        // Distinct times, so the time filters have something to cut.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let all = store.audit_records().await.unwrap();
    let seqs = |records: Vec<AuditRecord>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
    let list = |q: AuditQuery| async move { seqs(store.list_audit(&q).await.unwrap()) };
    let q = AuditQuery {
        limit: 100,
        ..Default::default()
    };

    assert_eq!(list(q.clone()).await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        list(AuditQuery {
            actor: Some("staff:a".into()),
            ..q.clone()
        })
        .await,
        [1, 3, 5]
    );
    assert_eq!(
        list(AuditQuery {
            action: Some("keys.revoke".into()),
            ..q.clone()
        })
        .await,
        [2, 3]
    );
    assert_eq!(
        list(AuditQuery {
            outcome: Some("ok 201".into()),
            ..q.clone()
        })
        .await,
        [1, 5]
    );
    // An outcome filter matches its start.
    assert_eq!(
        list(AuditQuery {
            outcome: Some("ok".into()),
            ..q.clone()
        })
        .await,
        [1, 2, 4, 5]
    );
    assert_eq!(
        list(AuditQuery {
            actor: Some("staff:a".into()),
            action: Some("keys.issue".into()),
            ..q.clone()
        })
        .await,
        [1, 5]
    );
    assert!(
        list(AuditQuery {
            actor: Some("nobody".into()),
            ..q.clone()
        })
        .await
        .is_empty()
    );
    // `since` inclusive, `until` exclusive.
    let (since, until) = (all[1].at, all[4].at);
    let expected: Vec<i64> = all
        .iter()
        .filter(|r| r.at >= since && r.at < until)
        .map(|r| r.seq)
        .collect();
    assert_eq!(expected, [2, 3, 4]);
    assert_eq!(
        list(AuditQuery {
            since: Some(since),
            until: Some(until),
            ..q.clone()
        })
        .await,
        expected
    );
    // Paging by seq, newest last.
    let page = |after: Option<i64>| AuditQuery {
        after_seq: after,
        limit: 4,
        ..Default::default()
    };
    assert_eq!(list(page(None)).await, [1, 2, 3, 4]);
    assert_eq!(list(page(Some(4))).await, [5, 6]);
    assert!(list(page(Some(6))).await.is_empty());
    assert_eq!(
        list(AuditQuery {
            actor: Some("staff:a".into()),
            after_seq: Some(1),
            limit: 1,
            ..Default::default()
        })
        .await,
        [3]
    );
    // A limit of 0 still asks for one record.
    assert_eq!(
        list(AuditQuery {
            limit: 0,
            ..Default::default()
        })
        .await,
        [1]
    );
    assert_eq!(store.list_audit(&q).await.unwrap(), all);
}

fn key(key_id: &str, role: &str, system: Option<&str>, created_at: i64) -> NewApiKey {
    NewApiKey {
        key_id: key_id.to_string(),
        secret_sha256: format!("{key_id:0>64}"),
        role: role.to_string(),
        system_id: system.map(str::to_string),
        label: format!("{role} key"),
        created_at,
        created_by: "staff:admin".to_string(),
        expires_at: None,
    }
}

async fn api_keys_insert_get_list_revoke(store: &Store) {
    assert!(store.api_key("k1").await.unwrap().is_none());
    assert!(store.list_api_keys().await.unwrap().is_empty());
    let k1 = key("k1", "operator", None, 2_000);
    let k2 = NewApiKey {
        expires_at: Some(9_000),
        ..key("k2", "system", Some("sy-scjg-food"), 1_000)
    };
    store.insert_api_key(&k1).await.unwrap();
    store.insert_api_key(&k2).await.unwrap();
    assert!(
        store.insert_api_key(&k1).await.is_err(),
        "a key id is used once"
    );

    let got = store.api_key("k2").await.unwrap().unwrap();
    assert_eq!(got.key_id, "k2");
    assert_eq!(got.secret_sha256, k2.secret_sha256);
    assert_eq!(got.role, "system");
    assert_eq!(got.system_id.as_deref(), Some("sy-scjg-food"));
    assert_eq!(got.label, "system key");
    assert_eq!(got.created_at, 1_000);
    assert_eq!(got.created_by, "staff:admin");
    assert_eq!(got.expires_at, Some(9_000));
    assert_eq!(got.revoked_at, None);
    let json = serde_json::to_value(&got).unwrap();
    assert!(json.get("secret_sha256").is_none(), "{json}");
    assert_eq!(json["key_id"], "k2");

    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["k2", "k1"],
        "oldest first"
    );
    assert_eq!(listed[1].system_id, None);

    assert!(store.revoke_api_key("k1", 5_000).await.unwrap());
    assert!(
        !store.revoke_api_key("k1", 6_000).await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_api_key("nope", 6_000).await.unwrap());
    assert_eq!(
        store.api_key("k1").await.unwrap().unwrap().revoked_at,
        Some(5_000),
        "the first revocation stands"
    );
    assert_eq!(store.api_key("k2").await.unwrap().unwrap().revoked_at, None);
}

async fn deliveries_carry_the_identity(store: &Store) {
    let identity = r#"{"sub":"u-1","name":"张*","id_number":"2101**********0015"}"#;
    for (id, identity) in [("A-1", Some(identity.to_string())), ("A-2", None)] {
        store
            .accept_application(&NewApplication {
                id,
                item_code: "11210100MB1529370K300011800200001",
                item_version: 1,
                department: "11210100MB1529370K",
                system_id: "sy-scjg-food",
                body: "{}",
                idempotency: None,
                identity,
                message: None,
            })
            .await
            .unwrap();
    }
    let mut claimed = store
        .claim_deliveries("sy-scjg-food", 10, 60_000)
        .await
        .unwrap();
    claimed.sort_by(|a, b| a.application_id.cmp(&b.application_id));
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].identity.as_deref(), Some(identity));
    assert_eq!(claimed[1].identity, None);
}

on_both_backends!(
    appends_form_a_chain,
    a_batch_appends_in_order_in_one_chain_with_single_appends,
    concurrent_appends_are_gapless,
    list_audit_filters,
    api_keys_insert_get_list_revoke,
    deliveries_carry_the_identity,
);

// ---- tampering with SQL on the database itself ----

/// A store and a URL for a second, raw connection to the same database.
struct Raw {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _database: Option<common::TestDatabase>,
}

async fn raw_sqlite() -> Raw {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open("sqlite://data/audit.db", dir.path(), 4)
        .await
        .expect("SQLite store opens");
    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/audit.db").display()
    );
    Raw {
        store,
        url,
        _dir: Some(dir),
        _database: None,
    }
}

async fn raw_postgres() -> Option<Raw> {
    let database = common::postgres_database().await?;
    let store = Store::open(&database.url, &common::repo(), 4)
        .await
        .expect("PostgreSQL store opens");
    Some(Raw {
        store,
        url: database.url.clone(),
        _dir: None,
        _database: Some(database),
    })
}

impl Raw {
    /// Runs statements on a connection of its own, as someone with write access would.
    async fn tamper(&self, statements: &[String]) {
        let pool = sqlx::AnyPool::connect(&self.url)
            .await
            .expect("a second connection");
        for sql in statements {
            pool.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        pool.close().await;
    }

    async fn findings(&self) -> Vec<Finding> {
        audit::verify(&self.store.audit_records().await.unwrap()).findings
    }
}

/// Moves every record from `seq` on by `by`, in two steps: the primary key is checked row by
/// row, so a one-step shift could collide with itself.
fn renumber_from(seq: i64, by: i64) -> Vec<String> {
    vec![
        format!("UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= {seq}"),
        format!("UPDATE audit_log SET seq = seq - 1000000 + ({by}) WHERE seq >= 1000000"),
    ]
}

fn insert(r: &AuditRecord) -> String {
    format!(
        "INSERT INTO audit_log (seq, at, actor, action, target, outcome, detail, prev_hash, hash) \
         VALUES ({}, {}, '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
        r.seq, r.at, r.actor, r.action, r.target, r.outcome, r.detail, r.prev_hash, r.hash
    )
}

/// A record forged as the chain's own code would make it, chained after `prev_hash` as `seq`.
fn forged(prev_hash: &str, seq: i64) -> AuditRecord {
    let e = entry("staff:mallory", "keys.issue", "ok 201", 99);
    let at = tongban::clock::now_millis();
    AuditRecord {
        seq,
        at,
        hash: audit::record_hash(prev_hash, seq, at, &e),
        prev_hash: prev_hash.to_string(),
        actor: e.actor,
        action: e.action,
        target: e.target,
        outcome: e.outcome,
        detail: e.detail,
    }
}

#[derive(Debug, Clone, Copy)]
enum Tampering {
    ChangeDetail,
    ChangeAt,
    Delete,
    DeleteAndRenumber,
    InsertChainedInPlace,
    InsertChainedOntoHead,
    Swap,
}

const RECORDS: usize = 8;

async fn tampering_is_diagnosed(raw: Raw, tampering: Tampering) {
    let records = append_n(&raw.store, RECORDS).await;
    assert!(raw.findings().await.is_empty());
    let hash = |seq: usize| records[seq - 1].hash.clone();
    let (statements, expected) = match tampering {
        Tampering::ChangeDetail => (
            vec!["UPDATE audit_log SET detail = 'nothing happened' WHERE seq = 3".to_string()],
            vec![Finding::Changed { seq: 3 }],
        ),
        Tampering::ChangeAt => (
            vec!["UPDATE audit_log SET at = at - 60000 WHERE seq = 6".to_string()],
            vec![Finding::Changed { seq: 6 }],
        ),
        Tampering::Delete => (
            vec!["DELETE FROM audit_log WHERE seq = 4".to_string()],
            vec![Finding::Deleted {
                from_seq: 4,
                to_seq: 4,
            }],
        ),
        Tampering::DeleteAndRenumber => {
            let mut s = vec!["DELETE FROM audit_log WHERE seq = 4".to_string()];
            s.extend(renumber_from(5, -1));
            (
                s,
                vec![Finding::Deleted {
                    from_seq: 4,
                    to_seq: 4,
                }],
            )
        }
        Tampering::InsertChainedInPlace => {
            let mut s = renumber_from(4, 1);
            s.push(insert(&forged(&hash(3), 4)));
            (s, vec![Finding::Inserted { seq: 4 }])
        }
        Tampering::InsertChainedOntoHead => {
            let mut s = renumber_from(4, 1);
            s.push(insert(&forged(&hash(RECORDS), 4)));
            (s, vec![Finding::Inserted { seq: 4 }])
        }
        Tampering::Swap => (
            vec![
                "UPDATE audit_log SET seq = -2 WHERE seq = 2".to_string(),
                "UPDATE audit_log SET seq = 2 WHERE seq = 6".to_string(),
                "UPDATE audit_log SET seq = 6 WHERE seq = -2".to_string(),
            ],
            vec![Finding::Reordered { seq: 2 }, Finding::Reordered { seq: 6 }],
        ),
    };
    raw.tamper(&statements).await;
    assert_eq!(raw.findings().await, expected, "{tampering:?}");
}

const TAMPERINGS: [Tampering; 7] = [
    Tampering::ChangeDetail,
    Tampering::ChangeAt,
    Tampering::Delete,
    Tampering::DeleteAndRenumber,
    Tampering::InsertChainedInPlace,
    Tampering::InsertChainedOntoHead,
    Tampering::Swap,
];

#[tokio::test]
async fn sqlite_tampering_is_diagnosed() {
    for tampering in TAMPERINGS {
        tampering_is_diagnosed(raw_sqlite().await, tampering).await;
    }
}

#[tokio::test]
async fn postgres_tampering_is_diagnosed() {
    for tampering in TAMPERINGS {
        let Some(raw) = raw_postgres().await else {
            return;
        };
        tampering_is_diagnosed(raw, tampering).await;
    }
}

/// Deleting the newest records leaves a valid chain; the next append exposes the gap, because
/// the counter does not go back.
async fn truncation_shows_at_the_next_append(raw: Raw) {
    append_n(&raw.store, 5).await;
    raw.tamper(&["DELETE FROM audit_log WHERE seq >= 4".to_string()])
        .await;
    assert!(raw.findings().await.is_empty(), "truncation alone verifies");
    let next = raw
        .store
        .append_audit(&entry("staff:s1", "keys.issue", "ok 201", 6))
        .await
        .unwrap();
    assert_eq!(next.seq, 6);
    assert_eq!(
        raw.findings().await,
        [Finding::Deleted {
            from_seq: 4,
            to_seq: 5
        }]
    );
}

#[tokio::test]
async fn sqlite_truncation_shows_at_the_next_append() {
    truncation_shows_at_the_next_append(raw_sqlite().await).await;
}

#[tokio::test]
async fn postgres_truncation_shows_at_the_next_append() {
    if let Some(raw) = raw_postgres().await {
        truncation_shows_at_the_next_append(raw).await;
    }
}
