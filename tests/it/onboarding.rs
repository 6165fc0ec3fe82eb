//! Onboarding (第五条): a department submits its system's bundle, the hub checks it and probes
//! the system's endpoint (same-source items, unified identity, the simulated transaction and
//! its shared result), a 营商局 reviewer rejects with a reason per failing point or approves,
//! and an approved bundle goes live without a restart. On SQLite and PostgreSQL; the systems
//! run on 127.0.0.1: the repository's simulated 人社 system (it checks the hub's identity
//! assertion and walks every case it takes, reporting each step and the license in the feeds
//! the hub polls), and small servers that only answer deliveries, checking the assertion as a
//! department does (or, the lax one, not).

use crate::common::{self, Issuer, api::TestApi, bearer};
use crate::on_both_backends;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::config::Config;
use tongban::store::Store;

static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

/// The system that onboards: the repository's 人社 system, not connected yet in these tests.
pub(crate) const SYSTEM: &str = "ln-rst-card";
/// Its department's USCC (systems.toml).
const RST_USCC: &str = "11210000001756420G";
/// Another department's USCC (市场监管).
const OTHER_USCC: &str = "11210100MB1529370K";

/// How a probe target answers the hub.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Verifies the hub's assertion: refuses without one or with a bad one (401).
    Assertion,
    /// Accepts everything.
    Nothing,
}

/// A department system on 127.0.0.1 that answers deliveries and reports nothing; keeps the
/// application ids it accepted.
struct Target {
    /// `http://host:port`.
    url: String,
    accepted: Arc<Mutex<Vec<String>>>,
}

async fn target(checks: Checks, keys: JwkSet) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let seen = accepted.clone();
    let keys = Arc::new(keys);
    let app = Router::new().route(
        "/rst/card/apply",
        axum::routing::post(move |headers: HeaderMap| {
            let (keys, seen) = (keys.clone(), seen.clone());
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if checks == Checks::Assertion {
                    let token = headers
                        .get("tongban-assertion")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if let Err(why) = verify(&keys, token) {
                        return (StatusCode::UNAUTHORIZED, format!("{{\"error\":\"{why}\"}}"));
                    }
                }
                seen.lock().unwrap().push(key);
                (StatusCode::OK, "{\"code\":\"0\"}".to_string())
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Target { url, accepted }
}

/// As a department checks the assertion: signed by a key the hub publishes, for this system.
fn verify(keys: &JwkSet, token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "no assertion".to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = keys.find(&kid).ok_or("unknown key")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[SYSTEM]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|_| ())
        .map_err(|_| "assertion refused".to_string())
}

/// The simulated 人社 system, walking each case it takes a step every 100 ms, checking the
/// assertion with `keys` (served on a port of their own, as the hub serves them); with
/// `report_late`, each step is reported 5 s after it happened. Its base URL.
pub(crate) async fn walking_system(
    keys: &JwkSet,
    report_late: bool,
) -> (crate::systems::SystemHandle, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}", listener.local_addr().unwrap());
    let keys = serde_json::to_value(keys).unwrap();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { axum::Json(keys) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut settings = crate::systems::rst::RstSettings::new(Arc::new(common::config())).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.hub_url = Some(jwks_url);
    settings.step_delay = std::time::Duration::from_millis(100);
    settings.late_by = std::time::Duration::from_secs(5);
    let system = crate::systems::rst::start(settings).await.unwrap();
    system.control.set_report_late(report_late);
    let base = format!("http://{}", system.local_addr);
    (system, base)
}

/// The repository's configuration in a temporary directory with its inventory, the onboarding
/// system's adapter taken out (its mappings stay: no other system uses them), and short limits
/// for the simulated transaction: 受理 within 3 s, 办结 within 20 s, the result within 10 s.
fn config_dir() -> tempfile::TempDir {
    let dir = common::config_copy();
    let hub_toml = dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&hub_toml).unwrap();
    let limited = text
        .replace("accept_within_seconds = 60", "accept_within_seconds = 3")
        .replace(
            "complete_within_seconds = 600",
            "complete_within_seconds = 20",
        )
        .replace("result_within_seconds = 120", "result_within_seconds = 10");
    assert_ne!(text, limited, "hub.toml has [onboarding]'s limits");
    std::fs::write(&hub_toml, limited).unwrap();
    ISSUER.install_in_dir(dir.path());
    std::fs::copy(
        common::repo().join("systems.toml"),
        dir.path().join("systems.toml"),
    )
    .unwrap();
    std::fs::remove_file(common::edit::adapter_file(dir.path(), SYSTEM)).unwrap();
    dir
}

/// The onboarding system's bundle from the repository's files, its adapter sending to and
/// polling the system at `base` (`http://host:port`) every second.
pub(crate) fn bundle(base: &str) -> Value {
    let root = common::repo();
    let mut files = serde_json::Map::new();
    let adapter = std::fs::read_to_string(root.join(format!("adapters/{SYSTEM}.toml"))).unwrap();
    files.insert(
        format!("adapters/{SYSTEM}.toml"),
        Value::String(
            adapter
                .replace("http://127.0.0.1:9201", base)
                .replace("interval_seconds = 2", "interval_seconds = 1"),
        ),
    );
    for mapping in ["rst-card-application", "rst-card-event", "rst-card-result"] {
        files.insert(
            format!("mappings/{mapping}.toml"),
            Value::String(common::read_text(&format!("mappings/{mapping}.toml"))),
        );
        add_tests(&mut files, &root, mapping);
    }
    json!({ "system": SYSTEM, "files": files })
}

fn add_tests(files: &mut serde_json::Map<String, Value>, root: &Path, mapping: &str) {
    let folder = root.join("mappings/tests").join(mapping);
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        files.insert(
            format!("mappings/tests/{mapping}/{name}"),
            Value::String(text),
        );
    }
}

pub(crate) struct Rig {
    pub(crate) api: TestApi,
    dir: tempfile::TempDir,
    pub(crate) system: String,
    pub(crate) admin: String,
    pub(crate) reviewer: String,
    pub(crate) keys: JwkSet,
}

pub(crate) async fn rig(store: &Store) -> Rig {
    let dir = config_dir();
    let config = Config::load(dir.path()).expect("the test configuration compiles");
    let api = TestApi::over(config, store).await;
    let (_, keys) = api
        .send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    Rig {
        system: common::api_key(store, Role::System, Some(SYSTEM)).await,
        admin: common::api_key(store, Role::Admin, None).await,
        reviewer: reviewer_token(Some(OTHER_USCC)),
        keys: serde_json::from_value(keys).unwrap(),
        api,
        dir,
    }
}

/// A 营商局 reviewer's staff token, working for `department`.
pub(crate) fn reviewer_token(department: Option<&str>) -> String {
    let now = tongban::clock::now_millis() / 1000;
    let mut claims = json!({
        "iss": ISSUER.issuer, "aud": ISSUER.staff_audience, "sub": "reviewer-1",
        "iat": now, "exp": now + 600, "roles": ["reviewer"],
    });
    if let Some(d) = department {
        claims["department"] = Value::String(d.into());
    }
    ISSUER.sign("t-ec", &claims)
}

impl Rig {
    pub(crate) async fn call(
        &self,
        method: &str,
        uri: &str,
        secret: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", bearer(secret))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        self.api.send(request).await
    }

    pub(crate) async fn submit(&self, bundle: &Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/api/v1/onboarding/requests",
            &self.system,
            Some(bundle),
        )
        .await
    }

    /// Waits until the request has been probed; the request.
    pub(crate) async fn probed(&self, id: &str) -> Value {
        let uri = format!("/api/v1/onboarding/requests/{id}");
        common::wait::eventually("the request to be probed", || async {
            let (status, request) = self.call("GET", &uri, &self.reviewer, None).await;
            assert_eq!(status, StatusCode::OK, "{request:#}");
            if request["state"] == "probing" {
                Err("still probing".to_string())
            } else {
                Ok(request)
            }
        })
        .await
    }

    /// The system reads the catalog's change feed as a follower does, page by page up to the
    /// head (asking for what comes after the last it has); the head.
    pub(crate) async fn follow_catalog(&self) -> i64 {
        let mut after = 0;
        loop {
            let (status, page) = self.changes_after(after).await;
            assert_eq!(status, StatusCode::OK, "{page:#}");
            let next = page["next_after"].as_i64().unwrap();
            if next == after {
                return next;
            }
            after = next;
        }
    }

    /// The system asks for the changes after `after`, saying it has taken those up to it.
    async fn changes_after(&self, after: i64) -> (StatusCode, Value) {
        self.call(
            "GET",
            &format!("/api/v1/catalog/changes?after={after}&limit=1000"),
            &self.system,
            None,
        )
        .await
    }

    async fn decide(&self, id: &str, secret: &str, decision: &Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/v1/onboarding/requests/{id}/decision"),
            secret,
            Some(decision),
        )
        .await
    }
}

fn probe<'a>(request: &'a Value, name: &str) -> &'a Value {
    request["probes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["probe"] == name))
        .unwrap_or_else(|| panic!("no probe {name}: {request:#}"))
}

/// A system that checks the assertion passes both probes; a reviewer of its own department
/// may not decide; another approves, and the system is live at once.
async fn a_conforming_system_is_probed_approved_and_live_without_a_restart(store: &Store) {
    let rig = rig(store).await;
    let (_system, base) = walking_system(&rig.keys, false).await;
    // It follows the catalog's change feed, and has taken every change.
    let head = rig.follow_catalog().await;
    assert!(head > 0);
    let (status, submitted) = rig.submit(&bundle(&base)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    assert_eq!(submitted["state"], "probing", "{submitted:#}");
    let id = submitted["id"].as_str().unwrap().to_string();

    let request = rig.probed(&id).await;
    assert_eq!(request["state"], "awaiting_review", "{request:#}");
    for name in [
        "same_source",
        "identity",
        "simulated_transaction",
        "result_sharing",
    ] {
        assert_eq!(probe(&request, name)["outcome"], "passed", "{request:#}");
    }
    let followed = probe(&request, "same_source")["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.get("change_feed").is_some())
        .cloned()
        .unwrap();
    assert_eq!(
        followed["change_feed"],
        json!({ "taken_to": head, "head": head }),
        "{request:#}"
    );
    let identity = probe(&request, "identity");
    let outcomes: Vec<&str> = identity["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "accepted"], "{identity:#}");
    // The simulated transaction: delivered, then every step the system walked, 受理 first.
    let transaction = probe(&request, "simulated_transaction");
    let evidence = transaction["evidence"].as_array().unwrap();
    assert_eq!(evidence[0]["outcome"], "accepted", "{transaction:#}");
    let application = evidence[0]["application_id"].as_str().unwrap().to_string();
    assert_eq!(application, format!("TEST-{id}-transaction"));
    let steps: Vec<&str> = evidence.iter().filter_map(|e| e["step"].as_str()).collect();
    assert_eq!(steps, ["受理", "审查", "决定", "办结"], "{transaction:#}");
    // The result it shared was checked and sealed, and kept nowhere.
    let sharing = probe(&request, "result_sharing");
    assert_eq!(sharing["evidence"][0]["sealed"], true, "{sharing:#}");
    assert!(
        sharing["evidence"][0]["license_id"]
            .as_str()
            .is_some_and(|l| l.starts_with("1.2.156.3005.2.")),
        "{sharing:#}"
    );
    // Probe applications are never applications, and what the system reported about them is
    // in no table, feed or statistic.
    assert!(store.application(&application).await.unwrap().is_none());
    assert!(store.events_of(&application).await.unwrap().is_empty());
    let (_, feed) = rig
        .call(
            "GET",
            "/api/v1/supervision/feed?limit=1000",
            &rig.admin,
            None,
        )
        .await;
    assert!(!feed.to_string().contains("TEST-"), "{feed:#}");

    let approve = json!({ "decision": "approve" });
    let own = reviewer_token(Some(RST_USCC));
    let (status, problem) = rig.decide(&id, &own, &approve).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem:#}");
    let (status, problem) = rig.decide(&id, &rig.system, &approve).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a system does not decide: {problem:#}"
    );

    let (status, before) = rig
        .call("GET", "/api/v1/configuration", &rig.admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !before["systems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == SYSTEM)
    );
    let (status, decided) = rig.decide(&id, &rig.reviewer, &approve).await;
    assert_eq!(status, StatusCode::OK, "{decided:#}");
    assert_eq!(decided["state"], "live", "{decided:#}");
    assert_eq!(decided["decision"]["decision"], "approve", "{decided:#}");
    let (_, after) = rig
        .call("GET", "/api/v1/configuration", &rig.admin, None)
        .await;
    assert_eq!(
        after["generation"],
        before["generation"].as_i64().unwrap() + 1
    );
    assert!(
        after["systems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == SYSTEM),
        "{after:#}"
    );
    assert!(common::edit::adapter_file(rig.dir.path(), SYSTEM).exists());
    // Decided once: a second decision is a conflict.
    let (status, _) = rig.decide(&id, &rig.reviewer, &approve).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The decision is in the audit log.
    let (_, audit) = rig
        .call("GET", "/api/v1/audit?limit=50", &rig.admin, None)
        .await;
    assert!(
        audit
            .to_string()
            .contains(&format!("approved onboarding request {id}")),
        "{audit:#}"
    );
}

/// A system that accepts anything fails the identity probe; a rejection must give a reason for
/// it; the department sees the reasons, fixes and resubmits, and the new request passes.
async fn a_system_that_ignores_the_assertion_is_rejected_with_reasons_then_fixed(store: &Store) {
    let rig = rig(store).await;
    let lax = target(Checks::Nothing, rig.keys.clone()).await;
    let (status, submitted) = rig.submit(&bundle(&lax.url)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    let id = submitted["id"].as_str().unwrap().to_string();
    // One request on its way at a time.
    let (status, problem) = rig.submit(&bundle(&lax.url)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem:#}");

    let request = rig.probed(&id).await;
    let identity = probe(&request, "identity");
    assert_eq!(identity["outcome"], "failed", "{request:#}");
    let reasons = identity["reasons"].to_string();
    assert!(reasons.contains("without assertion"), "{reasons}");
    assert!(reasons.contains("forged assertion"), "{reasons}");
    // It takes the simulated application and never reports on it.
    assert!(
        lax.accepted
            .lock()
            .unwrap()
            .contains(&format!("TEST-{id}-transaction")),
        "the simulated application is visibly a test"
    );
    let transaction = probe(&request, "simulated_transaction");
    assert_eq!(transaction["outcome"], "failed", "{request:#}");
    assert!(
        transaction["reasons"].to_string().contains("no 受理"),
        "{transaction:#}"
    );
    let sharing = probe(&request, "result_sharing");
    assert_eq!(sharing["outcome"], "failed", "{request:#}");

    let (status, problem) = rig
        .decide(&id, &rig.reviewer, &json!({ "decision": "approve" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert!(problem.to_string().contains("identity"), "{problem:#}");
    let (status, problem) = rig
        .decide(
            &id,
            &rig.reviewer,
            &json!({ "decision": "reject", "reasons": { "same_source": "" } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    let listed = problem["errors"].to_string();
    assert!(
        listed.contains("reasons.identity")
            && listed.contains("reasons.simulated_transaction")
            && listed.contains("reasons.result_sharing")
            && listed.contains("reasons.same_source: empty"),
        "{problem:#}"
    );
    let why = "系统未校验统一身份认证断言，请改正后重新提交";
    let (status, rejected) = rig
        .decide(
            &id,
            &rig.reviewer,
            &json!({ "decision": "reject", "reasons": {
                "identity": why,
                "simulated_transaction": "模拟办事未上报受理",
                "result_sharing": "未共享办理结果",
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected:#}");
    assert_eq!(rejected["state"], "rejected");
    // The department reads the decision and its reasons with its own key.
    let (status, seen) = rig
        .call(
            "GET",
            &format!("/api/v1/onboarding/requests/{id}"),
            &rig.system,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["decision"]["reasons"]["identity"], why, "{seen:#}");
    assert!(
        !common::edit::adapter_file(rig.dir.path(), SYSTEM).exists(),
        "nothing went live"
    );
    // On the feed (the supervision stream, and the AMQP exchange by the same routing keys):
    // each step of the request, the probes' outcomes and the reasons.
    let (status, stream) = rig
        .api
        .send_text(
            Request::get("/api/v1/supervision/stream?kind=onboarding&follow=false")
                .header("authorization", bearer(&rig.admin))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stream}");
    for key in ["probing", "awaiting_review", "rejected"] {
        assert!(
            stream.contains(&format!(
                "\"system\":\"{SYSTEM}\",\"department\":\"{RST_USCC}\",\"state\":\"{key}\""
            )),
            "{key}: {stream}"
        );
    }
    assert!(stream.contains(why), "{stream}");
    // And to the contact's webhook, in order, again after it failed.
    let contact = common::mock::Mock::start(false, common::mock::Mode::Fail500).await;
    let mut system = Config::load(rig.dir.path())
        .unwrap()
        .systems
        .unwrap()
        .into_iter()
        .find(|s| s.id == SYSTEM)
        .unwrap();
    system.contact.webhook = Some(format!("{}/tongban/notices", contact.base()));
    let notices = tongban::workers::notify::Notices::onboarding(&system).unwrap();
    let client = reqwest::Client::new();
    let step = || tongban::workers::notify::step(&client, store, &notices);
    assert!(step().await.is_err(), "the contact's webhook fails");
    contact.set_mode(common::mock::Mode::Ok);
    assert_eq!(step().await.unwrap(), 3);
    assert_eq!(step().await.unwrap(), 0, "nothing twice");
    let received: Vec<Value> = contact.receptions()[1..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let states: Vec<&str> = received
        .iter()
        .map(|n| n["onboarding"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["probing", "awaiting_review", "rejected"]);
    assert_eq!(received[2]["onboarding"]["request"], id.as_str());
    assert_eq!(
        received[2]["onboarding"]["decision"]["reasons"]["identity"],
        why
    );
    assert_eq!(
        received[1]["onboarding"]["probes"][1]["outcome"], "failed",
        "{:#}",
        received[1]
    );

    let (_system, base) = walking_system(&rig.keys, false).await;
    let (status, again) = rig.submit(&bundle(&base)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again:#}");
    let second = again["id"].as_str().unwrap().to_string();
    let request = rig.probed(&second).await;
    for name in ["identity", "simulated_transaction", "result_sharing"] {
        assert_eq!(probe(&request, name)["outcome"], "passed", "{request:#}");
    }
    let (status, _) = rig
        .decide(&second, &rig.reviewer, &json!({ "decision": "approve" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The history: both requests, newest first.
    let (_, history) = rig
        .call(
            "GET",
            &format!("/api/v1/onboarding/requests?system={SYSTEM}"),
            &rig.reviewer,
            None,
        )
        .await;
    let states: Vec<&str> = history["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["live", "rejected"], "{history:#}");
}

/// A system that does not answer fails the identity probe saying so; an item the system claims
/// that the catalog has suspended since fails the same-source probe.
async fn an_unreachable_system_and_a_suspended_item_fail_their_probes(store: &Store) {
    let rig = rig(store).await;
    let suspended = "11210000001756420G2000113021000";
    let mut item = store
        .current_item(suspended)
        .await
        .unwrap()
        .expect("a seeded item");
    item.status = tongban::model::ItemStatus::Suspended;
    store.put_item(&item, None).await.unwrap();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    // It follows the change feed but stopped at the first change.
    let (status, _) = rig.changes_after(1).await;
    assert_eq!(status, StatusCode::OK);
    let (status, submitted) = rig.submit(&bundle(&closed)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    let request = rig.probed(submitted["id"].as_str().unwrap()).await;
    let same = probe(&request, "same_source");
    assert_eq!(same["outcome"], "failed", "{request:#}");
    assert!(same["reasons"].to_string().contains(suspended), "{same:#}");
    assert!(
        same["reasons"]
            .to_string()
            .contains("a catalog change does not reach it"),
        "{same:#}"
    );
    let identity = probe(&request, "identity");
    assert_eq!(identity["outcome"], "failed", "{request:#}");
    assert!(
        identity["reasons"].to_string().contains("not answered"),
        "{identity:#}"
    );
    let transaction = probe(&request, "simulated_transaction");
    assert_eq!(transaction["outcome"], "failed", "{request:#}");
    assert!(
        transaction["reasons"]
            .to_string()
            .contains("did not take the simulated application"),
        "{transaction:#}"
    );
}

/// A system that walks the case but reports each step 5 s after it happened misses the 3 s
/// limit for 受理 and fails the simulated transaction saying so; the events it reports after
/// the probe ended are refused as tests, never recorded.
async fn a_system_that_reports_late_fails_the_simulated_transaction(store: &Store) {
    let rig = rig(store).await;
    let (_system, base) = walking_system(&rig.keys, true).await;
    let (status, submitted) = rig.submit(&bundle(&base)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    let request = rig.probed(submitted["id"].as_str().unwrap()).await;
    assert_eq!(
        probe(&request, "identity")["outcome"],
        "passed",
        "{request:#}"
    );
    let transaction = probe(&request, "simulated_transaction");
    assert_eq!(transaction["outcome"], "failed", "{request:#}");
    assert!(
        transaction["reasons"]
            .to_string()
            .contains("accept_within_seconds"),
        "{transaction:#}"
    );
    assert_eq!(probe(&request, "result_sharing")["outcome"], "failed");
    // A connected system's report about a probe application no probe waits for (any more) is
    // refused as a test, and recorded nowhere: no refusal for supervision to count.
    let scjg = common::api_key(store, Role::System, Some("sy-scjg-food")).await;
    let event = common::read_text("mappings/tests/scjg-food-event/accept.legacy.xml")
        .replace("TB-210102-20261120-000123", "TEST-OB-1-transaction");
    let request = Request::post("/api/v1/systems/sy-scjg-food/events")
        .header("authorization", bearer(&scjg))
        .header("content-type", "application/xml")
        .body(Body::from(event))
        .unwrap();
    let (status, problem) = rig.api.send(request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem.to_string().contains("probe application"),
        "{problem:#}"
    );
    let (_, refusals) = rig
        .call(
            "GET",
            "/api/v1/supervision/alerts?limit=100",
            &rig.admin,
            None,
        )
        .await;
    assert!(
        !refusals.to_string().contains("events_refused"),
        "{refusals:#}"
    );
}

/// Before it is connected, a system reporting over the webhook posts to the hub with its own
/// key, and everything it posts is the probe's: steps about the simulated application reach
/// the probe, one that does not map is answered 400 and shows in the probe report, and one
/// about any other application is refused (it is not connected yet). A result never shared
/// fails result sharing.
async fn a_system_not_connected_yet_reports_its_simulated_transaction_over_the_webhook(
    store: &Store,
) {
    let rig = rig(store).await;
    let lax = target(Checks::Nothing, rig.keys.clone()).await;
    let mut webhook = bundle(&lax.url);
    let path = format!("adapters/{SYSTEM}.toml");
    let adapter: Vec<&str> = webhook["files"][&path]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| {
            !(l.starts_with("url = ") && l.contains("/rst/card/events")
                || l.starts_with("results_url")
                || l.starts_with("interval_seconds"))
        })
        .collect();
    let adapter = adapter
        .join("\n")
        .replace("mode = \"poll\"", "mode = \"webhook\"");
    webhook["files"][&path] = Value::String(adapter);
    let (status, submitted) = rig.submit(&webhook).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    let id = submitted["id"].as_str().unwrap().to_string();
    let transaction = format!("TEST-{id}-transaction");
    common::wait::eventually("the simulated application to arrive", || async {
        if lax.accepted.lock().unwrap().contains(&transaction) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;

    let now = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let event = |case: &str, application: &str| {
        let mut event: Value = serde_json::from_str(&common::read_text(&format!(
            "mappings/tests/rst-card-event/{case}.legacy.json"
        )))
        .unwrap();
        event["data"]["SQBH"] = Value::String(application.into());
        event["data"]["BLSJ"] = Value::String(now.clone());
        event
    };
    let post = |body: Value| {
        let request = Request::post(format!("/api/v1/systems/{SYSTEM}/events"))
            .header("authorization", bearer(&rig.system))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        rig.api.send(request)
    };
    let (status, answer) = post(event("accept", &transaction)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    let (status, answer) = post(json!({ "data": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer:#}");
    let (status, answer) = post(event("accept", "TB-210202-20261125-000017")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:#}");
    assert!(
        answer.to_string().contains("not connected yet"),
        "{answer:#}"
    );
    let (status, answer) = post(event("complete", &transaction)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");

    let request = rig.probed(&id).await;
    let probed = probe(&request, "simulated_transaction");
    let steps: Vec<&str> = probed["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["step"].as_str())
        .collect();
    assert_eq!(steps, ["受理", "办结"], "{probed:#}");
    assert_eq!(probed["outcome"], "failed", "{probed:#}");
    assert!(
        probed["reasons"].to_string().contains("did not map"),
        "{probed:#}"
    );
    let sharing = probe(&request, "result_sharing");
    assert_eq!(sharing["outcome"], "failed", "{request:#}");
    assert!(
        sharing["reasons"]
            .to_string()
            .contains("no result was shared"),
        "{sharing:#}"
    );
    assert!(store.events_of(&transaction).await.unwrap().is_empty());
}

/// A bundle that does not compile, fails its mapping tests, claims another system's item and
/// carries a file out of place is refused with every problem; it is recorded, nothing goes
/// live; a system not on the inventory is refused too.
async fn a_broken_bundle_is_refused_with_every_problem(store: &Store) {
    let rig = rig(store).await;
    let mut broken = bundle("http://127.0.0.1:1/x");
    let path = format!("adapters/{SYSTEM}.toml");
    let adapter = broken["files"][&path]
        .as_str()
        .unwrap()
        .replace("concurrency = 4", "concurrency = \"four\"");
    broken["files"][&path] = Value::String(adapter);
    broken["files"]["mappings/tests/rst-card-application/card-online.legacy.json"] =
        Value::String("{\"data\": {}}".into());
    broken["files"]["hub.toml"] = Value::String("[server]\n".into());
    let (status, problem) = rig.submit(&broken).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    let errors = problem["errors"].as_array().unwrap();
    let at = |needle: &str| {
        errors
            .iter()
            .any(|e| e["path"].as_str().unwrap_or_default().starts_with(needle))
    };
    assert!(at("hub.toml"), "{problem:#}");
    assert!(at(&path), "{problem:#}");
    assert!(
        at("mappings/tests/rst-card-application/card-online"),
        "{problem:#}"
    );
    let (_, history) = rig
        .call(
            "GET",
            "/api/v1/onboarding/requests?state=refused",
            &rig.admin,
            None,
        )
        .await;
    assert_eq!(
        history["requests"].as_array().unwrap().len(),
        1,
        "{history:#}"
    );
    assert!(!common::edit::adapter_file(rig.dir.path(), SYSTEM).exists());

    // Another system's item.
    let mut greedy = bundle("http://127.0.0.1:1/x");
    let adapter = greedy["files"][&path].as_str().unwrap().replace(
        "code = \"11210000001756420G2000113021000\"",
        "code = \"11210100MB1529370K300011800200001\"",
    );
    greedy["files"][&path] = Value::String(adapter);
    let (status, problem) = rig.submit(&greedy).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");

    // Not on the inventory.
    let mut stranger = bundle("http://127.0.0.1:1/x");
    stranger["system"] = Value::String("ln-unknown".into());
    let (status, problem) = rig
        .call(
            "POST",
            "/api/v1/onboarding/requests",
            &rig.admin,
            Some(&stranger),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem.to_string().contains("not on the inventory"),
        "{problem:#}"
    );
    // And a system submits for itself only.
    let (status, _) = rig.submit(&stranger).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The command line submits a bundle directory as a department keeps it and prints the
/// request; `status` prints the probes; a bundle with problems prints each and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_submits_a_bundle_directory_and_follows_it() {
    let dir = config_dir();
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| {
        common::api_key(store, Role::System, Some(SYSTEM)).await
    })
    .await;
    let (_, keys) = {
        let response = reqwest::get(format!("{}/.well-known/jwks.json", hub.base))
            .await
            .unwrap();
        (response.status(), response.json::<JwkSet>().await.unwrap())
    };
    let strict = target(Checks::Assertion, keys).await;
    let bundle_dir = tempfile::tempdir().unwrap();
    for (path, content) in bundle(&strict.url)["files"].as_object().unwrap() {
        let target = bundle_dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, content.as_str().unwrap()).unwrap();
    }
    let run = |args: Vec<String>| {
        let (base, key) = (hub.base.clone(), hub.callers.clone());
        tokio::task::spawn_blocking(move || {
            common::process::tongban()
                .args(["onboard", "--hub", &base, "--key", &key])
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(vec![
        "submit".into(),
        bundle_dir.path().display().to_string(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("for system {SYSTEM}: probing")),
        "{stdout}"
    );
    let id = stdout.split_whitespace().nth(1).unwrap().to_string();
    let printed = common::wait::eventually("the probes to be printed", || {
        let run = run(vec!["status".into(), id.clone()]);
        async move {
            let out = run.await.unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            if stdout.contains("awaiting_review") {
                Ok(stdout)
            } else {
                Err(stdout)
            }
        }
    })
    .await;
    assert!(printed.contains("probe identity: passed"), "{printed}");
    assert!(printed.contains("probe same_source: passed"), "{printed}");

    std::fs::write(
        bundle_dir
            .path()
            .join("mappings/tests/rst-card-application/card-online.legacy.json"),
        "{\"data\": {}}",
    )
    .unwrap();
    let out = run(vec![
        "submit".into(),
        bundle_dir.path().display().to_string(),
    ])
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains("mappings/tests/rst-card-application/card-online"),
        "{stderr}"
    );
    hub.stop(std::time::Duration::from_secs(20)).await;
}

on_both_backends!(
    a_conforming_system_is_probed_approved_and_live_without_a_restart,
    a_system_that_ignores_the_assertion_is_rejected_with_reasons_then_fixed,
    an_unreachable_system_and_a_suspended_item_fail_their_probes,
    a_system_that_reports_late_fails_the_simulated_transaction,
    a_system_not_connected_yet_reports_its_simulated_transaction_over_the_webhook,
    a_broken_bundle_is_refused_with_every_problem,
);
