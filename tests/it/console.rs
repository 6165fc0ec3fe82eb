//! The console in a real browser (headless Chromium) against a hub serving on 127.0.0.1: each
//! role signs in (API keys and a staff token) and sees only its pages; an alert is followed from
//! raised to closed by a supervisor and the department; a reviewer approves an onboarding
//! request on its probe evidence; finance downloads the funding CSV, which is the API's; an
//! administrator sees keys and the audit chain verified. Forms without the session's CSRF token,
//! sign-ins from another site and sessions of revoked keys are refused. With
//! `TONGBAN_SCREENSHOTS=<dir>` the main pages are saved there as PNG (the README's pictures).

use crate::common::{self, browser::Browser};
use crate::onboarding;
use axum::http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::model::{AlertAction, Level, Rule};
use tongban::store::{AlertWrite, AttemptOutcome, FinishedAttempt, NewApplication, Store};

const SCJG: &str = "sy-scjg-food";
const SCJG_USCC: &str = "11210100MB1529370K";

/// Serves `router` on a port of its own: its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

async fn raise_red(store: &Store) -> String {
    raise_red_for(store, SCJG, SCJG_USCC).await
}

async fn raise_red_for(store: &Store, system: &str, department: &str) -> String {
    let entries = store
        .apply_alert_changes(
            &[AlertWrite {
                action: AlertAction::Raise,
                id: None,
                rule: Rule::TimeLimit,
                system_id: system,
                application_id: Some("TB-CONSOLE-1"),
                item_code: Some("11210100MB1529370K300011800200001"),
                department,
                level: Level::Red,
                from_level: None,
                evidence: r#"{"used":1.3,"promised_working_days":5}"#,
                at: tongban::clock::now_millis(),
            }],
            tongban::workers::engine::describe_alert,
            None,
        )
        .await
        .unwrap();
    format!("al-{}", entries[0].seq)
}

/// Where screenshots go, when asked for.
fn screenshots() -> Option<PathBuf> {
    std::env::var_os("TONGBAN_SCREENSHOTS").map(PathBuf::from)
}

async fn shoot(browser: &mut Browser, name: &str) {
    if let Some(dir) = screenshots() {
        browser.screenshot(&dir.join(format!("{name}.png"))).await;
    }
}

async fn sign_in(browser: &mut Browser, base: &str, credential: &str) {
    browser.goto(&format!("{base}/console")).await;
    browser.fill("#credential", credential).await;
    browser.click_and_wait("#sign-in button").await;
}

async fn sign_out(browser: &mut Browser) {
    browser.click_and_wait("#sign-out").await;
}

/// The labels of the menu the page shows.
async fn menu(browser: &mut Browser) -> Vec<String> {
    let labels = browser
        .eval("[...document.querySelectorAll('header nav a')].map(a => a.textContent)")
        .await;
    serde_json::from_value(labels).unwrap()
}

#[tokio::test]
async fn each_role_does_its_job_in_the_console_in_a_real_browser() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let t = common::sqlite_store().await;
    let rig = onboarding::rig(&t.store).await;
    let store = rig.api.store.clone();
    let base = serve(rig.api.router.clone()).await;
    let supervisor = common::api_key(&store, Role::Supervisor, None).await;
    let finance = common::api_key(&store, Role::Finance, None).await;
    let department = common::api_key(&store, Role::System, Some(SCJG)).await;
    let alert = raise_red(&store).await;
    let mut application = common::scjg_application();
    application["id"] = json!("TB-CONSOLE-1");
    store
        .accept_application(&NewApplication {
            id: "TB-CONSOLE-1",
            item_code: "11210100MB1529370K300011800200001",
            item_version: 1,
            department: SCJG_USCC,
            system_id: SCJG,
            body: &application.to_string(),
            idempotency: None,
            identity: None,
            message: None,
        })
        .await
        .unwrap();
    // Its delivery failed for good: a dead letter for the department to replay.
    let claimed = store.claim_deliveries(SCJG, 1, 60_000).await.unwrap();
    store
        .record_attempts(&[FinishedAttempt::new(
            &claimed[0],
            tongban::clock::now_millis(),
            5,
            AttemptOutcome::Dead {
                status: Some(500),
                reason: "soap:Client 营业执照编号与经营者名称不符".into(),
            },
        )])
        .await
        .unwrap();

    // Anonymous: the sign-in page, whatever page is asked for; a bad credential says why.
    browser.goto(&format!("{base}/console/alerts")).await;
    assert_eq!(browser.location().await, format!("{base}/console"));
    assert!(browser.text().await.contains("令牌或 API 密钥"));
    shoot(&mut browser, "sign-in").await;
    sign_in(&mut browser, &base, "tbk_nothing_here").await;
    assert!(
        browser.text().await.contains("凭证无效"),
        "{}",
        browser.text().await
    );

    // The supervisor: alerts and cases, not keys; the session cookie is HttpOnly and Strict.
    sign_in(&mut browser, &base, &supervisor).await;
    let shown = menu(&mut browser).await;
    assert!(shown.contains(&"告警与督办".to_string()), "{shown:?}");
    assert!(!shown.contains(&"密钥".to_string()), "{shown:?}");
    assert!(!shown.contains(&"接入审核".to_string()), "{shown:?}");
    let cookies = browser.cookies(&format!("{base}/console")).await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "tongban_console")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/console");
    browser.goto(&format!("{base}/console/keys")).await;
    assert!(browser.text().await.contains("无权访问"));

    browser.goto(&format!("{base}/console/alerts")).await;
    let page = browser.text().await;
    assert!(page.contains("红牌") && page.contains("超时限"), "{page}");
    shoot(&mut browser, "alerts").await;
    // Live: an alert raised while the page is open appears on it, over the stream.
    browser
        .wait_for(
            "the live stream to open",
            "document.getElementById('live').hidden",
            json!(false),
        )
        .await;
    let live = raise_red(&store).await;
    browser
        .wait_for(
            "the new alert on the open page",
            &format!(
                "document.querySelector(\"tr[data-alert='{live}'] .badge\")?.textContent ?? null"
            ),
            json!("红牌"),
        )
        .await;
    // A list filtered to one system gets only that system's new alerts live.
    browser
        .goto(&format!("{base}/console/alerts?system=ln-rst-card"))
        .await;
    browser
        .wait_for(
            "the filtered stream to open",
            "document.getElementById('live').hidden",
            json!(false),
        )
        .await;
    let other = raise_red(&store).await;
    let theirs = raise_red_for(&store, "ln-rst-card", "11210000001756420G").await;
    browser
        .wait_for(
            "the filtered list's new alert",
            &format!("document.querySelector(\"tr[data-alert='{theirs}']\") !== null"),
            json!(true),
        )
        .await;
    assert_eq!(
        browser
            .eval(&format!(
                "document.querySelector(\"tr[data-alert='{other}']\") !== null"
            ))
            .await,
        json!(false),
        "another system's alert stays off a list filtered to one system"
    );
    browser.goto(&format!("{base}/console/alerts")).await;
    browser
        .click_and_wait(&format!("tr[data-alert='{alert}'] td:nth-child(2) a"))
        .await;
    assert!(browser.text().await.contains("未督办"));
    // The case behind it, its applicant masked exactly as the API masks them.
    browser.click_and_wait("dl.facts a").await;
    let case = browser.text().await;
    let api: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/applications/TB-CONSOLE-1"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for shown in [&api["applicant"]["name"], &api["applicant"]["id_number"]] {
        assert!(case.contains(shown.as_str().unwrap()), "{shown} in {case}");
    }
    for clear in [
        "沈阳示例餐饮管理有限公司",
        "91210102MA0Y7K3L23",
        "210102198503120033",
        "张三",
    ] {
        assert!(!case.contains(clear), "{clear} masked: {case}");
    }
    shoot(&mut browser, "case").await;
    browser
        .goto(&format!("{base}/console/alerts/{alert}"))
        .await;
    browser.click_and_wait("#acknowledge button").await;
    assert!(browser.text().await.contains("当前：已签收"));
    // An assignment with a date in the past: the API's problem, shown on the page.
    browser.fill("#assign input[name=due]", "2020-01-01").await;
    browser.click_and_wait("#assign button").await;
    let refused = browser.text().await;
    assert!(
        refused.contains("/due") && refused.contains("is in the past"),
        "{refused}"
    );
    let tomorrow = (chrono::Utc::now().with_timezone(&tongban::clock::cst())
        + chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    browser.fill("#assign input[name=due]", &tomorrow).await;
    browser
        .fill("#assign textarea[name=text]", "请三个工作日内说明超期原因")
        .await;
    browser.click_and_wait("#assign button").await;
    assert!(
        browser.text().await.contains("当前：已交办"),
        "{}",
        browser.text().await
    );
    // A form without the session's CSRF token changes nothing.
    let (status, _, body) = browser
        .eval(&format!(
            "fetch('/console/alerts/{alert}/follow-up', {{method: 'POST', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: 'action=close&text=forged'}}).then(async r => [r.status, null, await r.text()])"
        ))
        .await
        .as_array()
        .map(|a| {
            (
                a[0].as_u64().unwrap(),
                (),
                a[2].as_str().unwrap().to_string(),
            )
        })
        .unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("表单已失效"));
    shoot(&mut browser, "alert").await;
    sign_out(&mut browser).await;
    assert!(browser.text().await.contains("令牌或 API 密钥"));

    // The department answers through its system's key.
    sign_in(&mut browser, &base, &department).await;
    assert_eq!(
        menu(&mut browser).await,
        ["接入审核", "本系统"],
        "its own requests too"
    );
    browser.goto(&format!("{base}/console/system")).await;
    let own = browser.text().await;
    assert!(
        own.contains("已交办") && own.contains("TB-CONSOLE-1"),
        "{own}"
    );
    browser
        .fill(
            &format!("tr[data-alert='{alert}'] input[name=text]"),
            "窗口已增加人手，积压已清理",
        )
        .await;
    browser
        .click_and_wait(&format!("tr[data-alert='{alert}'] button"))
        .await;
    assert!(
        browser.text().await.contains("已答复"),
        "{}",
        browser.text().await
    );
    assert!(
        browser
            .text()
            .await
            .contains("营业执照编号与经营者名称不符")
    );
    shoot(&mut browser, "system").await;
    browser
        .click_and_wait("tr[data-letter='TB-CONSOLE-1~1'] button")
        .await;
    assert!(
        browser.text().await.contains("没有投递失败的申请"),
        "{}",
        browser.text().await
    );
    let replayed = store.application("TB-CONSOLE-1").await.unwrap().unwrap();
    assert_eq!(replayed.state.as_str(), "accepted", "back in the outbox");
    sign_out(&mut browser).await;

    // The supervisor closes it: every step on the timeline.
    sign_in(&mut browser, &base, &supervisor).await;
    browser
        .goto(&format!("{base}/console/alerts/{alert}"))
        .await;
    browser
        .fill("#close textarea[name=text]", "整改到位，予以办结")
        .await;
    browser.click_and_wait("#close button").await;
    let closed = browser.text().await;
    assert!(closed.contains("当前：已办结"), "{closed}");
    let steps = browser
        .eval("[...document.querySelectorAll('#steps li strong')].map(s => s.textContent)")
        .await;
    assert_eq!(steps, json!(["签收", "交办", "答复", "办结"]));
    // The supervision report for this month: the four red cards raised (three of 市场监管), one
    // followed up and closed, drawn as charts.
    let month = chrono::Utc::now()
        .with_timezone(&tongban::clock::cst())
        .format("%Y-%m")
        .to_string();
    browser
        .goto(&format!(
            "{base}/console/supervision?from={month}&to={month}&by=system"
        ))
        .await;
    let report = browser.text().await;
    assert!(
        report.contains("4（预警 0，黄牌 0，红牌 4；已督办 1，督办办结 1）"),
        "{report}"
    );
    let charts = browser
        .eval("document.querySelectorAll('#charts svg.chart').length")
        .await;
    assert_eq!(charts, json!(3));
    assert_eq!(
        browser
            .eval("document.querySelector('#groups tr[data-key=\"sy-scjg-food\"] td:nth-child(7)').textContent")
            .await,
        json!("0/0/3")
    );
    shoot(&mut browser, "supervision").await;
    sign_out(&mut browser).await;

    // The reviewer, with a staff token, approves an onboarding request on its evidence.
    let (_walking, system_base) = onboarding::walking_system(&rig.keys, false).await;
    rig.follow_catalog().await;
    let (status, submitted) = rig.submit(&onboarding::bundle(&system_base)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted:#}");
    let id = submitted["id"].as_str().unwrap().to_string();
    let probed = rig.probed(&id).await;
    assert_eq!(probed["state"], "awaiting_review", "{probed:#}");
    sign_in(&mut browser, &base, &onboarding::reviewer_token(None)).await;
    let shown = menu(&mut browser).await;
    assert!(shown.contains(&"接入审核".to_string()), "{shown:?}");
    assert!(!shown.contains(&"告警与督办".to_string()), "{shown:?}");
    browser.goto(&format!("{base}/console/onboarding")).await;
    assert!(browser.text().await.contains("待审核"));
    browser
        .goto(&format!("{base}/console/onboarding/{id}"))
        .await;
    let outcomes = browser
        .eval("[...document.querySelectorAll('#probes tbody tr td:nth-child(2)')].map(t => t.textContent)")
        .await;
    assert_eq!(outcomes, json!(["通过", "通过", "通过", "通过"]));
    shoot(&mut browser, "onboarding-request").await;
    browser.click("#decide input[value=approve]").await;
    browser
        .fill("#decide textarea[name=note]", "四项检测均通过，同意接入")
        .await;
    browser.click_and_wait("#decide button").await;
    let decided = browser.text().await;
    assert!(decided.contains("批准接入"), "{decided}");
    assert_eq!(
        browser
            .eval("document.getElementById('request-state').textContent")
            .await,
        "已接入"
    );
    sign_out(&mut browser).await;

    // The ledger judged now (it would be on its timer), for the reports to show it.
    let (status, _) = rig
        .call(
            "POST",
            "/api/v1/ledger/evaluation",
            &rig.admin,
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Finance: the funding report, and its CSV as the API gives it.
    sign_in(&mut browser, &base, &finance).await;
    browser.goto(&format!("{base}/console/funding")).await;
    let report = browser.text().await;
    assert!(
        report.contains("运维经费报告") && report.contains("不予安排"),
        "{report}"
    );
    shoot(&mut browser, "funding").await;
    browser.goto(&format!("{base}/console/usage")).await;
    let usage = browser.text().await;
    assert!(
        usage.contains("自建系统使用情况") && usage.contains("sy-scjg-food"),
        "{usage}"
    );
    let bars = browser
        .eval("document.querySelectorAll('svg.chart rect').length")
        .await;
    assert_eq!(
        bars,
        json!(12),
        "a bar per month of the default twelve (zeros drawn flat)"
    );
    shoot(&mut browser, "usage").await;
    let (status, digest, csv) = browser
        .fetch(
            "/console/reports/funding/export?format=csv",
            "tongban-content-sha256",
        )
        .await;
    assert_eq!(status, 200);
    let digest = digest.expect("the digest header");
    let computed: String = Sha256::digest(csv.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, computed, "the digest is of the bytes downloaded");
    let api: String = reqwest::Client::new()
        .get(format!("{base}/api/v1/reports/funding?format=csv"))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows = |text: &str| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(rows(&csv), rows(&api), "the console's CSV is the API's");
    assert!(rows(&csv).len() > 1, "{csv}");
    let audited = store.audit_records().await.unwrap();
    assert!(
        audited
            .iter()
            .any(|r| r.detail.contains(&digest) && r.actor.starts_with("key:")),
        "the download is audited with its digest"
    );
    sign_out(&mut browser).await;

    // The administrator: keys, and the audit log verified.
    sign_in(&mut browser, &base, &rig.admin).await;
    browser.goto(&format!("{base}/console/audit")).await;
    let log = browser.text().await;
    assert!(log.contains("哈希链完整"), "{log}");
    assert!(
        log.contains("POST /console/sign-in"),
        "sign-ins are audited"
    );
    shoot(&mut browser, "audit").await;
    browser.goto(&format!("{base}/console/ledger")).await;
    assert!(browser.text().await.contains("四统一台账"));
    shoot(&mut browser, "ledger").await;
    browser.goto(&format!("{base}/console/keys")).await;
    assert!(browser.text().await.contains("API 密钥"));
    // Revoking the supervisor's key ends the supervisor's sessions.
    let supervisor_key = supervisor.split('_').nth(1).unwrap().to_string();
    browser
        .click_and_wait(&format!("tr[data-key='{supervisor_key}'] button"))
        .await;
    assert!(browser.text().await.contains("已吊销"));
    sign_out(&mut browser).await;
    sign_in(&mut browser, &base, &supervisor).await;
    assert!(browser.text().await.contains("凭证无效"));
}

/// Without a browser: what the session cookie says behind TLS, a sign-in from another site,
/// a session outliving its key, and pages that need a session.
#[tokio::test]
async fn sessions_are_strict_about_where_they_come_from_and_how_long_they_last() {
    let issuer = common::Issuer::new();
    let api = common::api::TestApi::new(&issuer).await;
    let key = common::api_key(&api.store, Role::Supervisor, None).await;
    let post = |body: String, headers: Vec<(&'static str, &'static str)>| {
        let mut request = axum::http::Request::post("/console/sign-in")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "hub.example");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(axum::body::Body::from(body)).unwrap()
    };
    let form = format!("credential={key}");
    let answer = |request| {
        let router = api.router.clone();
        async move {
            use tower::ServiceExt;
            router.oneshot(request).await.unwrap()
        }
    };
    let behind_tls = answer(post(
        form.clone(),
        vec![
            ("x-forwarded-proto", "https"),
            ("origin", "https://hub.example"),
        ],
    ))
    .await;
    assert_eq!(behind_tls.status(), StatusCode::SEE_OTHER);
    let cookie = behind_tls.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
        assert!(cookie.contains(flag), "{flag}: {cookie}");
    }
    let plain = answer(post(form.clone(), vec![("origin", "http://hub.example")])).await;
    assert_eq!(plain.status(), StatusCode::SEE_OTHER);
    let plain_cookie = plain.headers()["set-cookie"].to_str().unwrap();
    assert!(!plain_cookie.contains("Secure"), "{plain_cookie}");
    // Behind a front end that rewrites Host, the host the browser used is X-Forwarded-Host.
    let proxied = answer(post(
        form.clone(),
        vec![
            ("origin", "https://console.example"),
            ("x-forwarded-host", "console.example"),
        ],
    ))
    .await;
    assert_eq!(proxied.status(), StatusCode::SEE_OTHER);
    // From another site, or saying nothing of where it comes from: refused, no session.
    for headers in [vec![("origin", "https://evil.example")], vec![]] {
        let elsewhere = answer(post(form.clone(), headers)).await;
        assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
        assert!(elsewhere.headers().get("set-cookie").is_none());
    }
    // What no key or token holds goes no further; a token granting no role opens nothing.
    let origin = vec![("origin", "http://hub.example")];
    let garbled = answer(post("credential=tbk_%00x_y".into(), origin.clone())).await;
    assert_eq!(garbled.status(), StatusCode::UNAUTHORIZED);
    let roleless = issuer.staff_token("nobody", &[]);
    let nothing = answer(post(format!("credential={roleless}"), origin.clone())).await;
    assert_eq!(nothing.status(), StatusCode::FORBIDDEN);
    assert!(nothing.headers().get("set-cookie").is_none());

    // The session works, then ends with its key.
    let session = cookie.split(';').next().unwrap().to_string();
    let page = |uri: &'static str, session: String| {
        axum::http::Request::get(uri)
            .header("cookie", session)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let alerts = answer(page("/console/alerts", session.clone())).await;
    assert_eq!(alerts.status(), StatusCode::OK);
    let csp = alerts.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let key_id = key.split('_').nth(1).unwrap();
    api.store
        .revoke_api_key(key_id, tongban::clock::now_millis())
        .await
        .unwrap();
    // The key cache keeps a key up to 10 s in another process; this one forgets at once only
    // when the revocation goes through it, so wait out the cache.
    common::wait::eventually("the revoked key's session to end", || {
        let answer = &answer;
        let session = session.clone();
        async move {
            let after = answer(page("/console/alerts", session)).await;
            if after.status() == StatusCode::SEE_OTHER {
                Ok(())
            } else {
                Err(format!("still {}", after.status()))
            }
        }
    })
    .await;
    let anonymous = answer(page("/console/cases", String::new())).await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/console");
}
