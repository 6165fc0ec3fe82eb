//! A write the store refuses on its own (here a trigger refusing one event id, as a constraint
//! or a value the database cannot keep would) is a permanent failure, told apart from a store
//! that is down: the webhook answers 500 "could not be stored" (not 503, which asks for the
//! same again), its neighbours in the same group commit are stored, and the poller skips it,
//! recorded and logged, and goes on with the system's later events instead of asking for it
//! again for ever. (The queue consumer's side is in `amqp_inbound`.)

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::api::TestApi;
use common::edit::{RST, SCJG, http_systems_config, set_adapter_key};
use common::mock::{Mock, Mode};
use common::wait::eventually;
use common::{Issuer, read_text};
use sqlx::{Connection, Executor};
use tongban::auth::Role;
use tongban::store::{NewApplication, Store};

/// The event id the store refuses.
pub const REFUSED_EVENT: &str = "REFUSED-BY-THE-STORE-01";

/// Makes the database at `url` refuse to insert the case event [`REFUSED_EVENT`], as it would
/// a value breaking a constraint: the error is the write's own, not the store's.
pub async fn refuse_one_event(url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    if url.starts_with("postgres") {
        conn.execute(
            format!(
                "CREATE FUNCTION refuse_one_event() RETURNS trigger AS $$ BEGIN \
                 IF NEW.event_id = '{REFUSED_EVENT}' THEN \
                 RAISE EXCEPTION 'this event is refused' USING ERRCODE = 'check_violation'; \
                 END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            .as_str(),
        )
        .await
        .unwrap();
        conn.execute(
            "CREATE TRIGGER refuse_one_event BEFORE INSERT ON case_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_one_event()",
        )
        .await
        .unwrap();
    } else {
        conn.execute(
            format!(
                "CREATE TRIGGER refuse_one_event BEFORE INSERT ON case_events \
                 WHEN NEW.event_id = '{REFUSED_EVENT}' \
                 BEGIN SELECT RAISE(ABORT, 'this event is refused'); END"
            )
            .as_str(),
        )
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

/// The 市场监管 acceptance step as the system posts it, for `application`, with `event_id`.
fn scjg_step(application: &str, event_id: &str) -> String {
    read_text("mappings/tests/scjg-food-event/accept.legacy.xml")
        .replace("TB-210102-20261120-000123", application)
        .replace("SYSCJG-SP-2026-004217-02", event_id)
}

/// Five case events posted together (so that they may share a commit), one of which the store
/// refuses: that one is answered 500 without the store's words, the others are stored.
async fn a_refused_event_is_answered_500_and_its_neighbours_are_stored(store: &Store, url: &str) {
    let api = TestApi::over(common::config(), store).await;
    let key = common::api_key(store, Role::System, Some(SCJG)).await;
    store
        .accept_application(&NewApplication {
            id: "TB-REFUSED-1",
            item_code: "11210100MB1529370K300011800200001",
            item_version: 1,
            department: "11210100MB1529370K",
            system_id: SCJG,
            body: "{}",
            idempotency: None,
            identity: None,
            message: None,
        })
        .await
        .unwrap();
    refuse_one_event(url).await;

    let ids = [
        "STORED-01",
        "STORED-02",
        REFUSED_EVENT,
        "STORED-03",
        "STORED-04",
    ];
    let answers = futures_util::future::join_all(ids.iter().map(|id| {
        api.send(
            Request::builder()
                .method(Method::POST)
                .uri(format!("/api/v1/systems/{SCJG}/events"))
                .header("authorization", common::bearer(&key))
                .header("content-type", "text/xml; charset=utf-8")
                .body(Body::from(scjg_step("TB-REFUSED-1", id)))
                .unwrap(),
        )
    }))
    .await;
    for (id, (status, answer)) in ids.iter().zip(&answers) {
        if *id == REFUSED_EVENT {
            assert_eq!(
                *status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "refused for good, not 'try again later': {answer:#}"
            );
            assert_eq!(answer["type"], "/problems/not-stored", "{answer:#}");
            assert_eq!(answer["detail"], "the request could not be stored");
            assert!(
                !answer.to_string().contains("refused"),
                "the store's words stay in the log: {answer:#}"
            );
        } else {
            assert_eq!(*status, StatusCode::ACCEPTED, "{id}: {answer:#}");
        }
    }
    let mut stored: Vec<String> = store
        .events_of("TB-REFUSED-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["STORED-01", "STORED-02", "STORED-03", "STORED-04"],
        "every neighbour stored, the refused one not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_event_is_answered_500_and_its_neighbours_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/refused.db", dir.path(), 4)
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/refused.db").display());
    a_refused_event_is_answered_500_and_its_neighbours_are_stored(&store, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refused_event_is_answered_500_and_its_neighbours_are_stored() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let store = Store::open(&database.url, &common::repo(), 4)
        .await
        .unwrap();
    a_refused_event_is_answered_500_and_its_neighbours_are_stored(&store, &database.url).await;
    store.close().await;
}

/// A 人社 case step in the system's JSON, for `application`, with `event_id`, as a poll feed
/// entry.
fn rst_entry(seq: i64, application: &str, event_id: &str) -> serde_json::Value {
    let text = read_text("mappings/tests/rst-card-event/accept.legacy.json")
        .replace("TB-210202-20261125-000017", application)
        .replace("LNRS-SY-2026-001877-02", event_id);
    serde_json::json!({
        "seq": seq,
        "document": serde_json::from_str::<serde_json::Value>(&text).unwrap(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_event_the_store_refuses_is_skipped_and_the_next_ones_are_stored() {
    common::logs::capture();
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = http_systems_config(&Issuer::new(), &soap.base(), &rest.base(), &[]);
    set_adapter_key(dir.path(), RST, "interval_seconds", "1");
    let hub = common::hub::InProcessHub::start(dir.path(), async |_: &Store| ()).await;
    let application = "TB-REFUSED-POLL-1";
    hub.store
        .accept_application(&NewApplication {
            id: application,
            item_code: "11210000001756420G2000113031000",
            item_version: 1,
            department: "11210100MB1529370K",
            system_id: RST,
            body: "{}",
            idempotency: None,
            identity: None,
            message: None,
        })
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("data/tongban.db").display());
    refuse_one_event(&url).await;

    rest.push_event(rst_entry(1, application, REFUSED_EVENT));
    rest.push_event(rst_entry(2, application, "LNRS-AFTER-01"));
    rest.push_event(rst_entry(3, application, "LNRS-AFTER-02"));
    eventually("the events after the refused one to be stored", || async {
        let stored: Vec<String> = hub
            .store
            .events_of(application)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        if stored.len() == 2 {
            Ok(stored)
        } else {
            Err(format!("{stored:?}"))
        }
    })
    .await;
    let refusals = hub.store.refusals(Some(RST), 10).await.unwrap();
    assert!(
        refusals
            .iter()
            .any(|r| r.via.as_str() == "poll"
                && r.reasons.iter().any(|x| x.contains("could not store"))),
        "the skipped message is recorded: {refusals:?}"
    );
    let log = common::logs::text();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("could not be stored and would fail again; skipped")
            && l.contains("seq=1")),
        "logged at ERROR with its place in the feed"
    );
    hub.stop(common::wait::PATIENCE).await;
}
