//! Case events and results coming back from department systems, however they arrive (webhook,
//! queue, polling): mapped from the system's own format, checked against the application they
//! concern, deduplicated by (system, the system's own id), and stored.

use crate::config::Config;
use crate::mapping::MapError;
use crate::store::group::{GroupCommit, GroupError};
use crate::store::{EventToRecord, Store, StoreError};
use serde_json::Value;

/// Whether a message was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    New,
    /// The system sent this one before; nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("no connected system `{0}`")]
    UnknownSystem(String),
    #[error("system `{0}` publishes no results")]
    NoResults(String),
    #[error("the message does not map to a canonical one")]
    Mapping(Vec<MapError>),
    /// The message maps, but the hub will not take it; the reason says why.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event could not be committed; like [`InboundError::Store`], worth trying again.
    #[error(transparent)]
    Unrecorded(#[from] GroupError),
}

/// Case events recorded together: events arriving while a commit is in flight share the next
/// one (see [`crate::store::group`]), each caller answered once its event is durable.
pub type EventRecorder = GroupCommit<EventToRecord, bool>;

/// Events recorded together at most.
const EVENT_BATCH: usize = 128;

/// Starts a recorder for case events on the current tokio runtime.
pub fn event_recorder(store: Store) -> EventRecorder {
    GroupCommit::spawn("case event", EVENT_BATCH, EVENT_BATCH * 8, move |events| {
        let store = store.clone();
        async move {
            let result = store.record_events(&events).await;
            (events, result)
        }
    })
}

/// Which kind of message a system sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CaseEvent,
    Result,
}

/// Receives one message of `kind` from `system`, in the system's own format.
pub async fn receive(
    config: &Config,
    store: &Store,
    events: &EventRecorder,
    system: &str,
    kind: Kind,
    body: &[u8],
) -> Result<Received, InboundError> {
    let adapter = config
        .adapters
        .get(system)
        .ok_or_else(|| InboundError::UnknownSystem(system.to_string()))?;
    let mapping_name = match kind {
        Kind::CaseEvent => &adapter.inbound.case_event_mapping,
        Kind::Result => adapter
            .inbound
            .result_mapping
            .as_ref()
            .ok_or_else(|| InboundError::NoResults(system.to_string()))?,
    };
    let mapping = config
        .mappings
        .get(mapping_name)
        .ok_or_else(|| InboundError::Refused(format!("mapping `{mapping_name}` is not loaded")))?;
    let canonical = mapping.to_canonical(body).map_err(InboundError::Mapping)?;
    let text = |pointer: &str| {
        canonical
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };

    if text("/system") != system {
        return Err(InboundError::Refused(format!(
            "the message says it comes from system `{}`, but it was received for `{system}`",
            text("/system")
        )));
    }
    let application_id = text("/application_id");
    let application = store.application(application_id).await?.ok_or_else(|| {
        InboundError::Refused("no application with this id was routed through the hub".into())
    })?;
    if application.system_id != system {
        return Err(InboundError::Refused(
            "the application was routed to another system".into(),
        ));
    }
    if !adapter
        .items
        .iter()
        .any(|c| c.code == application.item_code)
    {
        return Err(InboundError::Refused(
            "the application's item is not one this system handles".into(),
        ));
    }
    let body = canonical.to_string();
    let new = match kind {
        Kind::CaseEvent => {
            let node = text("/node/name");
            events
                .write(EventToRecord {
                    system_id: system.to_owned(),
                    event_id: text("/event_id").to_owned(),
                    application_id: application_id.to_owned(),
                    node_name: node.to_owned(),
                    occurred_at: text("/occurred_at").to_owned(),
                    body,
                    state: if node == "办结" {
                        "completed"
                    } else {
                        "in_progress"
                    }
                    .to_owned(),
                })
                .await?
        }
        Kind::Result => {
            store
                .record_result(system, text("/license/id"), application_id, &body)
                .await?
        }
    };
    Ok(if new {
        Received::New
    } else {
        Received::Duplicate
    })
}
