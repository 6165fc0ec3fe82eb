//! The simulated 住建 system (`dl-zj-permit`, `examples/systems/zj.rs`) behind the real hub, in
//! this process: applications for its 建筑工程施工许可 items go out as SOAP 1.2 in GBK with times
//! in UTC and the hub's identity assertion in the system's own header element; its
//! acknowledgement codes decide what counts as delivered; its case steps, a node code and a
//! conclusion code, come back by webhook as canonical events that supervision judges.
//!
//! Each test has a configuration of its own (the repository's, with a test identity issuer,
//! no AMQP system, the 住建 adapter pointed at the simulator and quick retries), a hub serving
//! on a port bound first so that the simulator knows where to post and fetch keys, and the
//! simulator holding the system key the hub will know.

// The systems library is loaded by `example_systems` too; each module keeps its own copy, so
// that neither depends on the other.
use crate::systems;

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime};
use common::Issuer;
use common::edit::{edit, set_key};
use common::hub::InProcessHub;
use common::wait::eventually;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use systems::Mode;
use systems::http::Retry;
use systems::zj::{self, ZjHandle};
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::auth::assertion::{Identity, Signer};
use tongban::config::Config;
use tongban::ids::{mask_id, mask_name};
use tongban::mapping::Node;
use tongban::store::Store;

/// The identity system every configuration here trusts.
static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);
const STOP_PATIENCE: Duration = Duration::from_secs(20);
const HUB_NS: &str = "urn:tongban:hub:2026";
const ACTION: &str = "http://sgxk.zjj.dl.gov.cn/ws/2021/TiJiaoShenQing";

/// Who calls the hub: the platform, an administrator, and the system (its own key).
struct Callers {
    platform: String,
    admin: String,
    system: String,
}

/// The hub, the 住建 system behind it, and the configuration they share.
struct Province {
    hub: InProcessHub<Arc<Callers>>,
    zj: ZjHandle,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// Starts the simulator (in `mode`) and the hub on a configuration in which `change` has been
/// made first.
async fn province(mode: Mode, change: impl FnOnce(&Path)) -> Province {
    let dir = common::config_copy();
    ISSUER.install_in_dir(dir.path());
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "shutdown_grace_seconds", "1")
    });
    change(dir.path());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("http://{}", listener.local_addr().unwrap());
    let system_key = tongban::auth::issue_key(Role::System, Some(zj::SYSTEM), "test", "test", None);
    let config = systems::load_config(dir.path()).unwrap();
    let mut settings = zj::settings(config).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.hub_url = Some(hub_url);
    settings.hub_key = Some(system_key.secret.clone());
    settings.step_delay = Duration::from_millis(30);
    settings.mode = mode;
    settings.retry = Retry {
        attempts: 20,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    };
    let zj = zj::start(settings).await.unwrap();

    let adapter = common::edit::adapter_file(dir.path(), zj::SYSTEM);
    let base = format!("http://{}", zj.local_addr);
    edit(&adapter, |t| {
        let t = t.replace("http://127.0.0.1:9401", &base);
        let t = set_key(&t, "timeout_ms", "5000");
        set_key(
            &t,
            "retry",
            "{ attempts = 30, initial_backoff_ms = 50, max_backoff_ms = 400, max_age_seconds = 600 }",
        )
    });
    let record = system_key.record.clone();
    let system = system_key.secret.clone();
    let hub = InProcessHub::start_on(dir.path(), listener, async move |store: &Store| {
        store.insert_api_key(&record).await.unwrap();
        Arc::new(Callers {
            platform: common::api_key(store, Role::Platform, None).await,
            admin: common::api_key(store, Role::Admin, None).await,
            system,
        })
    })
    .await;
    Province {
        hub,
        zj,
        dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

impl Province {
    /// Submits `app` as the platform, with its applicant's token; the id the hub gave it.
    async fn submit(&self, app: &Value) -> String {
        let answer = self
            .http
            .post(format!("{}/api/v1/applications", self.hub.base))
            .bearer_auth(&self.hub.callers.platform)
            .header("Tongban-User-Token", ISSUER.token_for(app, 3))
            .json(app)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "{body:#}");
        assert_eq!(body["system"], zj::SYSTEM, "{body:#}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn get(&self, path: &str, secret: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.hub.base))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        answer.json().await.unwrap()
    }

    async fn application(&self, id: &str) -> Value {
        let platform = self.hub.callers.platform.clone();
        self.get(&format!("/api/v1/applications/{id}"), &platform)
            .await
    }

    /// Waits until the application is in `state`; the application then.
    async fn in_state(&self, id: &str, state: &str) -> Value {
        eventually(&format!("{id} to be {state}"), || async move {
            let app = self.application(id).await;
            if app["state"] == state {
                return Ok(app);
            }
            Err(format!("{} {:#}", app["state"], app["deliveries"]))
        })
        .await
    }

    /// Every attempt logged for the application.
    async fn attempts(&self, id: &str) -> Vec<Value> {
        let app = self.application(id).await;
        app["deliveries"][0]["attempt_log"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(self) {
        self.hub.stop(STOP_PATIENCE).await;
    }
}

/// `tongban results verify FILE` as a verifier runs it: nothing but the file; the controller
/// document and status lists fetched from the addresses the seal names.
async fn verify_file(file: &Path) -> (bool, String) {
    let file = file.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        common::process::tongban()
            .args(["results", "verify"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The permit the 住建 system issues is sealed by the hub; the sealed credential, saved to a
/// file, verifies with the command line against the running hub (seal, issuer, status), and
/// once the system revokes the permit the same file is reported revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permit_is_sealed_and_verifies_with_the_command_line_until_revoked() {
    let p = province(Mode::Ok, |_| {}).await;
    let id = p.submit(&permit_application()).await;
    p.in_state(&id, "completed").await;
    let (province, id) = (&p, id.as_str());
    let license = eventually("the permit stored", || async move {
        let app = province.application(id).await;
        app["results"][0]["license_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("{:#}", app["results"]))
    })
    .await;
    let shown = p
        .get(&format!("/api/v1/results/{license}"), &p.hub.callers.system)
        .await;
    let credential = &shown["versions"][0]["credential"];
    assert_eq!(credential["type"][1], "ElectronicLicense", "{shown:#}");
    let file = p.dir.path().join("permit.sealed.json");
    std::fs::write(&file, serde_json::to_vec_pretty(credential).unwrap()).unwrap();

    let (verified, said) = verify_file(&file).await;
    assert!(verified, "{said}");
    assert!(said.contains("the seal verifies"), "{said}");
    assert!(said.contains("revocation: not revoked"), "{said}");
    assert!(said.contains("suspension: not suspended"), "{said}");

    let revoked = p
        .http
        .post(format!(
            "{}/api/v1/systems/{}/results/{license}/revocation",
            p.hub.base,
            zj::SYSTEM
        ))
        .bearer_auth(&p.hub.callers.system)
        .json(&json!({ "reason": "施工许可证依法撤销" }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let (verified, said) = verify_file(&file).await;
    assert!(!verified, "{said}");
    assert!(said.contains("revocation: REVOKED"), "{said}");
    p.stop().await;
}

/// A 建筑工程施工许可 (新办) application, as the platform submits it (no id yet).
fn permit_application() -> Value {
    let mut app =
        common::read_json("mappings/tests/zj-permit-application/new-permit.canonical.json");
    app.as_object_mut().unwrap().remove("id");
    app
}

/// The detail an attempt was logged with.
fn detail(attempt: &Value) -> &str {
    attempt["detail"].as_str().unwrap_or_default()
}

fn gbk(bytes: &[u8]) -> String {
    let (text, _, malformed) = encoding_rs::GBK.decode(bytes);
    assert!(!malformed, "GBK: {}", String::from_utf8_lossy(bytes));
    text.into_owned()
}

/// The content of the first `<tag …>…</tag>` in `text`.
fn element<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let at = text[from..].find(&open)? + from + open.len();
        match text[at..].chars().next() {
            Some('>') => break at + 1,
            Some(' ') => break text[at..].find('>')? + at + 1,
            _ => from = at,
        }
    };
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(&text[start..end])
}

/// The claims of a JWT, unverified (the system verifies; the test only looks).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The system's acknowledgement in an answer, read as the hub reads it.
fn acknowledgement(config: &Config, body: &[u8]) -> Value {
    config.mappings[zj::ACK_MAPPING]
        .to_canonical(body)
        .unwrap_or_else(|e| panic!("an acknowledgement: {e:?}: {}", gbk(body)))
}

/// Each step of the case the hub holds: node name, type, result, and its completion.
fn steps(app: &Value) -> Vec<(String, String, String, Value)> {
    app["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let node = &e["node"];
            let text = |k: &str| node[k].as_str().unwrap().to_string();
            (
                text("name"),
                text("type"),
                text("result"),
                e["completion"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_goes_to_the_zj_system_in_its_format_and_its_case_comes_back() {
    let p = province(Mode::Ok, |_| {}).await;
    let app = permit_application();
    let id = p.submit(&app).await;
    p.in_state(&id, "completed").await;
    let zj_system = &p.zj;
    eventually("the permit reported", || async move {
        let stats = zj_system.stats();
        (stats.results_reported == 1)
            .then_some(())
            .ok_or(format!("{stats:?}"))
    })
    .await;

    // What reached the system: SOAP 1.2 in GBK, its action, times in UTC, the assertion in
    // its own header element; answered 0000.
    let received = p.zj.wire.received();
    assert_eq!(received.len(), 1, "one delivery");
    let request = &received[0];
    assert_eq!(request.answered.as_deref(), Some(zj::ACCEPTED));
    assert!(
        request.content_type.starts_with("application/soap+xml")
            && request.content_type.contains("charset=GBK")
            && request
                .content_type
                .contains(&format!("action=\"{ACTION}\"")),
        "{}",
        request.content_type
    );
    let text = gbk(&request.body);
    assert!(
        std::str::from_utf8(&request.body).is_err(),
        "GBK bytes, not UTF-8"
    );
    assert!(
        text.starts_with(r#"<?xml version="1.0" encoding="GBK"?>"#),
        "{text}"
    );
    assert!(text.contains(tongban::mapping::xml::SOAP12_NS), "{text}");
    // 09:30 China time is 01:30 on the system's UTC clock.
    assert_eq!(
        element(&text, "zj:ShenBaoShiJian"),
        Some("2026-11-20 01:30:00"),
        "{text}"
    );
    assert_eq!(
        element(&text, "zj:ShenQingRen").and_then(|a| element(a, "zj:MingCheng")),
        Some("大连示例建设开发有限公司")
    );
    let token = element(&text, "zj:TongYiShenFen").expect("the assertion in zj:TongYiShenFen");
    let claims = claims_of(token);
    assert_eq!(
        (&claims["aud"], &claims["application_id"], &claims["iss"]),
        (&json!(zj::SYSTEM), &json!(id), &json!("tongban")),
        "{claims:#}"
    );
    // Read back with the mapping, the delivery is the application the platform submitted.
    let config = common::config();
    let mut submitted = app.clone();
    submitted["id"] = json!(id);
    assert_eq!(
        config.mappings[zj::APPLICATION_MAPPING]
            .to_canonical(&request.body)
            .unwrap(),
        submitted
    );

    // The system verified the hub's assertion there and recorded whom the hub vouched for.
    let stats = p.zj.stats();
    assert_eq!((stats.accepted, stats.rejected), (1, 0), "{stats:?}");
    let recorded = p.zj.control.identity(&id).expect("an identity recorded");
    assert_eq!(recorded.real_name_level, 3);
    assert_eq!(recorded.applicant_kind, "2");
    assert_eq!(
        recorded.applicant_id_number,
        mask_id(app["applicant"]["id_number"].as_str().unwrap())
    );
    let attempts = p.attempts(&id).await;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["status"], 200);

    // Its case, reported with a node code and a conclusion code, in canonical steps: 受理
    // without a conclusion and without a completion, 办结 with the completion.
    let held = p.application(&id).await;
    assert_eq!(
        steps(&held),
        [
            ("受理".into(), "1".into(), "4".into(), Value::Null),
            ("审查".into(), "2".into(), "1".into(), Value::Null),
            ("决定".into(), "2".into(), "1".into(), Value::Null),
            (
                "办结".into(),
                "3".into(),
                "1".into(),
                json!({"result": "0"})
            ),
        ]
    );
    let reported = p.zj.wire.reported("events");
    assert_eq!(reported.len(), 4);
    let bodies: Vec<String> = reported.iter().map(|e| gbk(&e.body)).collect();
    assert!(
        reported[0].content_type.contains("charset=GBK"),
        "{}",
        reported[0].content_type
    );
    assert!(
        bodies[0].contains(r#"<zj:HuanJie dm="01"/>"#) && !bodies[0].contains("JieLun"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[3].contains(r#"<zj:HuanJie dm="09"/>"#)
            && bodies[3].contains(r#"<zj:JieLun dm="1"/>"#),
        "{}",
        bodies[3]
    );
    // Each step's time, as the system wrote it in UTC, is the time the hub holds.
    for (body, event) in bodies.iter().zip(held["events"].as_array().unwrap()) {
        let utc = element(body, "zj:BanLiShiJian").unwrap();
        let utc = NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc();
        let held = event["occurred_at"].as_str().unwrap();
        assert!(held.ends_with("+08:00"), "{held}");
        assert_eq!(DateTime::parse_from_rfc3339(held).unwrap(), utc, "{body}");
    }
    let permit = gbk(&p.zj.wire.reported("results")[0].body);
    assert!(
        permit.contains("<zj:ZhengZhaoMingCheng>建筑工程施工许可证"),
        "{permit}"
    );

    // Supervision sees the case completed, on time, and nothing wrong with its times.
    let admin = p.hub.callers.admin.clone();
    let (province, admin_key, id_ref) = (&p, admin.as_str(), id.as_str());
    let case = eventually("the case evaluated as completed", || async move {
        let body = province
            .get(
                &format!(
                    "/api/v1/supervision/cases?system={}&state=completed",
                    zj::SYSTEM
                ),
                admin_key,
            )
            .await;
        body["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["application_id"] == id_ref)
            .cloned()
            .ok_or(format!("{body:#}"))
    })
    .await;
    assert_eq!(case["on_time"], true, "{case:#}");
    let alerts = p
        .get(
            &format!("/api/v1/supervision/alerts?application={id}"),
            &admin,
        )
        .await;
    assert_eq!(alerts["alerts"], json!([]), "{alerts:#}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_the_zj_systems_own_code_is_a_dead_letter_and_busy_is_tried_again() {
    let p = province(Mode::Fail400, |_| {}).await;
    let refused = p.submit(&permit_application()).await;
    let app = p.in_state(&refused, "undeliverable").await;
    let delivery = &app["deliveries"][0];
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "a refusal is final: {app:#}");
    assert_eq!(log[0]["status"], 200);
    assert!(
        detail(&log[0]).contains(&format!(
            "the system refused it ({}): 数据校验不通过",
            zj::BAD_DATA
        )),
        "{app:#}"
    );
    let admin = p.hub.callers.admin.clone();
    let letters = p
        .get(
            &format!("/api/v1/dead-letters?system={}", zj::SYSTEM),
            &admin,
        )
        .await;
    let letter = letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["application_id"] == refused)
        .unwrap_or_else(|| panic!("a dead letter: {letters:#}"));
    assert!(
        letter["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("(E101)")),
        "{letter:#}"
    );
    assert_eq!(p.zj.stats().distinct_applications, 0, "nothing taken");

    // Busy (E503): tried again, and delivered once the system takes it.
    p.zj.control.set_mode(Mode::SoapServerFault);
    let later = p.submit(&permit_application()).await;
    let (province, later_id) = (&p, later.as_str());
    eventually("a busy answer tried again", || async move {
        let attempts = province.attempts(later_id).await;
        let busy = attempts
            .iter()
            .filter(|a| detail(a).contains(&format!("({}): 系统繁忙", zj::BUSY)))
            .count();
        (busy >= 2).then_some(()).ok_or(format!("{attempts:#?}"))
    })
    .await;
    assert_eq!(p.application(&later).await["state"], "accepted");
    p.zj.control.set_mode(Mode::Ok);
    p.in_state(&later, "completed").await;
    let answered: Vec<Option<String>> =
        p.zj.wire
            .received()
            .into_iter()
            .map(|r| r.answered)
            .collect();
    assert_eq!(answered.first(), Some(&Some(zj::BAD_DATA.to_string())));
    assert_eq!(answered.last(), Some(&Some(zj::ACCEPTED.to_string())));
    assert!(
        answered.contains(&Some(zj::BUSY.to_string())),
        "{answered:?}"
    );
    assert_eq!(p.zj.stats().application_ids, vec![later]);
    p.stop().await;
}

/// A delivery whose mapping does not put the assertion in `zj:TongYiShenFen` is refused, though
/// the hub's own header entry and HTTP header carry a valid one: the system reads only its
/// own element.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zj_system_refuses_a_delivery_without_the_assertion_in_its_own_header_element() {
    let p = province(Mode::Ok, |dir| {
        edit(&dir.join("mappings/zj-permit-application.toml"), |t| {
            let field = "[[field]]\nlegacy = \"zj:TongYiShenFen\"\nheader = true\nsource = \"assertion\"\n\n";
            assert!(t.contains(field), "{t}");
            t.replace(field, "")
        });
    })
    .await;
    let id = p.submit(&permit_application()).await;
    let app = p.in_state(&id, "undeliverable").await;
    let log = app["deliveries"][0]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{app:#}");
    assert!(
        detail(&log[0]).contains(&format!("({}): 身份认证失败", zj::IDENTITY_REFUSED))
            && detail(&log[0]).contains("(missing)"),
        "{app:#}"
    );
    let text = gbk(&p.zj.wire.received()[0].body);
    assert!(text.contains("IdentityAssertion"), "{text}");
    assert!(!text.contains("TongYiShenFen"), "{text}");
    let stats = p.zj.stats();
    assert_eq!(
        stats.assertion_refusal_reasons,
        BTreeMap::from([("missing".to_string(), 1)])
    );
    assert_eq!(stats.distinct_applications, 0);
    p.stop().await;
}

/// Straight to the system, in the hub's format: a forged assertion, one for another system and
/// none at all in `zj:TongYiShenFen` (with valid ones where the hub also puts them) are each
/// refused with E401 and the reason; a valid one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zj_system_verifies_the_assertion_in_its_own_header_element() {
    let p = province(Mode::Ok, |_| {}).await;
    let config = common::config();
    let mapping = &config.mappings[zj::APPLICATION_MAPPING];
    // One application through the hub first: its keys exist and the system has its case.
    let mut app = permit_application();
    let id = p.submit(&app).await;
    p.in_state(&id, "completed").await;
    app["id"] = json!(id);

    let hub_key = Signer::load(&p.dir.path().join("data/keys"), "tongban", 120).unwrap();
    let text = |k: &str| app["applicant"][k].as_str().unwrap().to_string();
    let who = Identity {
        sub: "ids-zj-test".into(),
        kind: text("kind").parse().unwrap(),
        id_type: text("id_type").parse().unwrap(),
        id_number: mask_id(&text("id_number")),
        name: mask_name(&text("name")),
        real_name_level: 3,
    };
    let sign = |system: &str, jti: &str| hub_key.assertion(system, &id, jti, &who).unwrap();
    let valid = sign(zj::SYSTEM, "direct#1");
    let forged = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
        let mut claims = claims_of(&valid);
        claims["real_name_level"] = json!(1);
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    };
    let entry = |name: &str, value: &str| {
        let mut node = Node::named(name);
        node.attrs.push(("xmlns".into(), HUB_NS.into()));
        node.value = Some(Value::String(value.to_string()));
        node
    };
    let post = |own: Option<String>| {
        let body = mapping
            .to_legacy_with_header(
                &app,
                vec![entry("IdentityAssertion", &valid)],
                own.as_deref(),
            )
            .unwrap();
        let url = p.zj.url(zj::APPLY_PATH);
        let (http, valid) = (p.http.clone(), valid.clone());
        async move {
            let answer = http
                .post(url)
                .header(
                    "Content-Type",
                    format!("application/soap+xml; charset=GBK; action=\"{ACTION}\""),
                )
                .header("Tongban-Assertion", valid)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
            answer.bytes().await.unwrap().to_vec()
        }
    };

    for (assertion, reason) in [
        (None, "missing"),
        (Some(forged), "bad_signature"),
        (Some(sign("sy-scjg-food", "direct#2")), "wrong_audience"),
    ] {
        let ack = acknowledgement(&config, &post(assertion).await);
        assert_eq!(ack["accepted"], false, "{reason}: {ack:#}");
        assert_eq!(ack["code"], zj::IDENTITY_REFUSED, "{reason}: {ack:#}");
        assert!(
            ack["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("({reason})"))),
            "{reason}: {ack:#}"
        );
    }
    // A valid one in its element: taken, as a repeat of the case it has (no second case).
    let ack = acknowledgement(&config, &post(Some(valid.clone())).await);
    assert_eq!(
        (&ack["accepted"], &ack["code"]),
        (&json!(true), &json!(zj::DUPLICATE)),
        "{ack:#}"
    );
    let stats = p.zj.stats();
    assert_eq!(
        stats.assertion_refusal_reasons,
        BTreeMap::from([
            ("bad_signature".to_string(), 1),
            ("missing".to_string(), 1),
            ("wrong_audience".to_string(), 1),
        ])
    );
    assert_eq!(stats.application_ids, vec![id]);
    p.stop().await;
}
