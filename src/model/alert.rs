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

code_list! {
    /// Where an alert's follow-up (督办) stands: a supervisor acknowledges it, assigns it to the
    /// department with a due date, the department answers or appeals (申诉), the supervisor
    /// closes it with a note (or sends an answer or appeal back, assigning it again).
    pub enum FollowUpState ("follow-up state") {
        Acknowledged = "acknowledged",
        Assigned = "assigned",
        Answered = "answered",
        Appealed = "appealed",
        Closed = "closed",
    }
}

code_list! {
    /// A step of an alert's follow-up, by who takes it: supervisors acknowledge, assign and
    /// close; the department answers or appeals.
    pub enum FollowUpAction ("follow-up action") {
        Acknowledge = "acknowledge",
        Assign = "assign",
        Answer = "answer",
        Appeal = "appeal",
        Close = "close",
    }
}

impl FollowUpAction {
    /// The state this step leaves a follow-up in.
    pub fn result(self) -> FollowUpState {
        match self {
            FollowUpAction::Acknowledge => FollowUpState::Acknowledged,
            FollowUpAction::Assign => FollowUpState::Assigned,
            FollowUpAction::Answer => FollowUpState::Answered,
            FollowUpAction::Appeal => FollowUpState::Appealed,
            FollowUpAction::Close => FollowUpState::Closed,
        }
    }

    /// The states (`None`: not followed up yet) this step may be taken from.
    pub fn from(self) -> &'static [Option<FollowUpState>] {
        use FollowUpState::*;
        match self {
            FollowUpAction::Acknowledge => &[None],
            // An answer or appeal the supervisor does not accept goes back to the department.
            FollowUpAction::Assign => &[None, Some(Acknowledged), Some(Answered), Some(Appealed)],
            FollowUpAction::Answer | FollowUpAction::Appeal => &[Some(Assigned)],
            FollowUpAction::Close => &[
                Some(Acknowledged),
                Some(Assigned),
                Some(Answered),
                Some(Appealed),
            ],
        }
    }

    /// Whether the department takes this step (else a supervisor does).
    pub fn by_department(self) -> bool {
        matches!(self, FollowUpAction::Answer | FollowUpAction::Appeal)
    }
}
