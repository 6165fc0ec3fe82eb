//! Where a case stands, the e-supervision rules and how serious their alerts are, and what
//! happens to an alert: the code lists the supervision engine, the store, the feed and the API
//! share.

code_list! {
    /// Where a case stands.
    pub enum CaseState ("case state") {
        Submitted = "submitted",
        Accepted = "accepted",
        UnderReview = "under_review",
        Decided = "decided",
        Delivered = "delivered",
        /// In a special procedure or awaiting a supplement: the clock is stopped.
        Suspended = "suspended",
        Completed = "completed",
        Refused = "refused",
    }
}

impl CaseState {
    /// Completed and Refused are closed; nothing runs on them.
    pub fn is_closed(self) -> bool {
        matches!(self, CaseState::Completed | CaseState::Refused)
    }
}

code_list! {
    /// How serious an alert is: 预警 < 黄牌 < 红牌.
    pub enum Level ("alert level") {
        Warning = "warning",
        Yellow = "yellow",
        Red = "red",
    }
}

impl Level {
    /// 预警, 黄牌, 红牌.
    pub fn label(self) -> &'static str {
        match self {
            Level::Warning => "预警",
            Level::Yellow => "黄牌",
            Level::Red => "红牌",
        }
    }
}

code_list! {
    /// An e-supervision rule, by its stable id (in the store, the feed and routing keys).
    pub enum Rule ("supervision rule") {
        TimeLimit = "time_limit",
        StepOverdue = "step_overdue",
        OutOfOrder = "out_of_order",
        AcceptanceRefused = "acceptance_refused",
        CompletionWithoutReason = "completion_without_reason",
        RepeatedSupplement = "repeated_supplement",
        ShareableMaterialRequested = "shareable_material_requested",
        SystemSilent = "system_silent",
        EventsRefused = "events_refused",
        ImplausibleTime = "implausible_time",
        DisputeOverdue = "dispute_overdue",
        ResultUnsettled = "result_unsettled",
    }
}

impl Rule {
    /// Whether the rule is about a system rather than a case.
    pub fn is_system_rule(self) -> bool {
        matches!(
            self,
            Rule::SystemSilent | Rule::EventsRefused | Rule::DisputeOverdue | Rule::ResultUnsettled
        )
    }
}

code_list! {
    /// What happens to an alert, as the feed's alert entries say it.
    pub enum AlertAction ("alert change") {
        Raise = "raised",
        Escalate = "escalated",
        Resolve = "resolved",
    }
}
