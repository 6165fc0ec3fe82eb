//! A supervisor watching the hub: one subscriber to the supervision feed
//! (`GET /api/v1/supervision/stream`, server-sent events) with a supervisor's API key, noting
//! when each case event's entry arrives, so the harness can measure supervision latency (a case
//! step posted by the mock → its entry received here).
//!
//! There is no SSE client among the dependencies, so the stream is read with reqwest's chunked
//! body and the `id:`/`event:`/`data:` lines are parsed here. When the stream ends or fails, the
//! subscriber reconnects with `Last-Event-ID`, as a browser's EventSource would, so it neither
//! skips nor repeats entries; the reconnects are counted and reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What the subscriber has seen, shared with the harness.
pub struct FeedWatch {
    /// When the entry of each case event (by its event id) first arrived; the harness takes
    /// the entries it matches, so this holds only those not matched yet.
    seen: Mutex<HashMap<String, Instant>>,
    /// `event` entries received, over the run.
    pub entries: AtomicU64,
    /// Times the stream had to be opened again.
    pub reconnects: AtomicU64,
    /// Why the stream first ended or failed, if it did.
    pub first_error: Mutex<Option<String>>,
}

impl FeedWatch {
    fn new() -> FeedWatch {
        FeedWatch {
            seen: Mutex::new(HashMap::new()),
            entries: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Whether the entries of all these event ids have arrived (and are not taken yet).
    pub fn has_all<'a>(&self, mut ids: impl Iterator<Item = &'a String>) -> bool {
        self.seen
            .lock()
            .map(|seen| ids.all(|id| seen.contains_key(id)))
            .unwrap_or(false)
    }

    /// When the entry of `id` arrived, for each id in `ids` (`None` if it has not), forgetting
    /// those found: each event is matched once.
    pub fn take<'a>(&self, ids: impl Iterator<Item = &'a String>) -> Vec<Option<Instant>> {
        match self.seen.lock() {
            Ok(mut seen) => ids.map(|id| seen.remove(id)).collect(),
            Err(_) => ids.map(|_| None).collect(),
        }
    }

    fn note(&self, event_id: String, at: Instant) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut seen) = self.seen.lock() {
            seen.entry(event_id).or_insert(at);
        }
    }

    fn failed(&self, why: String) {
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(why);
        }
    }
}

/// One SSE event, as the parser hands it over.
#[derive(Debug, PartialEq)]
struct Event {
    id: Option<String>,
    kind: String,
    data: String,
}

/// An incremental SSE parser: bytes in as they come, whole events out. Only what the hub
/// sends is handled (`id`, `event`, `data`, `retry`, comments); that is all the format has.
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Takes a chunk of the body and returns the events it completes.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = &self.pending[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            start += end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.drain(..start);
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            // A blank line ends an event; one without data (the `retry:` preamble) is no event.
            let kind = self.kind.take();
            let id = self.id.take();
            return self.data.take().map(|data| Event {
                id,
                kind: kind.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_string()),
            "event" => self.kind = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

/// The subscriber, reading in the background until stopped.
pub struct Subscriber {
    pub watch: Arc<FeedWatch>,
    /// The stream's address, for the report.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Subscriber {
    /// Opens the stream of `system`'s case events after feed entry `after`, with the
    /// supervisor's API key `secret`, and reads it in the background on the current runtime.
    /// Fails if the first connection is refused, so a wrong credential stops the run early.
    pub async fn start(
        hub_base: &str,
        system: &str,
        secret: &str,
        after: i64,
    ) -> Result<Subscriber, String> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            // No overall timeout (the stream is meant to last); the hub sends a keep-alive
            // comment every 15 s, so a minute of silence means the connection is dead.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{hub_base}/api/v1/supervision/stream?kind=event&system={system}");
        let authorization = format!("Bearer {secret}");
        let first = connect(&client, &url, &authorization, after).await?;
        let watch = Arc::new(FeedWatch::new());
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = {
            let (watch, url) = (watch.clone(), url.clone());
            tokio::spawn(async move {
                let mut last_seq = after;
                let mut response = Some(first);
                loop {
                    let current = match response.take() {
                        Some(r) => Ok(r),
                        None => connect(&client, &url, &authorization, last_seq).await,
                    };
                    let why = match current {
                        Ok(r) => tokio::select! {
                            _ = &mut rx => return,
                            why = read(r, &watch, &mut last_seq) => why,
                        },
                        Err(e) => e,
                    };
                    watch.failed(why);
                    // Wait a little before opening it again, as EventSource does (the hub's
                    // `retry` says 2 s; less here, since every lost moment adds to the latency).
                    tokio::select! {
                        _ = &mut rx => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    watch.reconnects.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Ok(Subscriber {
            watch,
            url,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// Stops reading and closes the stream, so the hub can shut down without waiting for it.
    pub async fn stop(mut self, patience: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(patience, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

/// Opens the stream after `after`; an error unless the hub answers 200.
async fn connect(
    client: &reqwest::Client,
    url: &str,
    authorization: &str,
    after: i64,
) -> Result<reqwest::Response, String> {
    let response = client
        .get(url)
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .header("last-event-id", after.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot open {url}: {e}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "{url}: HTTP {status}: {}",
            &body[..body.floor_char_boundary(300)]
        ));
    }
    Ok(response)
}

/// Reads the stream until it ends or fails, noting each case event's arrival, and says why it
/// stopped. `last_seq` follows the entries received, for the next connection.
async fn read(mut response: reqwest::Response, watch: &FeedWatch, last_seq: &mut i64) -> String {
    let mut parser = Parser::default();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                // Every event this chunk completes arrived now, before any parsing.
                let at = Instant::now();
                for event in parser.feed(&chunk) {
                    if let Some(seq) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                        *last_seq = seq;
                    }
                    if event.kind != "event" {
                        continue;
                    }
                    match event_id(&event.data) {
                        Some(id) => watch.note(id, at),
                        None => watch.failed(format!(
                            "an entry without an event id: {}",
                            &event.data[..event.data.floor_char_boundary(200)]
                        )),
                    }
                }
            }
            Ok(None) => return "the hub ended the stream".into(),
            Err(e) => return format!("the stream failed: {e}"),
        }
    }
}

/// The `event_id` of a case event's feed entry (its data is the masked canonical event).
fn event_id(data: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    value.get("event_id")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_takes_events_split_across_chunks() {
        let mut p = Parser::default();
        assert!(p.feed(b"retry: 2000\n\n").is_empty());
        assert!(p.feed(b": keep-alive\n\nid: 7\nevent: ev").is_empty());
        let events = p.feed(b"ent\r\ndata: {\"event_id\":\ndata: \"X-E0\"}\n\nid: 8\n");
        assert_eq!(
            events,
            [Event {
                id: Some("7".into()),
                kind: "event".into(),
                data: "{\"event_id\":\n\"X-E0\"}".into(),
            }]
        );
        assert_eq!(event_id(&events[0].data).as_deref(), Some("X-E0"));
        let events = p.feed(b"event: alert\ndata:{}\n\n");
        assert_eq!(
            events,
            [Event {
                id: Some("8".into()),
                kind: "alert".into(),
                data: "{}".into(),
            }]
        );
    }
}
