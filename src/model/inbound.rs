//! What a department system sends the hub, and how it reached it; what the supervision feed
//! holds.

code_list! {
    /// What a system's message is: a case event or a result.
    pub enum MessageKind ("kind of message") {
        CaseEvent = "event",
        Result = "result",
    }
}

code_list! {
    /// How a system's message reached the hub.
    pub enum Via ("way in") {
        /// Posted to `/api/v1/systems/{id}/events` or `/results`.
        Webhook = "webhook",
        /// Fetched from the system's feed by the poller.
        Poll = "poll",
        /// Consumed from the system's AMQP queue.
        Queue = "queue",
    }
}

code_list! {
    /// What a supervision feed entry is about: a stored case event, an alert's change, a
    /// result's (stored, superseding another, settled by its completion, revoked), a
    /// dispute's (opened, taken up, resolved), an onboarding request's (refused, probed,
    /// rejected, live), a change of a system's status on one of the four integrations, or a
    /// step of an alert's follow-up (督办).
    pub enum FeedKind ("kind of feed entry") {
        Event = "event",
        Alert = "alert",
        Result = "result",
        Dispute = "dispute",
        Onboarding = "onboarding",
        Integration = "integration",
        FollowUp = "follow_up",
    }
}
