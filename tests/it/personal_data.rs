//! No personal data in clear where operators look: the real binary, logging everything
//! (`RUST_LOG=debug`) in both log formats, is driven through a full working day with mock
//! department systems, and its whole output and its audit log must hold no citizen ID number,
//! no applicant's USCC, name, phone number, e-mail or address of the test data.
//!
//! The day: applications accepted and delivered; one refused by its system with a 400 that
//! echoes the applicant's data back in ASCII-only JSON (`\u` escapes); a validation failure whose body carries ID numbers, names
//! and phone numbers in the wrong places; refused user tokens (forged, expired, a bad ID
//! number); an applicant who is not the token's user; a real-name level too low; case events
//! and results posted by a system and polled from another (one of each broken), a handler's
//! opinion naming the company, its representative and his mobile; reads of applications by
//! the platform, a supervisor and a system, of dead letters by an administrator and of the
//! supervision feed by a supervisor, all scanned too; refused credentials; the audit log listed
//! by an administrator.
//!
//! A clear citizen ID number is any 18 characters that pass GB 11643 (`ids::check_citizen_id`),
//! wherever they stand; the user tokens' subjects embed the ID number too, so a logged subject
//! is caught. Names and addresses count in clear as `\u` escapes too. The test fails with every
//! finding, its source and its context.

use crate::common;

use axum::http::StatusCode;
use common::edit::{RST, SCJG, set_adapter_key};
use common::mock::{Mock, Mode};
use common::process::{LogFormat, Process, strip_ansi};
use common::wait::eventually;
use common::{read_text, rst_application, scjg_application};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tongban::config::Config;

/// The application id the example messages carry.
const SCJG_EXAMPLE_ID: &str = "TB-210102-20261120-000123";
const RST_EXAMPLE_ID: &str = "TB-210102-20261121-000201";
const RST_EVENT_EXAMPLE_ID: &str = "TB-210202-20261125-000017";

// ---------------------------------------------------------------------------------------------
// The test data's personal data

/// 张三, applicant of the card application that is delivered, and legal representative and
/// contact of the company.
const ZHANG_ID: &str = "210102199001011237";
const ZHANG_REPRESENTATIVE_ID: &str = "210102198503120033";
/// The company applying for a food licence.
const COMPANY_USCC: &str = "91210102MA0Y7K3L23";
/// 李四: whose valid token comes with someone else's application.
const LI_ID: &str = "11010519491231002X";
/// 王小明: applicant of the card application its system refuses.
const WANG_NAME: &str = "王小明";
const WANG_PHONE: &str = "13912345678";
const WANG_EMAIL: &str = "wangxm@example.com";
const WANG_ADDRESS: &str = "辽宁省沈阳市沈河区测试街 6 号 3-2-1";

/// What the 市场监管 handler writes on accepting the company's application.
const OPINION: &str = "沈阳示例餐饮管理有限公司法定代表人张三（手机 138-0000-0000）提交的材料齐全";

/// 王小明's citizen ID number, valid (check character by GB 11643).
fn wang_id() -> String {
    let first17 = "21010419880615123";
    let check = tongban::ids::citizen_id_check_char(first17.as_bytes()).unwrap();
    format!("{first17}{check}")
}

/// What must never appear in clear, by kind, besides citizen ID numbers (which are found by
/// their check character, not by list).
fn personal_values() -> Vec<(&'static str, String)> {
    let mut values = vec![("USCC", COMPANY_USCC.to_string())];
    for name in ["张三", "李四", WANG_NAME, "沈阳示例餐饮管理有限公司"] {
        values.push(("name", name.to_string()));
    }
    for phone in ["13800000000", "138-0000-0000", WANG_PHONE] {
        values.push(("phone", phone.to_string()));
    }
    for email in ["zhangsan@example.com", "contact@example.com", WANG_EMAIL] {
        values.push(("e-mail", email.to_string()));
    }
    for address in ["示例街 8 号", "示例路 1 号", "测试街 6 号"] {
        values.push(("address", address.to_string()));
    }
    values
}

/// `value` as JSON `\u` escapes of its non-ASCII characters (lower-case hex), as a system
/// writing ASCII-only JSON sends it.
fn json_escaped(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{:04x}", c as u32)
            }
        })
        .collect()
}

/// Every piece of personal data in `text`.
fn personal_data_in(text: &str) -> Vec<String> {
    let mut found: Vec<String> = common::clear_citizen_ids(text)
        .into_iter()
        .map(|id| format!("citizen ID {id}"))
        .collect();
    // A JSON log line or body writes a backslash twice.
    let unescaped = text.to_lowercase().replace("\\\\", "\\");
    for (kind, value) in personal_values() {
        let escaped = json_escaped(&value);
        if text.contains(&value) {
            found.push(format!("{kind} {value}"));
        } else if escaped != value && unescaped.contains(&escaped) {
            found.push(format!("{kind} {value} as {escaped}"));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Applications

/// 食品经营许可 for the company, 张三 its legal representative and contact.
fn company_application() -> Value {
    let app = scjg_application();
    assert_eq!(
        app["applicant"]["legal_representative"]["id_number"],
        ZHANG_REPRESENTATIVE_ID
    );
    app
}

/// 社会保障卡申领 for 张三.
fn zhang_application() -> Value {
    let app = rst_application();
    assert_eq!(app["applicant"]["id_number"], ZHANG_ID);
    app
}

/// 社会保障卡申领 for 王小明.
fn wang_application() -> Value {
    let mut app = zhang_application();
    app["applicant"]["name"] = json!(WANG_NAME);
    app["applicant"]["id_number"] = json!(wang_id());
    app["contact"] = json!({
        "name": WANG_NAME,
        "phone": WANG_PHONE,
        "address": WANG_ADDRESS,
        "email": WANG_EMAIL,
    });
    app["form"]["mailing_address"] = json!(WANG_ADDRESS);
    app
}

// ---------------------------------------------------------------------------------------------
// Configuration and the hub process

/// The repository configuration in a temporary directory: the HTTP systems at the mocks, the
/// AMQP one removed (no broker needed), fast retries and polls, `issuer` as the identity
/// system.
fn config_for(soap: &Mock, rest: &Mock, issuer: &common::Issuer) -> tempfile::TempDir {
    let dir = common::edit::http_systems_config(
        issuer,
        &soap.base(),
        &rest.base(),
        &[
            ("timeout_ms", "2000"),
            (
                "retry",
                "{ attempts = 30, initial_backoff_ms = 50, max_backoff_ms = 400, max_age_seconds = 600 }",
            ),
        ],
    );
    set_adapter_key(dir.path(), RST, "interval_seconds", "1");
    dir
}

// ---------------------------------------------------------------------------------------------
// Calling the hub

/// The credentials of the day, issued by `tongban keys issue` before the hub starts.
struct Keys {
    platform: String,
    admin: String,
    supervisor: String,
    scjg: String,
    rst: String,
}

impl Keys {
    fn issue(dir: &Path) -> Keys {
        Keys {
            platform: common::cli_api_key(dir, "platform", None, None),
            admin: common::cli_api_key(dir, "admin", None, None),
            supervisor: common::cli_api_key(dir, "supervisor", None, None),
            scjg: common::cli_api_key(dir, "system", Some(SCJG), None),
            rst: common::cli_api_key(dir, "system", Some(RST), None),
        }
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// POSTs an application as `credential`, with `user_token` when given: status and body.
    async fn submit(
        &self,
        body: &Value,
        credential: &str,
        user_token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/v1/applications", self.base))
            .bearer_auth(credential)
            .json(body);
        if let Some(token) = user_token {
            request = request.header("tongban-user-token", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, credential: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` as `credential`: its text, which must come with 200.
    async fn get_text(&self, path: &str, credential: &str) -> String {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    async fn post_raw(
        &self,
        path: &str,
        credential: &str,
        content_type: &str,
        body: String,
    ) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(credential)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn state_of(&self, id: &str, platform: &str) -> String {
        let (status, app) = self
            .get(&format!("/api/v1/applications/{id}"), platform)
            .await;
        assert_eq!(status, StatusCode::OK, "{app:#}");
        app["state"].as_str().unwrap_or_default().to_string()
    }

    async fn wait_for_state(&self, id: &str, state: &str, platform: &str) {
        eventually(&format!("{id} to be {state}"), || async {
            match self.state_of(id, platform).await {
                s if s == state => Ok(()),
                s => Err(s),
            }
        })
        .await
    }
}

/// Checks an accepted answer; the application's id.
fn accepted(what: &str, (status, body): (StatusCode, Value)) -> String {
    assert_eq!(status, StatusCode::ACCEPTED, "{what}: {body:#}");
    body["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// The day

/// Drives the day against the binary logging in `format`; returns every finding.
async fn a_working_day(format: LogFormat) -> Vec<String> {
    let issuer = common::Issuer::new();
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let dir = config_for(&soap, &rest, &issuer);
    let keys = Keys::issue(dir.path());
    // Logging everything, so that nothing escapes the scan.
    let hub = Process::start(dir.path(), format, "debug").await;
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base: hub.base.clone(),
    };

    // The scan would find what the day sends: it is not blind.
    let sample = format!("{} {}", zhang_application(), wang_application());
    assert_eq!(common::clear_citizen_ids(&sample).len(), 2, "{sample}");
    assert!(personal_data_in(&company_application().to_string()).len() >= 5);

    // Accepted and delivered, each after one passing failure that quotes its applicant: the
    // company's licence (SOAP) and 张三's card (REST).
    // The company named by its USCC and name, as such faults do.
    soap.busy_once(&format!(
        "核验服务繁忙：{COMPANY_USCC} 沈阳示例餐饮管理有限公司 法定代表人 张三 {ZHANG_REPRESENTATIVE_ID}"
    ));
    rest.busy_once("系统繁忙");
    let company = company_application();
    let company_id = accepted(
        "the company's application",
        api.submit(
            &company,
            &keys.platform,
            Some(&issuer.token_for(&company, 3)),
        )
        .await,
    );
    let zhang = zhang_application();
    let zhang_id = accepted(
        "张三's application",
        api.submit(&zhang, &keys.platform, Some(&issuer.token_for(&zhang, 3)))
            .await,
    );
    api.wait_for_state(&company_id, "delivered", &keys.platform)
        .await;
    api.wait_for_state(&zhang_id, "delivered", &keys.platform)
        .await;

    // Refused by its system, which echoes the data back: a dead letter.
    rest.set_mode(Mode::Fail400EscapedEcho);
    let wang = wang_application();
    let wang_app_id = accepted(
        "王小明's application",
        api.submit(&wang, &keys.platform, Some(&issuer.token_for(&wang, 3)))
            .await,
    );
    api.wait_for_state(&wang_app_id, "undeliverable", &keys.platform)
        .await;
    assert_eq!(soap.count(), 2);
    assert_eq!(rest.count(), 3);

    // A validation failure: ID numbers, names and phone numbers where they do not belong.
    let mut bad = wang_application();
    bad["item"]["version"] = json!(9);
    bad["channel"] = json!(WANG_PHONE);
    bad["contact"]["email"] = json!(wang_id());
    bad["contact"]["phone"] = json!(ZHANG_ID);
    bad["applicant"]["id_number"] = json!(format!("{}0", &wang_id()[..17]));
    bad["applicant"]["kind"] = json!(WANG_NAME);
    bad["contact"]["name"] = json!(LI_ID);
    let (status, problem) = api
        .submit(&bad, &keys.platform, Some(&issuer.token_for(&wang, 3)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");

    // Refused user tokens.
    let wang_claims = issuer.user_claims("1", "111", &wang_id(), WANG_NAME, 3);
    let stranger = common::Issuer::new();
    let mut expired = wang_claims.clone();
    expired["exp"] = json!(tongban::clock::now_millis() / 1000 - 3600);
    expired["iat"] = json!(tongban::clock::now_millis() / 1000 - 7200);
    let mut bad_number = wang_claims.clone();
    bad_number["id_number"] = json!(format!("{}0", &wang_id()[..17]));
    bad_number["sub"] = json!(format!("u-{}", wang_id()));
    for (what, token) in [
        ("not a JWT", format!("{}.{}", wang_id(), WANG_NAME)),
        ("forged", stranger.sign("t-rsa", &wang_claims)),
        ("expired", issuer.sign("t-ed", &expired)),
        ("a bad ID number", issuer.sign("t-ec", &bad_number)),
    ] {
        let (status, problem) = api.submit(&wang, &keys.platform, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem:#}");
    }
    let (status, problem) = api.submit(&wang, &keys.platform, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem:#}");

    // An applicant who is not the token's user; a real-name level too low.
    let li = issuer.sign("t-rsa", &issuer.user_claims("1", "111", LI_ID, "李四", 3));
    let (status, problem) = api.submit(&wang, &keys.platform, Some(&li)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem:#}");
    let (status, problem) = api
        .submit(&wang, &keys.platform, Some(&issuer.token_for(&wang, 2)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem:#}");

    // Refused credentials: none, a made-up key, the wrong role.
    for credential in ["", "tbk_00000000_0000", &keys.rst] {
        let (status, problem) = api
            .submit(&zhang, credential, Some(&issuer.token_for(&zhang, 3)))
            .await;
        assert!(
            matches!(status.as_u16(), 401 | 403),
            "{credential}: {problem:#}"
        );
    }

    // 市场监管 posts its case steps and the licence (holder, USCC, legal representative) back,
    // one broken step among them; another system's key is refused.
    // The acceptance's opinion names the company, its representative and his mobile.
    let events = format!("/api/v1/systems/{SCJG}/events");
    let xml = "text/xml; charset=utf-8";
    for name in ["accept", "decision", "complete"] {
        let text = read_text(&format!("mappings/tests/scjg-food-event/{name}.legacy.xml"))
            .replace(SCJG_EXAMPLE_ID, &company_id)
            .replace("补正材料齐全", OPINION);
        assert_eq!(text.contains(OPINION), name == "accept", "{name}");
        let status = api.post_raw(&events, &keys.scjg, xml, text).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}");
    }
    let broken = read_text("mappings/tests/scjg-food-event/broken.legacy.xml")
        .replace(SCJG_EXAMPLE_ID, &company_id);
    let status = api.post_raw(&events, &keys.scjg, xml, broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let licence = read_text("mappings/tests/scjg-food-result/food-license.legacy.xml")
        .replace(SCJG_EXAMPLE_ID, &company_id);
    assert!(licence.contains(COMPANY_USCC) && licence.contains("张三"));
    let status = api
        .post_raw(
            &format!("/api/v1/systems/{SCJG}/results"),
            &keys.scjg,
            xml,
            licence.clone(),
        )
        .await;
    assert!(status.is_success(), "the licence: {status}");
    let status = api.post_raw(&events, &keys.rst, xml, licence).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The 人社 system's feeds, which the hub polls: a step, then a broken result and the card
    // (holder's name and ID number).
    let step = read_text("mappings/tests/rst-card-event/accept.legacy.json")
        .replace(RST_EVENT_EXAMPLE_ID, &zhang_id);
    rest.push_event(json!({
        "seq": 1,
        "document": serde_json::from_str::<Value>(&step).unwrap(),
    }));
    for (seq, name) in [(1, "broken"), (2, "card")] {
        let text = read_text(&format!(
            "mappings/tests/rst-card-result/{name}.legacy.json"
        ))
        .replace(RST_EXAMPLE_ID, &zhang_id);
        rest.push_result(json!({
            "seq": seq,
            "document": serde_json::from_str::<Value>(&text).unwrap(),
        }));
    }
    eventually("the hub to take both results", || async {
        match rest.results_taken() {
            n if n >= 2 => Ok(()),
            n => Err(format!("taken up to {n}")),
        }
    })
    .await;
    eventually("the polled step to be stored", || async {
        let (_, app) = api
            .get(&format!("/api/v1/applications/{zhang_id}"), &keys.platform)
            .await;
        match app["events"].as_array().map(Vec::len) {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(app["events"].to_string()),
        }
    })
    .await;

    // Reads: by the platform, a supervisor, the system handling it; dead letters by an
    // administrator; the supervision feed by a supervisor. What they answer is scanned too.
    let mut answers = Vec::new();
    for (path, credential) in [
        (format!("/api/v1/applications/{company_id}"), &keys.platform),
        (
            format!("/api/v1/applications/{company_id}"),
            &keys.supervisor,
        ),
        (format!("/api/v1/applications/{company_id}"), &keys.scjg),
        (format!("/api/v1/applications/{wang_app_id}"), &keys.rst),
        ("/api/v1/dead-letters".to_string(), &keys.admin),
    ] {
        let (status, body) = api.get(&path, credential).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body:#}");
        answers.push((path, body.to_string()));
    }
    let feed = api
        .get_text("/api/v1/supervision/stream?follow=false", &keys.supervisor)
        .await;
    assert!(feed.contains(&company_id), "{feed}");
    answers.push(("/api/v1/supervision/stream".to_string(), feed));
    let (status, body) = api
        .get(&format!("/api/v1/applications/{zhang_id}"), &keys.scjg)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");

    // The audit log, as an administrator lists it.
    let (status, listed) = api.get("/api/v1/audit?limit=1000", &keys.admin).await;
    assert_eq!(status, StatusCode::OK, "{listed:#}");
    let listed = listed["records"].as_array().unwrap().clone();
    assert!(listed.len() >= 30, "{} records", listed.len());
    assert!(
        listed.iter().any(|r| r["outcome"] == "refused 401")
            && listed.iter().any(|r| r["outcome"] == "refused 403")
            && listed.iter().any(|r| r["outcome"] == "rejected 400"),
        "refusals and rejections are audited: {listed:#?}"
    );

    let log = hub.stop();
    let (stored, heartbeats) = {
        let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let store = tongban::hub::open_store(&config).await.unwrap();
        let records = store.audit_records().await.unwrap();
        let heartbeats = store.systems_last_heartbeat().await.unwrap();
        store.close().await;
        (records, heartbeats)
    };
    // The polled system answered, which counts as a heartbeat for the silence rule.
    assert!(
        heartbeats.iter().any(|(system, _)| system == "ln-rst-card"),
        "{heartbeats:?}"
    );

    // The run happened as described, logged in full.
    let whole = log.join("\n");
    for expected in [
        "DEBUG",
        "delivered",
        "will retry",
        "dead letter",
        "does not map",
    ] {
        assert!(
            whole.contains(expected),
            "no `{expected}` in the {format:?} log:\n{whole}"
        );
    }

    let mut findings = Vec::new();
    for (i, line) in log.iter().enumerate() {
        let line = strip_ansi(line);
        for found in personal_data_in(&line) {
            findings.push(format!(
                "{format:?} log line {}: {found}\n    {}",
                i + 1,
                line.chars().take(400).collect::<String>()
            ));
        }
    }
    for (path, answer) in &answers {
        for found in personal_data_in(answer) {
            findings.push(format!("GET {path}: {found}\n    {answer}"));
        }
    }
    for record in &listed {
        for found in personal_data_in(&record.to_string()) {
            findings.push(format!(
                "audit record {} (GET /api/v1/audit): {found}\n    {record}",
                record["seq"]
            ));
        }
    }
    for record in &stored {
        let text = format!(
            "{} {} {} {} {}",
            record.actor, record.action, record.target, record.outcome, record.detail
        );
        for found in personal_data_in(&text) {
            findings.push(format!(
                "audit record {} (store): {found}\n    {text}",
                record.seq
            ));
        }
    }
    findings
}

fn assert_clean(format: LogFormat, findings: Vec<String>) {
    assert!(
        findings.is_empty(),
        "personal data in clear in the {format:?} run, {} finding(s):\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_reaches_the_text_log_or_the_audit_log() {
    assert_clean(LogFormat::Text, a_working_day(LogFormat::Text).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_reaches_the_json_log_or_the_audit_log() {
    assert_clean(LogFormat::Json, a_working_day(LogFormat::Json).await);
}
