//! Personal data in text the hub did not write, where readers beyond the department see it: a
//! case event's handler, opinion and reasons in the supervision feed and in
//! `GET /api/v1/applications/{id}` (masked alike, by shape and by what the application says
//! about its people: the applicant's own name, phone, address and e-mail), and a department's
//! error answer with `\u`-escaped personal data in the delivery's `last_error` and the log line
//! that reports the dead letter.

use crate::common;
use crate::on_both_backends;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use common::edit::RST;
use common::mock::{Mock, Mode};
use common::wait::eventually;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tongban::auth::Role;
use tongban::store::{FeedEntry, FeedQuery, NewApplication, Store};

const APPLICATION_ID: &str = "TB-210102-20261121-000201";
const ITEM_CODE: &str = "11210000001756420G2000113031000";

/// 张三's application for a social security card: the values the event below repeats.
fn application() -> Value {
    let mut app = common::rst_application();
    app["id"] = json!(APPLICATION_ID);
    assert_eq!(app["applicant"]["name"], "张三");
    assert_eq!(app["applicant"]["id_number"], "210102199001011237");
    assert_eq!(app["contact"]["phone"], "13800000000");
    assert_eq!(
        app["contact"]["address"],
        "辽宁省沈阳市和平区示例街 8 号 2-3-1"
    );
    assert_eq!(app["contact"]["email"], "zhangsan@example.com");
    app
}

/// A supplement request whose handler, opinion and reason carry 张三's data in the ways
/// handlers write it: the name in a sentence, the ID number (and a mistyped one, and a
/// first-generation one), the mobile grouped and with the country code, a landline, the
/// e-mail in other letter case, the address without its spaces.
fn event() -> Value {
    json!({
        "event_id": "RST-EV-20261122-0001",
        "application_id": APPLICATION_ID,
        "system": RST,
        "node": { "name": "补正", "type": "2", "result": "5" },
        "handler": { "name": "王小五", "id": "210102198203040017", "department": "社保卡服务中心" },
        "opinion": "张三（身份证 210102199001011230，旧证 210102900101123）照片不合格，\
                    已电话 138-0000-0000、138 0000 0000、8613800000000 及 (024)23456789 通知，\
                    邮件 ZhangSan@Example.com",
        "supplement": {
            "materials": ["photo"],
            "reason": "请张三重新上传照片，或寄至辽宁省沈阳市和平区示例街8号2-3-1以外的地址：沈阳市皇姑区黄河北大街 12 号",
        },
        "occurred_at": "2026-11-22T10:00:00+08:00",
    })
}

/// What must not be in what readers beyond the department see of [`event`].
const IN_CLEAR: &[&str] = &[
    "张三",
    "王小五",
    "199001011",
    "198203040",
    "9001011",
    "138-0000",
    "138 0000",
    "13800000000",
    "23456789",
    "hangsan",
    "示例街",
    "2-3-1",
    "黄河北大街",
];

fn in_clear(text: &str) -> Vec<&'static str> {
    IN_CLEAR
        .iter()
        .copied()
        .filter(|clear| text.contains(clear))
        .collect()
}

async fn accept_and_record(store: &Store) {
    let body = application().to_string();
    store
        .accept_application(&NewApplication {
            id: APPLICATION_ID,
            item_code: ITEM_CODE,
            item_version: 1,
            department: &ITEM_CODE[..18],
            system_id: RST,
            body: &body,
            idempotency: None,
            identity: None,
            message: None,
        })
        .await
        .unwrap();
    let event = event().to_string();
    assert!(common::record_event(store, &event).await);
}

async fn feed_entry(store: &Store) -> FeedEntry {
    let mut entries = store
        .feed_after(&FeedQuery {
            kind: Some("event".parse().unwrap()),
            limit: 10,
            ..FeedQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    entries.remove(0)
}

/// The feed masks the event's free texts with the application's own values as well as by
/// shape, and keeps what supervisors read it for.
async fn the_feed_masks_an_events_texts_with_the_applications_values(store: &Store) {
    accept_and_record(store).await;
    let entry = feed_entry(store).await;
    assert!(
        in_clear(&entry.body).is_empty(),
        "{:?} in {}",
        in_clear(&entry.body),
        entry.body
    );
    let masked: Value = serde_json::from_str(&entry.body).unwrap();
    let original = event();
    for field in [
        "event_id",
        "application_id",
        "system",
        "node",
        "occurred_at",
    ] {
        assert_eq!(masked[field], original[field], "{field}");
    }
    assert_eq!(masked["handler"]["name"], "王**");
    assert_eq!(masked["handler"]["department"], "社保卡服务中心");
    assert_eq!(masked["supplement"]["materials"], json!(["photo"]));
    let opinion = masked["opinion"].as_str().unwrap();
    assert!(
        opinion.starts_with("张*（身份证 2101**********1230"),
        "{opinion}"
    );
    assert!(opinion.contains("138-****-0000"), "{opinion}");
}

on_both_backends!(the_feed_masks_an_events_texts_with_the_applications_values);

/// `GET /api/v1/applications/{id}` shows the events as the feed does: handler masked, free
/// texts masked with the application's values.
#[tokio::test]
async fn the_application_view_masks_its_events_as_the_feed_does() {
    let issuer = Issuer::new();
    let api = TestApi::new(&issuer).await;
    let platform = common::api_key(&api.store, Role::Platform, None).await;
    let supervisor = common::api_key(&api.store, Role::Supervisor, None).await;
    accept_and_record(&api.store).await;
    let entry = feed_entry(&api.store).await;
    for key in [&platform, &supervisor] {
        let (status, view) = api
            .send(
                Request::get(format!("/api/v1/applications/{APPLICATION_ID}"))
                    .header("authorization", common::bearer(key))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{view:#}");
        let text = view.to_string();
        assert!(
            in_clear(&text).is_empty(),
            "{:?} in {view:#}",
            in_clear(&text)
        );
        let events = view["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{view:#}");
        let mut shown = events[0].clone();
        assert!(shown["received_at"].is_string(), "{shown:#}");
        shown.as_object_mut().unwrap().remove("received_at");
        let fed: Value = serde_json::from_str(&entry.body).unwrap();
        assert_eq!(shown, fed, "the view and the feed mask alike");
        assert_eq!(shown["handler"]["name"], "王**");
    }
}

/// Where the hub's log lines go in [`a_departments_escaped_echo_is_masked_after_decoding`].
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> CapturedLog {
        self.clone()
    }
}

/// A department refuses 张三's application quoting it back in ASCII-only JSON (`\u` escapes):
/// the dead letter's `last_error` and the ERROR line reporting it hold the answer decoded and
/// masked, neither the name nor its escapes. The runtime has one thread, so the hub's lanes log
/// to this test's subscriber.
#[tokio::test]
async fn a_departments_escaped_echo_is_masked_after_decoding() {
    let log = CapturedLog::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let issuer = Issuer::new();
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Fail400EscapedEcho).await;
    let dir = common::edit::http_systems_config(
        &issuer,
        &soap.base(),
        &rest.base(),
        &[("timeout_ms", "2000")],
    );
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;
    let mut app = common::rst_application();
    app["applicant"]["name"] = json!("张三");
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/api/v1/applications", hub.base))
        .bearer_auth(&hub.callers)
        .header("tongban-user-token", issuer.token_for(&app, 3))
        .json(&app)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer:#}"));
    let delivery = eventually("the refused delivery to be a dead letter", || async {
        let deliveries = hub.store.deliveries_of(id).await.unwrap();
        match deliveries.first() {
            Some(d) if d.status == tongban::model::DeliveryState::Dead => Ok(d.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    hub.stop(Duration::from_secs(20)).await;

    // The system did answer with escapes: the test is not blind.
    let echoed = rest.receptions();
    assert_eq!(echoed.len(), 1);
    let escaped_name = r"\u5f20\u4e09";
    let last_error = delivery.last_error.unwrap_or_default();
    let dead_letter_lines: Vec<String> = log
        .text()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("dead letter"))
        .map(str::to_string)
        .collect();
    assert_eq!(dead_letter_lines.len(), 1, "{}", log.text());
    for (what, text) in [
        ("last_error", last_error.as_str()),
        ("the ERROR line", dead_letter_lines[0].as_str()),
    ] {
        assert!(
            text.contains("证件号码与姓名不匹配"),
            "{what} is decoded: {text}"
        );
        for clear in ["张三", escaped_name, "u5f20", "199001011", "13800000000"] {
            assert!(!text.contains(clear), "{clear} in {what}: {text}");
        }
        assert!(text.contains("张*"), "{what}: {text}");
    }
    let whole = log.text();
    for clear in ["张三", escaped_name] {
        assert!(!whole.contains(clear), "{clear} in the log:\n{whole}");
    }
}
