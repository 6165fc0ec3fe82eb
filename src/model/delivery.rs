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
