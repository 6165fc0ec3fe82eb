//! Notices of disputes (第二十六条) to the systems that ask for them: for each adapter with
//! `[outbound] disputes_url`, every change to a dispute of that system's results (the feed's
//! `dispute` entries) is posted there as JSON, in order, with the adapter's headers:
//! `{"seq", "routing_key", "dispute": {…}}` (free texts masked; the system reads them in full
//! on its list, `GET /api/v1/systems/{id}/disputes`).
//!
//! The feed is the outbox: a cursor per system (`disputes_notified:<system>`) moves past each
//! notice the system answered with a 2xx. A system that is down or refuses gets the same notice
//! again, backing off to a minute, so none is lost and they arrive in order; a system should
//! take a `seq` it has seen again as a repeat.

use crate::backoff::Backoff;
use crate::config::{AdapterConfig, Config};
use crate::model::FeedKind;
use crate::store::{FeedQuery, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The prefix of each system's cursor.
pub const CURSOR_PREFIX: &str = "disputes_notified:";
/// Notices read at once.
const BATCH: u32 = 50;
/// How often an idle notifier looks for new changes.
const IDLE: Duration = Duration::from_millis(500);
/// Waits between failed notices: doubling from a second to a minute.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    System(String),
}

/// Sends one system its pending notices, in order, up to a batch: how many it took.
pub async fn step(
    client: &reqwest::Client,
    store: &Store,
    adapter: &AdapterConfig,
    url: &str,
) -> Result<usize, NotifyError> {
    let cursor_name = format!("{CURSOR_PREFIX}{}", adapter.id);
    let after = store.cursor(&cursor_name).await?;
    let entries = store
        .feed_after(&FeedQuery {
            after,
            system: Some(adapter.id.clone()),
            kind: Some(FeedKind::Dispute),
            limit: BATCH,
            ..FeedQuery::default()
        })
        .await?;
    let mut sent = 0;
    for entry in &entries {
        let dispute: serde_json::Value =
            serde_json::from_str(&entry.body).unwrap_or(serde_json::Value::Null);
        let mut request =
            client
                .post(url)
                .timeout(adapter.outbound.timeout)
                .json(&serde_json::json!({
                    "seq": entry.seq,
                    "routing_key": entry.routing_key,
                    "dispute": dispute,
                }));
        for (name, value) in &adapter.outbound.headers {
            request = request.header(name, value);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| NotifyError::System(format!("cannot reach {url}: {e}")))?;
        if !answer.status().is_success() {
            return Err(NotifyError::System(format!(
                "{url} answered {}",
                answer.status()
            )));
        }
        store.set_cursor(&cursor_name, entry.seq).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Runs a notifier for every adapter with a `disputes_url` until `shutdown` turns true.
pub async fn run_notifiers(config: Arc<Config>, store: Store, shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(cause = %e, "cannot build the dispute notices' client; systems read their lists");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for adapter in config.adapters.values() {
        let Some(url) = adapter.outbound.disputes_url.clone() else {
            continue;
        };
        let (adapter, store, client, stop) = (
            adapter.clone(),
            store.clone(),
            client.clone(),
            shutdown.clone(),
        );
        tasks.spawn(crate::tasks::restarting(
            format!("dispute notices {}", adapter.id),
            shutdown.clone(),
            move || {
                notify(
                    client.clone(),
                    store.clone(),
                    adapter.clone(),
                    url.clone(),
                    stop.clone(),
                )
            },
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn notify(
    client: reqwest::Client,
    store: Store,
    adapter: AdapterConfig,
    url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let wait = match step(&client, &store, &adapter, &url).await {
            Ok(n) => {
                failures = 0;
                if n as u32 >= BATCH {
                    continue;
                }
                IDLE
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(system = %adapter.id, failures, cause = %e, "cannot notify the system of a dispute; it is tried again");
                }
                BACKOFF.after(failures)
            }
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
