//! A mock department system on 127.0.0.1 (SOAP like 市场监管's or REST like 人社's): it answers
//! the hub's deliveries as the test switches it (answering, refusing connections, hanging,
//! failing, refusing for good, answering slowly), keeps what it got, and serves feeds of case
//! events and results for the hub to poll.

use super::wait::eventually;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// What a SOAP mock in [`Mode::SoapClientFault`] says is wrong.
pub const FAULT_REASON: &str = "营业执照编号与经营者名称不符";

/// How a mock system answers a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// Takes the request and answers only long after the hub has given up.
    Hang,
    Fail500,
    Fail400,
    /// HTTP 400 quoting the request back, as legacy systems do: the fields it complains about
    /// first (ID number, name, phone), then the whole request, in ASCII-only JSON as many
    /// legacy systems write it: every other character a `\u` escape.
    Fail400EscapedEcho,
    /// HTTP 500 with a SOAP 1.1 `soap:Client` fault: the message will never be accepted.
    SoapClientFault,
    /// Answers 200 after this many milliseconds.
    Slow(u64),
    /// Answers 200 with this body: the system's own acknowledgement, or garbage.
    Answer(&'static str),
}

/// One POST a mock received.
#[derive(Debug, Clone)]
pub struct Reception {
    pub mode: Mode,
    pub key: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Shared {
    soap: bool,
    mode: Mutex<Mode>,
    /// The message of a passing failure for the next POST, whatever the mode.
    busy_once: Mutex<Option<String>>,
    seen: Mutex<Vec<Reception>>,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    events: Mutex<Vec<Value>>,
    results: Mutex<Vec<Value>>,
    /// The highest `after` the hub asked the results feed for: what it has taken.
    results_taken: AtomicI64,
    /// Every `after` the hub asked the events feed for, in order.
    events_asked: Mutex<Vec<i64>>,
}

/// A department system on 127.0.0.1: answers POSTs as its mode says and keeps what it got;
/// answers GETs (the hub's pollers) with the entries of its events or results feed after the
/// `after` they ask for (none unless the test adds some).
pub struct Mock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Mock {
    pub async fn start(soap: bool, mode: Mode) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = Mock::new(listener.local_addr().unwrap(), soap, mode);
        mock.serve(listener);
        mock
    }

    /// A mock whose port nothing listens on (connections are refused) until `come_back`.
    pub async fn start_refusing(soap: bool, mode: Mode) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Mock::new(addr, soap, mode)
    }

    fn new(addr: SocketAddr, soap: bool, mode: Mode) -> Mock {
        Mock {
            addr,
            shared: Arc::new(Shared {
                soap,
                mode: Mutex::new(mode),
                busy_once: Mutex::new(None),
                seen: Mutex::new(Vec::new()),
                inflight: AtomicUsize::new(0),
                max_inflight: AtomicUsize::new(0),
                events: Mutex::new(Vec::new()),
                results: Mutex::new(Vec::new()),
                results_taken: AtomicI64::new(0),
                events_asked: Mutex::new(Vec::new()),
            }),
            stop: Mutex::new(None),
        }
    }

    fn serve(&self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(mock_answer)
            .with_state(self.shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        *self.stop.lock().unwrap() = Some(tx);
    }

    /// Listens again on the same port.
    pub async fn come_back(&self) {
        let addr = self.addr;
        let listener = eventually("the mock's port to be free again", || async move {
            TcpListener::bind(addr).await.map_err(|e| e.to_string())
        })
        .await;
        self.serve(listener);
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Answers the next POST, whatever the mode, with a passing failure that quotes the
    /// applicant, as busy legacy systems do: SOAP a `soap:Server` fault saying `message`, REST
    /// a 503 with `message` and the ID number and name it was sent.
    pub fn busy_once(&self, message: &str) {
        *self.shared.busy_once.lock().unwrap() = Some(message.to_string());
    }

    /// Adds an entry (`seq`, `document`) to the case events feed.
    pub fn push_event(&self, entry: Value) {
        self.shared.events.lock().unwrap().push(entry);
    }

    /// Adds an entry (`seq`, `document`) to the results feed.
    pub fn push_result(&self, entry: Value) {
        self.shared.results.lock().unwrap().push(entry);
    }

    /// The highest `seq` of the results feed the hub has confirmed taking (by asking for what
    /// comes after it).
    pub fn results_taken(&self) -> i64 {
        self.shared.results_taken.load(Ordering::SeqCst)
    }

    /// Every `after` the hub asked the events feed for, in order.
    pub fn events_asked(&self) -> Vec<i64> {
        self.shared.events_asked.lock().unwrap().clone()
    }

    pub fn receptions(&self) -> Vec<Reception> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many POSTs it received, however it answered them.
    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    pub fn count_in(&self, mode: Mode) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.mode == mode)
            .count()
    }

    /// The keys of the requests it answered with success.
    pub fn acknowledged_keys(&self) -> BTreeSet<String> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r.mode, Mode::Ok | Mode::Slow(_)))
            .filter_map(|r| r.key.clone())
            .collect()
    }

    pub fn distinct_keys(&self) -> BTreeSet<String> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.key.clone())
            .collect()
    }

    pub fn max_inflight(&self) -> usize {
        self.shared.max_inflight.load(Ordering::SeqCst)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// Counts a request in flight until dropped (also when the hub gives up and hangs up).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn mock_answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return feed(&shared, &uri);
    }
    let mode = *shared.mode.lock().unwrap();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.seen.lock().unwrap().push(Reception {
        mode,
        key,
        headers,
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    let now = shared.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_inflight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(shared.clone());
    let busy = shared.busy_once.lock().unwrap().take();
    if let Some(message) = busy {
        return busy_answer(shared.soap, &message, &body);
    }
    match mode {
        Mode::Ok => ok_answer(shared.soap),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            ok_answer(shared.soap)
        }
        Mode::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ok_answer(shared.soap)
        }
        Mode::Answer(body) => (
            [(
                header::CONTENT_TYPE,
                if shared.soap {
                    "text/xml; charset=utf-8"
                } else {
                    "application/json"
                },
            )],
            body,
        )
            .into_response(),
        Mode::Fail500 => (StatusCode::INTERNAL_SERVER_ERROR, "database is down").into_response(),
        Mode::Fail400 => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"CODE":"E400","MSG":"SFZHM 校验失败"}"#,
        )
            .into_response(),
        Mode::Fail400EscapedEcho => {
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let data = &sent["data"];
            let echo = json!({
                "CODE": "E400",
                "MSG": "证件号码与姓名不匹配",
                "ZJHM": data["ZJHM"],
                "SQRXM": data["SQRXM"],
                "LXDH": data["LXDH"],
                "DATA": sent,
            })
            .to_string();
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                ascii_escaped(&echo),
            )
                .into_response()
        }
        Mode::SoapClientFault => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE_NS}"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>{FAULT_REASON}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
            ),
        )
            .into_response(),
    }
}

/// A poller asking for case events (or results, by the path) after a sequence number.
fn feed(shared: &Shared, uri: &Uri) -> Response {
    let after: i64 = uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("after=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let feed = if uri.path().ends_with("/results") {
        shared.results_taken.fetch_max(after, Ordering::SeqCst);
        &shared.results
    } else {
        shared.events_asked.lock().unwrap().push(after);
        &shared.events
    };
    let entries: Vec<Value> = feed
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap_or(0) > after)
        .cloned()
        .collect();
    axum::Json(entries).into_response()
}

/// JSON text with every non-ASCII character written as `\u` escapes (UTF-16 units).
pub fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn busy_answer(soap: bool, message: &str, body: &[u8]) -> Response {
    if soap {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE_NS}"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>{message}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#
            ),
        )
            .into_response();
    }
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"CODE": "E503", "MSG": message, "ZJHM": sent["data"]["ZJHM"], "SQRXM": sent["data"]["SQRXM"]})
            .to_string(),
    )
        .into_response()
}

fn ok_answer(soap: bool) -> Response {
    if soap {
        (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE_NS}"><soap:Body><submitApplyResponse><code>0</code></submitApplyResponse></soap:Body></soap:Envelope>"#
            ),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"CODE":"0","MSG":"成功"}"#,
        )
            .into_response()
    }
}
