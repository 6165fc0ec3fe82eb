//! Where a delivery stands, and what one attempt at it came to.

code_list! {
    /// Where a delivery stands: waiting for its next attempt, delivered, or a dead letter.
    pub enum DeliveryState ("delivery state") {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
    }
}

code_list! {
    /// What one delivery attempt came to.
    pub enum AttemptKind ("attempt outcome") {
        Delivered = "delivered",
        Retry = "retry",
        Dead = "dead",
    }
}

/// A department system's own answer to a delivery, as its adapter's `response_mapping` reads
/// it (`schemas/acknowledgement.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Acknowledgement {
    pub accepted: bool,
    pub code: Option<String>,
    pub reason: Option<String>,
    /// A refusal worth asking again about later; a refusal without it is final.
    #[serde(default)]
    pub retry: bool,
}
