//! `tongban audit verify` against a tampered SQLite store, run as the real binary: a log of
//! real records is written through the store, then each copy of it is tampered with in one way
//! through raw SQL, as someone with write access to the database file would, and the command
//! must exit 1 naming the record and what was done to it. An untouched copy exits 0.

use crate::common;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::collections::BTreeSet;
use std::path::Path;
use tongban::audit::{AuditEntry, AuditRecord, Finding, record_hash};
use tongban::config::Config;
use tongban::hub;

/// How many records the log holds before any tampering.
const RECORDS: i64 = 10;

/// What the hub appends in a working day, in the shape the guard and the command line give it:
/// keys issued, applications accepted (masked), refusals, events from a system, a read.
fn entries() -> Vec<AuditEntry> {
    let entry = |actor: &str, action: &str, target: &str, outcome: &str, detail: &str| AuditEntry {
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        outcome: outcome.into(),
        detail: detail.into(),
    };
    let entries = vec![
        entry(
            "cli:operator",
            "key issue",
            "/api/v1/keys/3f9a11c2",
            "ok",
            "API key for role platform",
        ),
        entry(
            "cli:operator",
            "key issue",
            "/api/v1/keys/77d0e4b8",
            "ok",
            "API key for role system",
        ),
        entry(
            "key:3f9a11c2",
            "POST /api/v1/applications",
            "/api/v1/applications/TB-0193a1b2c3d-00001",
            "ok 202",
            "accepted for ln-rst-card, item 11210000001756420G2000113031000, applicant 2101**********1237",
        ),
        entry(
            "anonymous",
            "POST /api/v1/applications",
            "/api/v1/applications",
            "refused 401",
            "this endpoint needs `Authorization: Bearer <API key or staff token>`",
        ),
        entry(
            "key:3f9a11c2",
            "POST /api/v1/applications",
            "/api/v1/applications",
            "rejected 400",
            "",
        ),
        entry(
            "key:77d0e4b8",
            "POST /api/v1/systems/{id}/events",
            "/api/v1/systems/sy-scjg-food/events",
            "ok 202",
            "",
        ),
        entry(
            "key:77d0e4b8",
            "GET /api/v1/applications/{id}",
            "/api/v1/applications/TB-0193a1b2c3d-00001",
            "ok 200",
            "read the application (applicant masked)",
        ),
        entry(
            "key:77d0e4b8",
            "POST /api/v1/systems/{id}/events",
            "/api/v1/systems/ln-rst-card/events",
            "refused 403",
            "only system ln-rst-card posts for system ln-rst-card",
        ),
        entry(
            "staff:admin-01",
            "POST /api/v1/dead-letters/{id}/replay",
            "/api/v1/dead-letters/TB-0193a1b2c3d-00001~1/replay",
            "ok 200",
            "",
        ),
        entry(
            "cli:operator",
            "key revoke",
            "/api/v1/keys/77d0e4b8",
            "ok",
            "",
        ),
    ];
    assert_eq!(entries.len() as i64, RECORDS);
    entries
}

/// A configuration directory whose store (hub.toml's, `data/tongban.db`) holds the log of
/// [`entries`], appended through the store as the hub appends them.
async fn logged_dir() -> tempfile::TempDir {
    let dir = common::config_copy();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let store = hub::open_store(&config).await.unwrap();
    for entry in entries() {
        store.append_audit(&entry).await.unwrap();
    }
    let records = store.audit_records().await.unwrap();
    assert_eq!(records.len() as i64, RECORDS);
    assert!(tongban::audit::verify(&records).is_intact());
    store.close().await;
    dir
}

/// A fresh copy of `from` (configuration and store), so that each tampering starts from the
/// untouched log.
fn copy_of(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(from, dir.path());
    dir
}

/// A raw connection to the store's file, past the hub's code.
async fn raw(dir: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new().filename(dir.join("data/tongban.db")),
    )
    .await
    .unwrap()
}

async fn execute(conn: &mut SqliteConnection, sql: &str) {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Moves every record from `from_seq` on by `by` (seq is the primary key, so through negative
/// numbers: no two rows hold one seq at any step).
async fn renumber_from(conn: &mut SqliteConnection, from_seq: i64, by: i64) {
    execute(
        conn,
        &format!("UPDATE audit_log SET seq = -seq WHERE seq >= {from_seq}"),
    )
    .await;
    execute(
        conn,
        &format!("UPDATE audit_log SET seq = -seq + ({by}) WHERE seq < 0"),
    )
    .await;
}

async fn record(conn: &mut SqliteConnection, seq: i64) -> AuditRecord {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT seq, at, actor, action, target, outcome, detail, prev_hash, hash \
         FROM audit_log WHERE seq = $1",
    )
    .bind(seq)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    AuditRecord {
        seq: row.get("seq"),
        at: row.get("at"),
        actor: row.get("actor"),
        action: row.get("action"),
        target: row.get("target"),
        outcome: row.get("outcome"),
        detail: row.get("detail"),
        prev_hash: row.get("prev_hash"),
        hash: row.get("hash"),
    }
}

/// `tongban audit verify --config <dir>`: its exit code and what it printed.
fn verify(dir: &Path) -> (Option<i32>, String) {
    let out = common::process::tongban()
        .args(["audit", "verify", "--config"])
        .arg(dir)
        .output()
        .expect("the tongban binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Runs the command on the tampered copy and checks that it fails naming exactly `expected`,
/// over `records` records.
fn assert_found(dir: &Path, what: &str, records: i64, expected: &[Finding]) {
    let (code, out) = verify(dir);
    assert_eq!(code, Some(1), "{what}: a tampered log fails:\n{out}");
    let found: BTreeSet<&str> = out
        .lines()
        .filter(|l| l.starts_with("TAMPERED: "))
        .collect();
    let wanted: Vec<String> = expected.iter().map(|f| format!("TAMPERED: {f}")).collect();
    let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    assert_eq!(found, wanted, "{what}:\n{out}");
    let summary = format!("audit log: {records} record(s), head ");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&summary)
                && l.ends_with(&format!(": {} problem(s)", expected.len()))),
        "{what}:\n{out}"
    );
    assert!(!out.contains("chain intact"), "{what}:\n{out}");
}

#[tokio::test]
async fn an_untouched_log_verifies_with_its_count_and_head() {
    let dir = logged_dir().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("audit log: {RECORDS} record(s), head "))
            && out.contains("chain intact"),
        "{out}"
    );
    assert!(!out.contains("TAMPERED"), "{out}");
}

#[tokio::test]
async fn a_changed_field_names_its_record() {
    let original = logged_dir().await;
    for (seq, column, value) in [
        (4, "detail", "'nothing happened'"),
        (3, "actor", "'key:00000000'"),
        (8, "outcome", "'ok 200'"),
        (6, "target", "'/api/v1/systems/ln-rst-card/events'"),
        (2, "at", "at + 3600000"),
        (1, "action", "'key revoke'"),
        (RECORDS, "detail", "'API key for role admin'"),
    ] {
        let dir = copy_of(original.path());
        let mut conn = raw(dir.path()).await;
        execute(
            &mut conn,
            &format!("UPDATE audit_log SET {column} = {value} WHERE seq = {seq}"),
        )
        .await;
        conn.close().await.unwrap();
        assert_found(
            dir.path(),
            &format!("{column} of record {seq} changed"),
            RECORDS,
            &[Finding::Changed { seq }],
        );
    }
    // Each change was made to a copy: the original is as it was.
    assert_eq!(verify(original.path()).0, Some(0));
}

#[tokio::test]
async fn a_deleted_middle_record_is_named_whether_or_not_the_gap_was_closed() {
    let original = logged_dir().await;
    for close_gap in [false, true] {
        let dir = copy_of(original.path());
        let mut conn = raw(dir.path()).await;
        execute(&mut conn, "DELETE FROM audit_log WHERE seq = 5").await;
        if close_gap {
            renumber_from(&mut conn, 6, -1).await;
        }
        conn.close().await.unwrap();
        assert_found(
            dir.path(),
            &format!("record 5 deleted (gap closed: {close_gap})"),
            RECORDS - 1,
            &[Finding::Deleted {
                from_seq: 5,
                to_seq: 5,
            }],
        );
    }
}

#[tokio::test]
async fn a_forged_record_slipped_in_is_named_although_its_hash_is_right_for_its_place() {
    let dir = logged_dir().await;
    let mut conn = raw(dir.path()).await;
    // Linked to record 6 and sealed with the published hash rule for place 7, the later
    // records renumbered to make room: only the record after it still links past it.
    let before = record(&mut conn, 6).await;
    renumber_from(&mut conn, 7, 1).await;
    let forged = AuditEntry {
        actor: "key:3f9a11c2".into(),
        action: "POST /api/v1/applications".into(),
        target: "/api/v1/applications/TB-0193a1b2c3d-00099".into(),
        outcome: "ok 202".into(),
        detail: "accepted for ln-rst-card".into(),
    };
    let at = before.at + 1;
    let hash = record_hash(&before.hash, 7, at, &forged);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, outcome, detail, prev_hash, hash) \
         VALUES (7, $1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(&forged.actor)
    .bind(&forged.action)
    .bind(&forged.target)
    .bind(&forged.outcome)
    .bind(&forged.detail)
    .bind(&before.hash)
    .bind(&hash)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert_found(
        dir.path(),
        "a record forged at 7",
        RECORDS + 1,
        &[Finding::Inserted { seq: 7 }],
    );
}

#[tokio::test]
async fn two_swapped_records_are_both_named() {
    let dir = logged_dir().await;
    let mut conn = raw(dir.path()).await;
    execute(&mut conn, "UPDATE audit_log SET seq = -1 WHERE seq = 3").await;
    execute(&mut conn, "UPDATE audit_log SET seq = 3 WHERE seq = 8").await;
    execute(&mut conn, "UPDATE audit_log SET seq = 8 WHERE seq = -1").await;
    conn.close().await.unwrap();
    assert_found(
        dir.path(),
        "records 3 and 8 swapped",
        RECORDS,
        &[Finding::Reordered { seq: 3 }, Finding::Reordered { seq: 8 }],
    );
}
