//! No personal data in clear where operators look: the real binary, logging everything
//! (`RUST_LOG=debug`) in both log formats, is driven through a full working day with mock
//! department systems, and its whole output and its audit log must hold no citizen ID number,
//! no applicant's USCC, name, phone number, e-mail or address of the test data.
//!
//! The day: applications accepted and delivered; one refused by its system with a 400 that
//! echoes the applicant's data back; a validation failure whose body carries ID numbers, names
//! and phone numbers in the wrong places; refused user tokens (forged, expired, a bad ID
//! number); an applicant who is not the token's user; a real-name level too low; case events
//! and results posted by a system and polled from another (one of each broken); reads of
//! applications by the platform, a supervisor and a system; refused credentials; the audit
//! log listed by an administrator.
//!
//! A clear citizen ID number is any 18 characters that pass GB 11643 (`ids::check_citizen_id`),
//! wherever they stand; the user tokens' subjects embed the ID number too, so a logged subject
//! is caught. The test fails with every finding, its source and its context.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tongban::config::Config;

const SCJG: &str = "sy-scjg-food";
const RST: &str = "ln-rst-card";
/// The application id the example messages carry.
const SCJG_EXAMPLE_ID: &str = "TB-210102-20261120-000123";
const RST_EXAMPLE_ID: &str = "TB-210102-20261121-000201";
const RST_EVENT_EXAMPLE_ID: &str = "TB-210202-20261125-000017";
const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// How long the test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(60);

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
    for phone in ["13800000000", WANG_PHONE] {
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

/// Every piece of personal data in `text`.
fn personal_data_in(text: &str) -> Vec<String> {
    let mut found: Vec<String> = common::clear_citizen_ids(text)
        .into_iter()
        .map(|id| format!("citizen ID {id}"))
        .collect();
    for (kind, value) in personal_values() {
        if text.contains(&value) {
            found.push(format!("{kind} {value}"));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Applications

fn read_json(relative: &str) -> Value {
    let text = std::fs::read_to_string(common::repo().join(relative)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read_text(relative: &str) -> String {
    std::fs::read_to_string(common::repo().join(relative)).unwrap()
}

/// 食品经营许可 for the company, 张三 its legal representative and contact.
fn company_application() -> Value {
    let mut app = read_json("examples/messages/application.json");
    app.as_object_mut().unwrap().remove("id");
    assert_eq!(
        app["applicant"]["legal_representative"]["id_number"],
        ZHANG_REPRESENTATIVE_ID
    );
    app
}

/// 社会保障卡申领 for 张三.
fn zhang_application() -> Value {
    let mut app = read_json("mappings/tests/rst-card-application/card-online.canonical.json");
    app.as_object_mut().unwrap().remove("id");
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
// Mock department systems

/// A department system on 127.0.0.1. POSTs are applications: taken; or, once `busy_once` is
/// set, the next one answered with a passing failure (SOAP: a `soap:Server` fault, REST: 503)
/// that quotes the applicant; or, REST ones while `refuse` is set, answered 400 with the
/// applicant's data echoed back. GETs are the hub polling its feeds of case events and
/// results.
struct Mock {
    base: String,
    state: Arc<MockState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct MockState {
    soap: bool,
    busy_once: AtomicBool,
    refuse: AtomicBool,
    received: Mutex<Vec<Vec<u8>>>,
    events: Mutex<Vec<Value>>,
    results: Mutex<Vec<Value>>,
    /// The highest `after` the hub asked the results feed for: what it has taken.
    results_taken: AtomicI64,
}

impl Mock {
    async fn start(soap: bool) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(MockState {
            soap,
            ..MockState::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(answer).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Mock {
            base,
            state,
            _stop: stop,
        }
    }

    fn received(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }
}

async fn answer(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if method == Method::GET {
        let after: i64 = uri
            .query()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("after=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let feed = if uri.path().ends_with("/results") {
            state.results_taken.fetch_max(after, Ordering::SeqCst);
            &state.results
        } else {
            &state.events
        };
        let entries: Vec<Value> = feed
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["seq"].as_i64().unwrap_or(0) > after)
            .cloned()
            .collect();
        return axum::Json(entries).into_response();
    }
    state.received.lock().unwrap().push(body.to_vec());
    if state.busy_once.swap(false, Ordering::SeqCst) {
        if state.soap {
            // The company named by its USCC and name, as such faults do.
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE_NS}"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>核验服务繁忙：{COMPANY_USCC} 沈阳示例餐饮管理有限公司 法定代表人 张三 {ZHANG_REPRESENTATIVE_ID}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
                ),
            )
                .into_response();
        }
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"CODE": "E503", "MSG": "系统繁忙", "ZJHM": sent["data"]["ZJHM"], "SQRXM": sent["data"]["SQRXM"]})
                .to_string(),
        )
            .into_response();
    }
    if state.soap {
        return (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE_NS}"><soap:Body><submitApplyResponse><code>0</code></submitApplyResponse></soap:Body></soap:Envelope>"#
            ),
        )
            .into_response();
    }
    if state.refuse.load(Ordering::SeqCst) {
        // As legacy systems do: the fields it complains about first, then the whole request.
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let data = &sent["data"];
        let echo = json!({
            "CODE": "E400",
            "MSG": "证件号码与姓名不匹配",
            "ZJHM": data["ZJHM"],
            "SQRXM": data["SQRXM"],
            "LXDH": data["LXDH"],
            "DATA": sent,
        });
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            echo.to_string(),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"CODE":"0","MSG":"成功"}"#,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Configuration and the hub process

fn edit(path: &Path, change: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, change(&text)).unwrap();
}

/// `text` with every `key = …` line replaced by `key = value`; there must be one.
fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                found = true;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "no `{key} =` line in\n{text}");
    lines.join("\n") + "\n"
}

/// The repository configuration in a temporary directory: the HTTP systems at the mocks, the
/// AMQP one removed (no broker needed), fast retries and polls, `issuer` as the identity
/// system.
fn config_for(soap: &Mock, rest: &Mock, issuer: &common::Issuer) -> tempfile::TempDir {
    let dir = common::config_copy();
    issuer.install_in_dir(dir.path());
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "shutdown_grace_seconds", "1")
    });
    for system in [SCJG, RST] {
        edit(
            &dir.path().join("adapters").join(format!("{system}.toml")),
            |t| {
                let mut t = t
                    .replace("http://127.0.0.1:9101", &soap.base)
                    .replace("http://127.0.0.1:9201", &rest.base);
                t = set_key(&t, "timeout_ms", "2000");
                t = set_key(
                    &t,
                    "retry",
                    "{ attempts = 30, initial_backoff_ms = 50, max_backoff_ms = 400, max_age_seconds = 600 }",
                );
                if system == RST {
                    t = set_key(&t, "interval_seconds", "1");
                }
                t
            },
        );
    }
    dir
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// `tongban serve`, everything it writes kept; killed if the test ends before it stops.
struct Hub {
    child: Child,
    base: String,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` without ANSI escape sequences (colours, which the text format may use).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the hub says it serves, if `line` is that line.
fn serving_addr(line: &str, format: LogFormat) -> Option<String> {
    match format {
        LogFormat::Json => {
            let record: Value = serde_json::from_str(line).ok()?;
            (record["fields"]["message"] == "tongban serving")
                .then(|| record["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        }
        LogFormat::Text => {
            let line = strip_ansi(line);
            if !line.contains("tongban serving") {
                return None;
            }
            let rest = &line[line.find("addr=")? + "addr=".len()..];
            Some(rest.split_whitespace().next()?.to_string())
        }
    }
}

impl Hub {
    async fn start(dir: &Path, format: LogFormat) -> Hub {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
                .arg("--log-format")
                .arg(match format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                })
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&dir)
                .env_remove("TONGBAN_STORE_URL")
                .env_remove("TONGBAN_LISTEN")
                .env_remove("TONGBAN_CONFIG")
                .env("RUST_LOG", "debug")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let output = Arc::new(Mutex::new(Vec::new()));
            let (tx, lines) = std::sync::mpsc::channel::<String>();
            // Both streams read to their end, so the hub never blocks on a full pipe.
            let read = |stream: Box<dyn Read + Send>, tx: std::sync::mpsc::Sender<String>| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        output.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                })
            };
            let readers = vec![
                read(Box::new(child.stdout.take().unwrap()), tx.clone()),
                read(Box::new(child.stderr.take().unwrap()), tx),
            ];
            let mut hub = Hub {
                child,
                base: String::new(),
                output,
                readers,
            };
            let start = Instant::now();
            hub.base = loop {
                let line = lines.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                    panic!("the hub did not start: {:#?}", hub.output.lock().unwrap())
                });
                if let Some(addr) = serving_addr(&line, format) {
                    break format!("http://{addr}");
                }
                assert!(start.elapsed() < PATIENCE, "the hub did not start");
            };
            hub
        })
        .await
        .unwrap()
    }

    /// SIGTERM, then everything it wrote.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Calling the hub

/// Polls `probe` until it gives `Ok`, at most [`PATIENCE`]; `Err` says what it saw instead.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() > PATIENCE {
                    panic!("waited {PATIENCE:?} for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let soap = Mock::start(true).await;
    let rest = Mock::start(false).await;
    let dir = config_for(&soap, &rest, &issuer);
    let keys = Keys::issue(dir.path());
    let hub = Hub::start(dir.path(), format).await;
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
    soap.state.busy_once.store(true, Ordering::SeqCst);
    rest.state.busy_once.store(true, Ordering::SeqCst);
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
    rest.state.refuse.store(true, Ordering::SeqCst);
    let wang = wang_application();
    let wang_app_id = accepted(
        "王小明's application",
        api.submit(&wang, &keys.platform, Some(&issuer.token_for(&wang, 3)))
            .await,
    );
    api.wait_for_state(&wang_app_id, "undeliverable", &keys.platform)
        .await;
    assert_eq!(soap.received(), 2);
    assert_eq!(rest.received(), 3);

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
    let events = format!("/api/v1/systems/{SCJG}/events");
    let xml = "text/xml; charset=utf-8";
    for name in ["accept", "decision", "complete"] {
        let text = read_text(&format!("mappings/tests/scjg-food-event/{name}.legacy.xml"))
            .replace(SCJG_EXAMPLE_ID, &company_id);
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
    rest.state.events.lock().unwrap().push(json!({
        "seq": 1,
        "document": serde_json::from_str::<Value>(&step).unwrap(),
    }));
    for (seq, name) in [(1, "broken"), (2, "card")] {
        let text = read_text(&format!(
            "mappings/tests/rst-card-result/{name}.legacy.json"
        ))
        .replace(RST_EXAMPLE_ID, &zhang_id);
        rest.state.results.lock().unwrap().push(json!({
            "seq": seq,
            "document": serde_json::from_str::<Value>(&text).unwrap(),
        }));
    }
    eventually("the hub to take both results", || async {
        match rest.state.results_taken.load(Ordering::SeqCst) {
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
    // administrator.
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
    }
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
    let stored = {
        let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let store = tongban::hub::open_store(&config).await.unwrap();
        let records = store.audit_records().await.unwrap();
        store.close().await;
        records
    };

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
