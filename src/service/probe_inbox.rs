//! Where what a system reports about a probe application goes while the probe listens: the
//! case events and results of a simulated transaction (模拟办事) never reach the event or result
//! tables, the feed or the statistics, whichever way they arrive (webhook, polling, queue).
//!
//! A probe listens for one system with the configuration it probes (the candidate, which may
//! not be live yet) and the prefix of its applications' ids (`TEST-<request>-`). A message from
//! that system is mapped with the candidate's mapping; when it is about one of the probe's
//! applications it goes to the probe. While the system is not connected (the running
//! configuration has no adapter for it), everything it sends is the probe's: a message that
//! does not map goes to the probe as such (its errors are the department's to see in the probe
//! report), and one about another application is refused. A connected system's other messages
//! take the usual way.

use super::inbound::{InboundError, Received, RefusalClass};
use crate::config::Config;
use crate::mapping::MapError;
use crate::model::MessageKind;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What every probe application's id starts with; the hub's own ids never do.
pub const PROBE_PREFIX: &str = "TEST-";

/// Messages a probe keeps at most before the system is told to wait.
const INBOX_CAPACITY: usize = 256;

/// A message as one listener's mapping read it.
type Reading = Result<Value, Vec<MapError>>;

/// One message a probe received.
#[derive(Debug, Clone)]
pub struct ProbeMessage {
    pub kind: MessageKind,
    pub arrived_ms: i64,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum Content {
    /// About one of the probe's applications, in canonical form.
    Mapped(Value),
    /// Did not map; each error (they never quote a value, and are masked all the same).
    Unmapped(Vec<String>),
}

struct Listener {
    token: u64,
    prefix: String,
    config: Arc<Config>,
    sender: mpsc::Sender<ProbeMessage>,
}

/// The probes listening now, by system (an onboarding request's and a scheduled simulation's
/// may listen to one system at once, each for its own applications).
#[derive(Clone, Default)]
pub struct ProbeInbox {
    listeners: Arc<Mutex<HashMap<String, Vec<Listener>>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

/// A probe listening; it stops when this is dropped.
pub struct Listening {
    inbox: ProbeInbox,
    system: String,
    token: u64,
    pub messages: mpsc::Receiver<ProbeMessage>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut listeners = self.inbox.lock();
        if let Some(of_system) = listeners.get_mut(&self.system) {
            of_system.retain(|l| l.token != self.token);
            if of_system.is_empty() {
                listeners.remove(&self.system);
            }
        }
    }
}

impl ProbeInbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Listener>>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens for `system`'s messages about applications whose id starts with `prefix`,
    /// reading them with `config` (which has the system's adapter).
    pub fn listen(&self, system: &str, prefix: &str, config: Arc<Config>) -> Listening {
        let (sender, messages) = mpsc::channel(INBOX_CAPACITY);
        let token = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock()
            .entry(system.to_string())
            .or_default()
            .push(Listener {
                token,
                prefix: prefix.to_string(),
                config,
                sender,
            });
        Listening {
            inbox: self.clone(),
            system: system.to_string(),
            token,
            messages,
        }
    }

    /// Offers a message `system` sent to the probe listening for it, if any. `connected` says
    /// whether the running configuration has the system: if not, the probe takes (or refuses)
    /// everything; if so, only what is about its applications. `None`: not the probe's.
    pub fn offer(
        &self,
        system: &str,
        kind: MessageKind,
        body: &[u8],
        connected: bool,
    ) -> Option<Result<Received, InboundError>> {
        let listening: Vec<(String, Arc<Config>, mpsc::Sender<ProbeMessage>)> = self
            .lock()
            .get(system)?
            .iter()
            .map(|l| (l.prefix.clone(), l.config.clone(), l.sender.clone()))
            .collect();
        let arrived_ms = crate::clock::now_millis();
        let send = |sender: &mpsc::Sender<ProbeMessage>, content: Content| match sender.try_send(
            ProbeMessage {
                kind,
                arrived_ms,
                content,
            },
        ) {
            Ok(()) => Ok(Received::New),
            Err(_) => Err(InboundError::Refused(
                RefusalClass::Probe,
                vec![
                    "the probe has more messages waiting than it reads; send it again shortly"
                        .into(),
                ],
            )),
        };
        // The first listener's reading stands for the system's when no probe takes the message
        // (a system not connected has one: its onboarding request's).
        let mut first: Option<(Reading, &mpsc::Sender<ProbeMessage>)> = None;
        for (prefix, config, sender) in &listening {
            let Some(adapter) = config.adapters.get(system) else {
                continue;
            };
            let name = match kind {
                MessageKind::CaseEvent => Some(&adapter.inbound.case_event_mapping),
                MessageKind::Result => adapter.inbound.result_mapping.as_ref(),
            };
            let Some(mapping) = name.and_then(|n| config.mappings.get(n)) else {
                continue;
            };
            let read = mapping.to_canonical(body);
            if let Ok(canonical) = &read
                && canonical
                    .get("application_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with(prefix.as_str()))
            {
                return Some(send(sender, Content::Mapped(canonical.clone())));
            }
            if first.is_none() {
                first = Some((read, sender));
            }
        }
        if connected {
            return None;
        }
        Some(match first {
            None => Err(InboundError::NoResults(system.to_string())),
            Some((Err(errors), sender)) => send(sender, Content::Unmapped(masked(&errors)))
                .and(Err(InboundError::Mapping(errors))),
            Some((Ok(_), _)) => Err(InboundError::Refused(
                RefusalClass::Probe,
                vec![format!(
                    "system `{system}` is not connected yet: only the messages about its probe \
                     applications ({PROBE_PREFIX}…) are taken"
                )],
            )),
        })
    }
}

/// Whether a mapped message is about a probe application (which only a probe takes).
pub fn about_probe(canonical: &Value) -> bool {
    canonical
        .get("application_id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.starts_with(PROBE_PREFIX))
}

/// `MapError`s as the probe keeps them.
pub fn masked(errors: &[MapError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| crate::personal::mask_text(&e.to_string()))
        .collect()
}
