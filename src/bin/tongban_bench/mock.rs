//! Fast mock department systems on 127.0.0.1: a SOAP 1.1 one (for `sy-scjg-food`) and a REST
//! JSON one (for `ln-rst-card`). Each answers every POST at once with a success in its own
//! format, counts it, and keeps when it first received each application id (the
//! `Idempotency-Key` the hub sends), so delivery latency can be measured. GETs (the hub's
//! pollers asking for events) get an empty list.
//!
//! Like a department that accepts the unified login, each requires the identity assertion the
//! hub signs (`Tongban-Assertion`): a delivery without one is refused with 401 and not counted.
//! Verifying every signature would put a department's CPU into the hub's figures, so only one
//! assertion per mock is kept, and the harness verifies it against the hub's published keys
//! after the load (`identity::check_assertion`).
//!
//! The SOAP system can also report case steps back to the hub's webhook, as the real system
//! does: after receiving an application it posts up to four steps (受理, 审查, 决定, 办结), in
//! order, in its own XML, with its system API key. That is the "case events coming back" part
//! of the workload. When each step the hub took was posted is kept, so the harness can time its
//! way to the supervision feed.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// The example case steps the SOAP system reports, from its mapping tests: (file, the event id
/// and application id in it, which are replaced).
const EVENT_FILES: [&str; 4] = ["accept", "review", "decision", "complete"];
/// The application id the example messages carry.
const EXAMPLE_APPLICATION_ID: &str = "TB-210102-20261120-000123";
/// Case-event posts in flight at once, from one mock.
const EVENT_CONCURRENCY: usize = 64;

/// Case steps the SOAP system reports back, and where.
pub struct EventsBack {
    /// The hubs' base URLs; set once they listen (again for each hub the run starts). No
    /// events are posted before. With several hubs (on one store), an application's steps go
    /// to them in turn, one application to each.
    pub hubs: Mutex<Vec<String>>,
    /// Applications reported so far, which picks each one's hub.
    reported: AtomicU64,
    /// `Bearer <the SOAP system's API key>`: the hub takes events for a system from it only.
    authorization: String,
    /// The step documents, with `{EVENT_ID}`, `{APPLICATION_ID}` and `{HAPPENED}` to fill in.
    templates: Vec<String>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    /// Steps to post, counted when an application arrives.
    pub expected: AtomicU64,
    pub posted: AtomicU64,
    /// Steps that failed, or were not posted because an earlier step of theirs failed.
    pub failed: AtomicU64,
    /// Why the first failed step failed.
    pub first_error: Mutex<Option<String>>,
    /// Microseconds from posting a step to the hub's answer.
    pub latency: Mutex<Histogram<u64>>,
    /// When the post of each step the hub took (by event id) started, until the harness takes
    /// them to match with the supervision feed.
    posted_at: Mutex<HashMap<String, Instant>>,
}

impl EventsBack {
    /// The first `steps` case steps (0 to 4) from the repository's mapping tests, to be posted
    /// with the system's API key `system_key`.
    pub fn load(config_dir: &Path, steps: usize, system_key: &str) -> Result<EventsBack, String> {
        let mut templates = Vec::new();
        for name in EVENT_FILES.iter().take(steps) {
            let path = config_dir
                .join("mappings/tests/scjg-food-event")
                .join(format!("{name}.legacy.xml"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let event_id = between(&text, "<sp:流水号>", "</sp:流水号>")
                .ok_or_else(|| format!("{}: no sp:流水号", path.display()))?;
            let happened = between(&text, "<sp:办理时间>", "</sp:办理时间>")
                .ok_or_else(|| format!("{}: no sp:办理时间", path.display()))?;
            templates.push(
                text.replace(&format!(">{event_id}<"), ">{EVENT_ID}<")
                    .replace(EXAMPLE_APPLICATION_ID, "{APPLICATION_ID}")
                    .replace(&format!(">{happened}<"), ">{HAPPENED}<"),
            );
        }
        Ok(EventsBack {
            hubs: Mutex::new(Vec::new()),
            reported: AtomicU64::new(0),
            authorization: format!("Bearer {system_key}"),
            templates,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| e.to_string())?,
            slots: Arc::new(Semaphore::new(EVENT_CONCURRENCY)),
            expected: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency: Mutex::new(super::load::histogram()),
            posted_at: Mutex::new(HashMap::new()),
        })
    }

    pub fn steps(&self) -> usize {
        self.templates.len()
    }

    /// Steps posted, and steps failed or given up.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.posted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The steps the hub took since the last call, by event id, with when each post started.
    pub fn take_posted(&self) -> HashMap<String, Instant> {
        self.posted_at
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// POST → the hub's answer of the steps it took since the last call, µs, leaving none.
    pub fn take_latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .map(|mut h| std::mem::replace(&mut *h, super::load::histogram()))
            .unwrap_or_else(|_| super::load::histogram())
    }

    /// Whether every step counted so far was posted or given up.
    pub fn settled(&self) -> bool {
        let (posted, failed) = self.counts();
        posted + failed >= self.expected.load(Ordering::Relaxed)
    }

    /// Posts the steps of `application_id`, one after the other, in the background.
    fn report(self: &Arc<Self>, application_id: &str) {
        let Some(hub) = self.hubs.lock().ok().and_then(|hubs| {
            let n = self.reported.fetch_add(1, Ordering::Relaxed);
            hubs.get((n % hubs.len().max(1) as u64) as usize).cloned()
        }) else {
            return;
        };
        if self.templates.is_empty() {
            return;
        }
        self.expected
            .fetch_add(self.templates.len() as u64, Ordering::Relaxed);
        let url = format!("{hub}/api/v1/systems/sy-scjg-food/events");
        let me = self.clone();
        let application_id = application_id.to_string();
        tokio::spawn(async move {
            let Ok(_slot) = me.slots.clone().acquire_owned().await else {
                me.failed
                    .fetch_add(me.templates.len() as u64, Ordering::Relaxed);
                return;
            };
            for (n, template) in me.templates.iter().enumerate() {
                let event_id = format!("{application_id}-E{n}");
                // The step happened now, as a system reports it (Beijing time, the example's
                // own format): a step dated before the application reached the hub would be
                // flagged as implausible and make the engine raise an alert for every case.
                let happened = chrono::Utc::now()
                    .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
                    .format("%Y%m%d%H%M%S")
                    .to_string();
                let body = template
                    .replace("{EVENT_ID}", &event_id)
                    .replace("{APPLICATION_ID}", &application_id)
                    .replace("{HAPPENED}", &happened);
                let started = Instant::now();
                let sent = me
                    .client
                    .post(&url)
                    .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
                    .header(header::AUTHORIZATION, &me.authorization)
                    .body(body)
                    .send()
                    .await;
                let failure = match sent {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await.unwrap_or_default();
                        (status != StatusCode::ACCEPTED && status != StatusCode::OK).then(|| {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )
                        })
                    }
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = failure {
                    if let Ok(mut first) = me.first_error.lock()
                        && first.is_none()
                    {
                        *first = Some(why);
                    }
                    me.failed
                        .fetch_add((me.templates.len() - n) as u64, Ordering::Relaxed);
                    break;
                } else {
                    // Noted before it is counted, so a step counted as posted can be matched.
                    if let Ok(mut posted_at) = me.posted_at.lock() {
                        posted_at.insert(event_id, started);
                    }
                    me.posted.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut h) = me.latency.lock() {
                        let _ = h.record(started.elapsed().as_micros().max(1) as u64);
                    }
                }
            }
        });
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = start + text[start..].find(close)?;
    Some(&text[start..end])
}

/// The header carrying the hub's identity assertion.
const ASSERTION_HEADER: &str = "tongban-assertion";

/// What one mock has seen.
pub struct Seen {
    soap: bool,
    /// Every POST taken, duplicates included.
    pub posts: AtomicU64,
    /// POSTs refused because they carried no identity assertion.
    pub without_assertion: AtomicU64,
    /// The first assertion taken, and the application id (`Idempotency-Key`) it came with.
    sample: Mutex<Option<(String, String)>>,
    /// When each application id (its `Idempotency-Key`) was first received.
    received: Mutex<HashMap<String, Instant>>,
    events: Option<Arc<EventsBack>>,
}

impl Seen {
    /// Takes the receive times recorded so far, leaving none.
    pub fn take_received(&self) -> HashMap<String, Instant> {
        self.received
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    /// The first assertion taken and the application id it came with, if any came.
    pub fn sample(&self) -> Option<(String, String)> {
        self.sample.lock().ok().and_then(|s| s.clone())
    }

    /// Forgets the assertions seen so far (the relay's stand-ins), before the hub's run.
    pub fn forget_assertions(&self) {
        self.without_assertion.store(0, Ordering::Relaxed);
        if let Ok(mut sample) = self.sample.lock() {
            *sample = None;
        }
    }
}

/// A mock system serving on its own port until stopped.
pub struct Mock {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Mock {
    /// Starts a mock on 127.0.0.1 on the current runtime.
    pub async fn start(soap: bool, events: Option<Arc<EventsBack>>) -> std::io::Result<Mock> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen {
            soap,
            posts: AtomicU64::new(0),
            without_assertion: AtomicU64::new(0),
            sample: Mutex::new(None),
            received: Mutex::new(HashMap::new()),
            events,
        });
        let app = Router::new().fallback(answer).with_state(seen.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Mock {
            addr,
            seen,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn posts(&self) -> u64 {
        self.seen.posts.load(Ordering::Relaxed)
    }

    /// Stops serving and waits (at most `patience`) for the server to end.
    pub async fn stop(mut self, patience: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(patience, task).await;
        }
    }
}

async fn answer(
    State(seen): State<Arc<Seen>>,
    method: Method,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    if method != Method::POST {
        // A poller asking for case events or results: there are none.
        return ([(header::CONTENT_TYPE, "application/json")], "[]").into_response();
    }
    let now = Instant::now();
    let Some(assertion) = headers
        .get(ASSERTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.is_empty())
    else {
        seen.without_assertion.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "no identity assertion").into_response();
    };
    seen.posts.fetch_add(1, Ordering::Relaxed);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    if let (Some(key), Ok(mut sample)) = (key, seen.sample.lock())
        && sample.is_none()
    {
        *sample = Some((assertion.to_string(), key.to_string()));
    }
    if let Some(key) = key {
        let first = seen
            .received
            .lock()
            .map(|mut m| {
                if m.contains_key(key) {
                    false
                } else {
                    m.insert(key.to_string(), now);
                    true
                }
            })
            .unwrap_or(false);
        if first && let Some(events) = &seen.events {
            events.report(key);
        }
    }
    if seen.soap {
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

/// An OTLP/HTTP collector that takes spans and keeps only their count: where a traced hub
/// exports, so that tracing's cost is the hub's and not a real collector's.
pub struct CollectorStub {
    pub base: String,
    pub spans: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
}

impl CollectorStub {
    pub async fn start() -> Result<CollectorStub, String> {
        let spans = Arc::new(AtomicU64::new(0));
        let counted = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let counted = counted.clone();
                async move {
                    // Each span has exactly one "spanId" member.
                    let n = body.windows(8).filter(|w| w == b"\"spanId\"").count();
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                    (StatusCode::OK, "{}")
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("the collector stub cannot listen: {e}"))?;
        let base = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(CollectorStub {
            base,
            spans,
            stop: Some(tx),
        })
    }
}

impl Drop for CollectorStub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
