//! Notices to the systems that ask for them, from the feed:
//!
//! - disputes (第二十六条): for each adapter with `[outbound] disputes_url`, every change to a
//!   dispute of that system's results (the feed's `dispute` entries), posted with the adapter's
//!   headers as `{"seq", "routing_key", "dispute": {…}}` (free texts masked; the system reads them
//!   in full on its list, `GET /api/v1/systems/{id}/disputes`);
//! - onboarding (第五条): for each system on the inventory whose contact has a `webhook`, every
//!   change to its onboarding requests (the feed's `onboarding` entries: refused, probed with
//!   each probe's outcome and reasons, rejected or live with the reviewer's reasons), posted as
//!   `{"seq", "routing_key", "onboarding": {…}}`. The system need not be connected;
//! - red cards (第二十九条): with `[supervision] red_card_webhook`, every alert entry at level red
//!   (raised, escalated to red, resolved), of every system, as `{"seq", "routing_key", "alert": {…}}`.
//!
//! The feed is the outbox: a cursor per system and kind (`disputes_notified:<system>`,
//! `onboarding_notified:<system>`) moves past each notice the system answered with a 2xx. A
//! system that is down or refuses gets the same notice again, backing off to a minute, so none
//! is lost and they arrive in order; a system should take a `seq` it has seen again as a repeat.

use super::cluster::Lease;
use crate::backoff::Backoff;
use crate::config::{AdapterConfig, Config, SystemRecord};
use crate::model::{FeedKind, Level};
use crate::store::{FeedQuery, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a contact's webhook has to answer.
const CONTACT_TIMEOUT: Duration = Duration::from_secs(10);
/// Notices read at once.
const BATCH: u32 = 50;
/// How often an idle notifier looks for new changes.
const IDLE: Duration = Duration::from_millis(500);
/// How long a hub's turn at sending a receiver its notices lasts unless renewed: how long
/// notices pause when that hub dies.
const LEASE: Duration = Duration::from_secs(15);
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

/// Where one system's notices of one kind go (or, for red cards, every system's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notices {
    /// The system whose entries are sent; every system's when `None`.
    pub system: Option<String>,
    /// `Dispute`, `Onboarding` or `Alert`: the feed entries sent, and the field they go in.
    pub kind: FeedKind,
    /// Only entries at or above this level (alerts).
    pub min_level: Option<Level>,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Notices {
    /// The dispute notices of an adapter with a `disputes_url`.
    pub fn disputes(adapter: &AdapterConfig) -> Option<Notices> {
        Some(Notices {
            system: Some(adapter.id.clone()),
            kind: FeedKind::Dispute,
            min_level: None,
            url: adapter.outbound.disputes_url.clone()?,
            headers: adapter.outbound.headers.clone(),
            timeout: adapter.outbound.timeout,
        })
    }

    /// The onboarding notices of a system whose contact has a webhook.
    pub fn onboarding(system: &SystemRecord) -> Option<Notices> {
        Some(Notices {
            system: Some(system.id.clone()),
            kind: FeedKind::Onboarding,
            min_level: None,
            url: system.contact.webhook.clone()?,
            headers: Vec::new(),
            timeout: CONTACT_TIMEOUT,
        })
    }

    /// Every red card, to the webhook `[supervision] red_card_webhook` names.
    pub fn red_cards(config: &Config) -> Option<Notices> {
        Some(Notices {
            system: None,
            kind: FeedKind::Alert,
            min_level: Some(Level::Red),
            url: config.hub.supervision.red_card_webhook.clone()?,
            headers: Vec::new(),
            timeout: CONTACT_TIMEOUT,
        })
    }

    fn cursor(&self) -> String {
        match (&self.system, self.kind) {
            (None, _) => "red_cards_notified".to_owned(),
            (Some(system), FeedKind::Dispute) => format!("disputes_notified:{system}"),
            (Some(system), kind) => format!("{}_notified:{system}", kind.as_str()),
        }
    }

    /// Who the notices are for, in logs and task names.
    fn about(&self) -> &str {
        self.system.as_deref().unwrap_or("every system")
    }
}

/// Sends one system its pending notices, in order, up to a batch: how many it took.
pub async fn step(
    client: &reqwest::Client,
    store: &Store,
    notices: &Notices,
) -> Result<usize, NotifyError> {
    let cursor_name = notices.cursor();
    let url = &notices.url;
    let after = store.cursor(&cursor_name).await?;
    let entries = store
        .feed_after(&FeedQuery {
            after,
            system: notices.system.clone(),
            kind: Some(notices.kind),
            min_level: notices.min_level,
            limit: BATCH,
            ..FeedQuery::default()
        })
        .await?;
    let mut sent = 0;
    for entry in &entries {
        let body: serde_json::Value =
            serde_json::from_str(&entry.body).unwrap_or(serde_json::Value::Null);
        let mut notice = serde_json::json!({
            "seq": entry.seq,
            "routing_key": entry.routing_key,
        });
        notice[notices.kind.as_str()] = body;
        let mut request = client.post(url).timeout(notices.timeout).json(&notice);
        for (name, value) in &notices.headers {
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

/// Runs a notifier for every adapter with a `disputes_url`, every system on the inventory whose
/// contact has a `webhook`, and the red-card webhook when configured, until `shutdown` turns true.
pub async fn run_notifiers(
    config: Arc<Config>,
    store: Store,
    hub: String,
    shutdown: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(cause = %e, "cannot build the notices' client; systems read their lists");
            return;
        }
    };
    let all = config
        .adapters
        .values()
        .filter_map(Notices::disputes)
        .chain(
            config
                .systems
                .iter()
                .flatten()
                .filter_map(Notices::onboarding),
        )
        .chain(Notices::red_cards(&config));
    let mut tasks = tokio::task::JoinSet::new();
    for notices in all {
        let (store, client, stop) = (store.clone(), client.clone(), shutdown.clone());
        let hub = hub.clone();
        tasks.spawn(crate::tasks::restarting(
            format!("{} notices {}", notices.kind.as_str(), notices.about()),
            shutdown.clone(),
            move || {
                notify(
                    client.clone(),
                    store.clone(),
                    notices.clone(),
                    hub.clone(),
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
    notices: Notices,
    hub: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    // One hub of those sharing the store sends each receiver its notices.
    let mut lease = Lease::new(format!("notices:{}", notices.cursor()), hub, LEASE);
    while !*shutdown.borrow() {
        let held = match lease.hold(&store).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(system = %notices.about(), cause = %e, "cannot take the notices' lease; will try again");
                false
            }
        };
        let wait = if !held {
            IDLE.max(LEASE / 10)
        } else {
            match step(&client, &store, &notices).await {
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
                        tracing::warn!(system = %notices.about(), kind = notices.kind.as_str(), failures, cause = %e, "cannot notify the system; the notice is tried again");
                    }
                    BACKOFF.after(failures)
                }
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
    lease.release(&store).await;
}
