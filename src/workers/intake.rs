//! Inbound by polling: for each adapter whose `[inbound] mode = "poll"`, ask the system for the
//! case events (and results) it has produced since the last one seen, and receive each as if
//! it had been posted to the webhook.
//!
//! The system answers `GET <url>?after=<seq>` with a JSON array of
//! `{"seq": <integer>, "document": <one message in its own format>}`, oldest first. The cursor
//! is kept in the store ([`Store::poll_cursor`], per system, kind and URL), moved after each
//! page to the last entry stored or refused for good, so a restarted hub or poller asks from
//! there instead of from 0. Whatever comes again all the same (a system that ignores `after`,
//! a page read twice) is harmless: events are deduplicated by (system, event id), and a refusal
//! of the same message is recorded and raised once ([`inbound::refused`]).
//!
//! A message the store cannot take now is asked for again at the next poll, and holds back the
//! ones after it; one whose write the store refuses on its own (it would fail again) is logged
//! at ERROR, recorded as refused and skipped.

use super::cluster::Lease;
use crate::config::{Config, InboundMode};
use crate::model::{MessageKind, Via};
use crate::service::inbound::{self, InboundError, Received};
use crate::store::Store;
use crate::store::group::GroupError;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One entry of a polled feed.
#[derive(Deserialize)]
pub(crate) struct Entry {
    pub(crate) seq: i64,
    document: serde_json::Value,
}

impl Entry {
    /// The message in the system's own format: a JSON system's is the JSON itself, an XML
    /// system's a string.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match &self.document {
            serde_json::Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    }
}

/// Runs a poller for every polling adapter until `shutdown` turns true. Aborting (or dropping)
/// this aborts every poller, with its poll in flight.
pub async fn run_pollers(
    config: Arc<Config>,
    store: Store,
    events: inbound::Recorder,
    hub: String,
    shutdown: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(cause = %e, "cannot build the polling client; polling adapters get no events");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for adapter in config.adapters.values() {
        let InboundMode::Poll {
            url,
            interval,
            results_url,
        } = &adapter.inbound.mode
        else {
            continue;
        };
        let mut feeds = vec![(url.clone(), MessageKind::CaseEvent)];
        if let Some(r) = results_url {
            feeds.push((r.clone(), MessageKind::Result));
        }
        for (url, kind) in feeds {
            let (config, store, client) = (config.clone(), store.clone(), client.clone());
            let (events, hub) = (events.clone(), hub.clone());
            let (system, interval, stop) = (adapter.id.clone(), *interval, shutdown.clone());
            tasks.spawn(crate::tasks::restarting(
                format!("poller {system} {kind:?}"),
                shutdown.clone(),
                move || {
                    poll(
                        config.clone(),
                        store.clone(),
                        events.clone(),
                        client.clone(),
                        system.clone(),
                        url.clone(),
                        kind,
                        interval,
                        hub.clone(),
                        stop.clone(),
                    )
                },
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The shortest lease on a feed's polling (three intervals when longer): how long polling
/// pauses when the hub polling dies.
const POLL_LEASE: Duration = Duration::from_secs(15);

/// How often a polling system's answers count as a heartbeat.
const HEARTBEAT_EVERY_MS: i64 = 30_000;

#[allow(clippy::too_many_arguments)]
async fn poll(
    config: Arc<Config>,
    store: Store,
    events: inbound::Recorder,
    client: reqwest::Client,
    system: String,
    url: String,
    kind: MessageKind,
    interval: Duration,
    hub: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut after = None;
    let mut heartbeat_at: Option<i64> = None;
    // One hub of those sharing the store polls each feed.
    let mut lease = Lease::new(
        format!("poll:{system}:{}:{url}", kind.as_str()),
        hub,
        (interval * 3).max(POLL_LEASE),
    );
    loop {
        if *shutdown.borrow() {
            lease.release(&store).await;
            return;
        }
        match lease.hold(&store).await {
            Ok(true) => {}
            Ok(false) => {
                // Another hub polls; when this one takes over, it starts from the stored cursor.
                after = None;
                tokio::select! {
                    _ = tokio::time::sleep(interval.min(POLL_LEASE / 3)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Err(e) => {
                after = None;
                tracing::warn!(system = %system, cause = %e, "cannot take the poll's lease; will try again");
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        }
        let from = match after {
            Some(from) => from,
            None => match store.poll_cursor(&system, kind.as_str(), &url).await {
                Ok(from) => *after.insert(from),
                Err(e) => {
                    tracing::warn!(system = %system, cause = %e, "cannot read where polling stopped; will try again");
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            },
        };
        match fetch(&client, &url, from).await {
            Ok(entries) => {
                let mut read_to = from;
                // The system answered: that is a heartbeat for the silence rule, recorded at
                // most every HEARTBEAT_EVERY_MS so that a fast poll does not write each time.
                let now = crate::clock::now_millis();
                if heartbeat_at.is_none_or(|at| now - at >= HEARTBEAT_EVERY_MS) {
                    match store.record_heartbeat(&system, now).await {
                        Ok(()) => heartbeat_at = Some(now),
                        Err(e) => {
                            tracing::warn!(system = %system, cause = %e, "cannot record the poll as a heartbeat")
                        }
                    }
                }
                for entry in entries {
                    let bytes = entry.bytes();
                    let received = inbound::receive(
                        &config,
                        &store,
                        &events,
                        &system,
                        kind,
                        &bytes,
                        Via::Poll,
                        None,
                    )
                    .await;
                    match received {
                        Ok(Received::New) => {
                            tracing::info!(system = %system, seq = entry.seq, "polled message received")
                        }
                        Ok(Received::Duplicate) => {}
                        Err(InboundError::Unrecorded(refused @ GroupError::Refused(_))) => {
                            // The store refused this write itself: asked for again, it would
                            // fail again and hold back every later message of the system.
                            tracing::error!(system = %system, seq = entry.seq, cause = %crate::personal::mask_text(&refused.to_string()), "a polled message could not be stored and would fail again; skipped");
                            let reason = "the hub could not store this message (its store refused the write); it was skipped".to_string();
                            let fingerprint = inbound::fingerprint(None, &bytes);
                            inbound::refused(
                                &config,
                                &store,
                                &system,
                                kind,
                                Via::Poll,
                                &[reason],
                                Some(&fingerprint),
                            )
                            .await;
                        }
                        Err(e @ (InboundError::Store(_) | InboundError::Unrecorded(_))) => {
                            // Not taken: ask again from here at the next poll.
                            tracing::warn!(system = %system, seq = entry.seq, cause = %e, "cannot store a polled message; will ask for it again");
                            break;
                        }
                        // Refused: `inbound::receive` logged the reasons (at WARN, once per
                        // message) and recorded it.
                        Err(e) => {
                            tracing::debug!(system = %system, seq = entry.seq, error = %crate::personal::mask_text(&e.to_string()), "polled message skipped")
                        }
                    }
                    read_to = read_to.max(entry.seq);
                }
                if read_to > from {
                    after = Some(read_to);
                    // One that cannot be written is still kept in memory: only a restart
                    // before the next write reads the page again, which deduplication makes
                    // harmless.
                    if let Err(e) = store
                        .set_poll_cursor(&system, kind.as_str(), &url, read_to)
                        .await
                    {
                        tracing::warn!(system = %system, seq = read_to, cause = %e, "cannot record how far polling has read");
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(system = %system, reason = %reason, "polling failed; will try again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    after: i64,
) -> Result<Vec<Entry>, String> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let response = client
        .get(format!("{url}{separator}after={after}"))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if bytes.len() > crate::mapping::MAX_INPUT_BYTES {
        return Err("the answer is larger than 4 MiB".into());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the answer is not a JSON array of {{seq, document}}: {e}"))
}
