//! The case (办件): an application's state as its department system's case events move it, with
//! the clock-stopping intervals, supplement requests, acceptance and completion the rules need.
//!
//! A [`Case`] starts when the hub accepts the application (`Submitted`) and follows its canonical
//! case events (`schemas/case-event.schema.json`) one at a time through [`Case::apply`]. Each
//! event is classified by its step (`node.name`) and result (`node.result`). An event that does
//! not fit the case so far is still kept in the history, flagged with an [`OutOfOrder`] reason;
//! whether it also moves the case depends on whether its meaning is still clear (a decision
//! reported before the acceptance did happen, a second acceptance did not).
//!
//! # States
//!
//! `Submitted → Accepted → UnderReview → Decided → Delivered → Completed`, with `Refused` as the
//! other way out, and `Suspended` while a special procedure (特别程序) runs or a supplement (补齐补正)
//! is awaited: the clock stops then, and the case returns to the stage it had reached when the
//! suspension ends. Stages only move forward, except through 退回 (returned). `Completed` and
//! `Refused` are closed.
//!
//! | event (step · result) | from | to, and what is recorded | effect | flagged, still applied | flagged, ignored |
//! |---|---|---|---|---|---|
//! | 受理 · 4 (or 1 on a single step) | Submitted (or a later stage reached by steps reported first, which it keeps) | Accepted; acceptance time | `Accepted` | | `SecondAcceptance` once accepted |
//! | 受理 · 2 不受理, 3 不予受理 | Submitted | Refused (closed); refusal, with or without an opinion | `Refused` | | `RefusalAfterAcceptance` past Submitted |
//! | any step but 办结 · 5 | any open stage | Suspended (a supplement interval opens unless one is open); the request and its materials counted | `SupplementRequested` | `SupplementAfterDecision` from Decided or Delivered; `MissingDetail` without `supplement` | |
//! | any step but 办结 · 6, no `ended_at` | any open stage | Suspended from `started_at` (unless that kind is already open) | `SpecialProcedureStarted` | | `MissingDetail` without `special_procedure` |
//! | any step but 办结 · 6, with `ended_at` | any open stage | the open procedure of that kind ends at `ended_at`, or the whole interval is recorded | `SpecialProcedureEnded` | | `EndsBeforeStart` |
//! | 补正 · 0, 1, 4 | Suspended (supplement) | the stage reached; open supplements (and special procedures of kind 1 or 6, both 补正) end | `Resumed` | | `ResumeWithoutSuspension` |
//! | 特别程序 · 0, 1, 4 | Suspended (special procedure) | the stage reached; that kind (or every open procedure) ends at `ended_at` or the event's time | `Resumed` | | `ResumeWithoutSuspension` |
//! | 审查 · 0, 1 | Accepted, UnderReview | UnderReview | `Reviewed` | `BeforeAcceptance` | `Behind` from Decided or Delivered |
//! | 决定 · 0, 1 | UnderReview, Decided | Decided | `Decided` | `BeforeAcceptance`; `Skipped` without a 审查 | `Behind` from Delivered |
//! | 送达 · 0, 1 | Decided, Delivered | Delivered | `Delivered` | `BeforeAcceptance`; `Skipped` without a 决定 | |
//! | 审查, 决定, 送达 · 7 退回 | any open stage | back to the stage that step starts from (Accepted, UnderReview, Decided), never forward; its step clock restarts | `Returned` | `BeforeAcceptance` | |
//! | 办结 · 0, 1 | any open stage, Refused | Completed (closed); completion result, with or without a reason | `Completed` | `BeforeAcceptance` for results 0 and 6; `MissingDetail` without `completion` | |
//! | anything | Completed | unchanged | `Ignored` | | `AfterCompletion` |
//! | anything but 办结 | Refused | unchanged | `Ignored` | | `AfterRefusal` |
//! | a result its node type does not allow (start {4,5,6}, middle {0,1,5,6,7}, end {0,1}, single {1,2,3,4}) | any | unchanged | `Ignored` | | `ResultNotAllowed` |
//! | a result its step does not take (e.g. 审查 · 4, 受理 · 7, 办结 · 2) | any | unchanged | `Ignored` | | `ResultNotForStep` |
//! | an event id seen before | any | unchanged, not recorded again | `Duplicate` | | |
//!
//! Every applied 受理, refusal, 审查, 决定, 送达, 退回 and 办结 also ends any open suspension at
//! its time: the work went on, so the clock runs again. An applied event that carries no other
//! flag but happened before the latest event already recorded is flagged `EarlierThanPrevious`.
//!
//! # Facts, whenever they arrive
//!
//! [`Case::from_events`] judges a case on its facts: it takes the events as they arrived and
//! applies them in the order they *happened* (arrival order among equal times), so a department
//! that reports late, or in batches, or 补正 after 办结, is judged on what it did and when. How
//! it reported is judged too: an event that happened before one the hub had already received is
//! flagged `EarlierThanPrevious` ("happened before an earlier report") when nothing else is wrong
//! with it. Each step also keeps when the hub received it, so that record rules count their hold
//! from when the hub could know the fact ([`Case::noted_at`]).
//!
//! The open step (for per-step limits) is the one the stage waits for: Submitted → 受理,
//! Accepted → 审查, UnderReview → 决定, Decided → 送达, Delivered → 办结, counted from the event
//! that reached the stage (or the submission).
//!
//! A case keeps nothing personal: handler details are not read, and of opinions and reasons it
//! keeps only whether they were given.

use crate::model::{
    CaseEvent, CaseState, CompletionResult, NodeName, NodeResult, NodeType, SpecialKind,
};
use serde::Serialize;
use std::fmt;

fn given(text: Option<&str>) -> bool {
    text.is_some_and(|t| !t.trim().is_empty())
}

/// What an event did to its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Accepted,
    Refused,
    Reviewed,
    Decided,
    Delivered,
    Returned,
    Completed,
    SupplementRequested,
    SpecialProcedureStarted(SpecialKind),
    SpecialProcedureEnded(SpecialKind),
    Resumed,
    /// Flagged and not applied: the case is as it was.
    Ignored,
    /// The event id was seen before; not recorded again.
    Duplicate,
}

/// Why an event does not fit its case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum OutOfOrder {
    /// Any event after 办结.
    AfterCompletion,
    /// Any event but 办结 after a refusal.
    AfterRefusal,
    /// 受理 on a case already accepted.
    SecondAcceptance,
    /// 不受理 / 不予受理 on a case already past submission.
    RefusalAfterAcceptance,
    /// A step that needs 受理 first (审查, 决定, 送达, 退回, 办结 with result 0 or 6).
    BeforeAcceptance { step: NodeName },
    /// A step whose predecessor never came (决定 without 审查, 送达 without 决定).
    Skipped { step: NodeName, missing: NodeName },
    /// A step the case has already gone past (审查 after 决定).
    Behind { step: NodeName, stage: CaseState },
    /// A result the node type does not allow.
    ResultNotAllowed {
        node_type: NodeType,
        result: NodeResult,
    },
    /// A result the step does not take.
    ResultNotForStep { step: NodeName, result: NodeResult },
    /// 补正 or 特别程序 ending a suspension that is not open.
    ResumeWithoutSuspension { step: NodeName },
    /// A supplement requested after the decision.
    SupplementAfterDecision,
    /// A special procedure that ends before it starts.
    EndsBeforeStart,
    /// The object the result requires (`supplement`, `special_procedure`, `completion`) is absent.
    MissingDetail { field: &'static str },
    /// The event happened before an event already recorded.
    EarlierThanPrevious,
}

impl OutOfOrder {
    /// A stable snake_case id.
    pub fn code(&self) -> &'static str {
        match self {
            OutOfOrder::AfterCompletion => "after_completion",
            OutOfOrder::AfterRefusal => "after_refusal",
            OutOfOrder::SecondAcceptance => "second_acceptance",
            OutOfOrder::RefusalAfterAcceptance => "refusal_after_acceptance",
            OutOfOrder::BeforeAcceptance { .. } => "before_acceptance",
            OutOfOrder::Skipped { .. } => "skipped",
            OutOfOrder::Behind { .. } => "behind",
            OutOfOrder::ResultNotAllowed { .. } => "result_not_allowed",
            OutOfOrder::ResultNotForStep { .. } => "result_not_for_step",
            OutOfOrder::ResumeWithoutSuspension { .. } => "resume_without_suspension",
            OutOfOrder::SupplementAfterDecision => "supplement_after_decision",
            OutOfOrder::EndsBeforeStart => "ends_before_start",
            OutOfOrder::MissingDetail { .. } => "missing_detail",
            OutOfOrder::EarlierThanPrevious => "earlier_than_previous",
        }
    }
}

impl fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutOfOrder::AfterCompletion => f.write_str("after 办结"),
            OutOfOrder::AfterRefusal => f.write_str("after the refusal"),
            OutOfOrder::SecondAcceptance => f.write_str("a second 受理"),
            OutOfOrder::RefusalAfterAcceptance => f.write_str("refusal after 受理"),
            OutOfOrder::BeforeAcceptance { step } => write!(f, "{step} before 受理"),
            OutOfOrder::Skipped { step, missing } => write!(f, "{step} without {missing}"),
            OutOfOrder::Behind { step, stage } => write!(f, "{step} when already {stage}"),
            OutOfOrder::ResultNotAllowed { node_type, result } => write!(
                f,
                "result {} not allowed on node type {}",
                result.as_str(),
                node_type.as_str()
            ),
            OutOfOrder::ResultNotForStep { step, result } => {
                write!(f, "result {} does not fit {step}", result.as_str())
            }
            OutOfOrder::ResumeWithoutSuspension { step } => {
                write!(f, "{step} ends a suspension that never started")
            }
            OutOfOrder::SupplementAfterDecision => f.write_str("补正 after 决定"),
            OutOfOrder::EndsBeforeStart => f.write_str("special procedure ends before it starts"),
            OutOfOrder::MissingDetail { field } => write!(f, "without {field}"),
            OutOfOrder::EarlierThanPrevious => f.write_str("happened before an earlier report"),
        }
    }
}

/// What [`Case::apply`] made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub effect: Effect,
    pub before: CaseState,
    pub after: CaseState,
    /// Empty when the event fits.
    pub out_of_order: Vec<OutOfOrder>,
}

impl Applied {
    pub fn is_out_of_order(&self) -> bool {
        !self.out_of_order.is_empty()
    }
}

/// One recorded event of a case's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub event_id: String,
    pub node: NodeName,
    pub node_type: NodeType,
    pub result: NodeResult,
    pub occurred_at: i64,
    /// When the hub received it; its occurrence when not known.
    pub received_at: i64,
    pub effect: Effect,
    pub out_of_order: Vec<OutOfOrder>,
}

impl Step {
    /// When the hub could first know this fact: the later of its occurrence and its arrival.
    pub fn noted_at(&self) -> i64 {
        self.occurred_at.max(self.received_at)
    }
}

/// Why the clock stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Awaiting a supplement the case asked for (node result 5).
    Supplement,
    /// A special procedure (node result 6).
    Special(SpecialKind),
}

/// A stretch of time the clock stands still. `end` is `None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub cause: Cause,
    pub start: i64,
    pub end: Option<i64>,
    /// The event that started (or reported) it.
    pub event_id: String,
}

/// A request for supplements (补齐补正).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplementRequest {
    pub event_id: String,
    pub at: i64,
    /// Material ids as the catalog item gives them.
    pub materials: Vec<String>,
}

/// A refusal to accept (不受理 / 不予受理).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub event_id: String,
    pub at: i64,
    pub result: NodeResult,
    /// Whether the refusal gave its reasons (an opinion that is not blank).
    pub has_reason: bool,
}

/// How the case ended (办结).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRecord {
    pub event_id: String,
    pub at: i64,
    /// `None` when the event carried no `completion`.
    pub result: Option<CompletionResult>,
    pub has_reason: bool,
}

/// The step the case waits for, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenStep {
    pub step: NodeName,
    pub since: i64,
}

/// An application's case: its state and what the rules need of its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    application_id: String,
    system: String,
    item_code: String,
    submitted_at: i64,
    /// The stage reached; never `Suspended` (that comes from open suspensions).
    stage: CaseState,
    stage_since: i64,
    accepted_at: Option<i64>,
    reviewed: bool,
    refusal: Option<Refusal>,
    completion: Option<CompletionRecord>,
    suspensions: Vec<Suspension>,
    supplements: Vec<SupplementRequest>,
    history: Vec<Step>,
    latest: Option<i64>,
}

/// What an event means, from its step and result alone.
enum Kind {
    Accept,
    Refuse,
    Supplement,
    Special,
    Resume,
    Review,
    Decide,
    Deliver,
    Return,
    Complete,
}

fn classify(name: NodeName, result: NodeResult) -> Option<Kind> {
    use NodeName as N;
    use NodeResult as R;
    Some(match (name, result) {
        (N::Completion, R::Disagree | R::Agree) => Kind::Complete,
        (N::Completion, _) => return None,
        (_, R::SupplementRequested) => Kind::Supplement,
        (_, R::SpecialProcedure) => Kind::Special,
        (N::Acceptance, R::Accepted | R::Agree) => Kind::Accept,
        (N::Acceptance, R::NotAccepted | R::Rejected) => Kind::Refuse,
        (N::Supplement | N::SpecialProcedure, R::Disagree | R::Agree | R::Accepted) => Kind::Resume,
        (N::Review, R::Disagree | R::Agree) => Kind::Review,
        (N::Decision, R::Disagree | R::Agree) => Kind::Decide,
        (N::Delivery, R::Disagree | R::Agree) => Kind::Deliver,
        (N::Review | N::Decision | N::Delivery, R::Returned) => Kind::Return,
        _ => return None,
    })
}

impl Case {
    /// A case for an application the hub accepted at `submitted_at` (epoch ms).
    pub fn new(application_id: &str, system: &str, item_code: &str, submitted_at: i64) -> Case {
        Case {
            application_id: application_id.to_owned(),
            system: system.to_owned(),
            item_code: item_code.to_owned(),
            submitted_at,
            stage: CaseState::Submitted,
            stage_since: submitted_at,
            accepted_at: None,
            reviewed: false,
            refusal: None,
            completion: None,
            suspensions: Vec::new(),
            supplements: Vec::new(),
            history: Vec::new(),
            latest: None,
        }
    }

    /// A case rebuilt from its events, given in the order they arrived: they are applied in
    /// the order they happened (arrival order among equal times), and each that happened before
    /// one received earlier (not in the same batch) is flagged `EarlierThanPrevious` unless
    /// something else is wrong with it (see the module documentation).
    pub fn from_events<'a>(
        application_id: &str,
        system: &str,
        item_code: &str,
        submitted_at: i64,
        events: impl IntoIterator<Item = &'a CaseEvent>,
    ) -> Case {
        let arrived: Vec<&CaseEvent> = events.into_iter().collect();
        // Events that arrived at the same moment (one batch) came together: their order among
        // themselves says nothing about how the system reported. Without arrival times, each
        // event is its own moment.
        let moment = |i: usize| arrived[i].received_at.map_or((i, 0), |at| (0, at));
        let mut reported_late = vec![false; arrived.len()];
        let mut latest_before: Option<i64> = None;
        let mut start = 0;
        while start < arrived.len() {
            let end = (start..arrived.len())
                .find(|&j| moment(j) != moment(start))
                .unwrap_or(arrived.len());
            for i in start..end {
                reported_late[i] = latest_before.is_some_and(|l| arrived[i].occurred_at < l);
            }
            for event in &arrived[start..end] {
                latest_before =
                    Some(latest_before.map_or(event.occurred_at, |l| l.max(event.occurred_at)));
            }
            start = end;
        }
        let mut order: Vec<usize> = (0..arrived.len()).collect();
        order.sort_by_key(|&i| arrived[i].occurred_at);
        let mut case = Case::new(application_id, system, item_code, submitted_at);
        for i in order {
            case.apply_reported(arrived[i], reported_late[i]);
        }
        case
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    pub fn item_code(&self) -> &str {
        &self.item_code
    }

    /// When the hub accepted the application.
    pub fn submitted_at(&self) -> i64 {
        self.submitted_at
    }

    /// The state now: `Suspended` while a suspension is open on an open case.
    pub fn state(&self) -> CaseState {
        if !self.stage.is_closed() && self.is_suspended() {
            CaseState::Suspended
        } else {
            self.stage
        }
    }

    /// The stage reached, suspended or not (never `Suspended`).
    pub fn stage(&self) -> CaseState {
        self.stage
    }

    pub fn is_open(&self) -> bool {
        !self.stage.is_closed()
    }

    pub fn is_suspended(&self) -> bool {
        self.suspensions.iter().any(|s| s.end.is_none())
    }

    /// When the department accepted (受理) the case; the promised and statutory clocks start here.
    pub fn accepted_at(&self) -> Option<i64> {
        self.accepted_at
    }

    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    pub fn completion(&self) -> Option<&CompletionRecord> {
        self.completion.as_ref()
    }

    pub fn completed_at(&self) -> Option<i64> {
        self.completion.as_ref().map(|c| c.at)
    }

    /// When the case closed: its completion, else its refusal.
    pub fn closed_at(&self) -> Option<i64> {
        self.completed_at()
            .or_else(|| self.refusal.as_ref().map(|r| r.at))
    }

    /// Every suspension, closed and open, in the order they were recorded.
    pub fn suspensions(&self) -> &[Suspension] {
        &self.suspensions
    }

    /// The stopped stretches as sorted, non-overlapping `(start, end)` pairs; one still open
    /// counts up to `now_ms`.
    pub fn suspended_intervals(&self, now_ms: i64) -> Vec<(i64, i64)> {
        let mut spans: Vec<(i64, i64)> = self
            .suspensions
            .iter()
            .map(|s| (s.start, s.end.unwrap_or(now_ms).max(s.start)))
            .filter(|(s, e)| e > s)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    pub fn supplement_requests(&self) -> &[SupplementRequest] {
        &self.supplements
    }

    /// Every event recorded, flagged ones included, in the order applied (the order they
    /// happened, when the case was rebuilt by [`Case::from_events`]).
    pub fn history(&self) -> &[Step] {
        &self.history
    }

    /// When the hub could first know of event `event_id`: the later of its occurrence and its
    /// arrival. `None` for an event the case has not recorded.
    pub fn noted_at(&self, event_id: &str) -> Option<i64> {
        self.history
            .iter()
            .find(|s| s.event_id == event_id)
            .map(Step::noted_at)
    }

    /// When the hub could first know the case was closed: the closing event's
    /// [`Case::noted_at`].
    pub fn closure_noted_at(&self) -> Option<i64> {
        let event = match (&self.completion, &self.refusal) {
            (Some(done), _) => &done.event_id,
            (None, Some(refused)) => &refused.event_id,
            (None, None) => return None,
        };
        self.noted_at(event).or(self.closed_at())
    }

    /// The step the case waits for, while it is open.
    pub fn open_step(&self) -> Option<OpenStep> {
        let step = match self.stage {
            CaseState::Submitted => NodeName::Acceptance,
            CaseState::Accepted => NodeName::Review,
            CaseState::UnderReview => NodeName::Decision,
            CaseState::Decided => NodeName::Delivery,
            CaseState::Delivered => NodeName::Completion,
            CaseState::Suspended | CaseState::Completed | CaseState::Refused => return None,
        };
        Some(OpenStep {
            step,
            since: self.stage_since,
        })
    }

    /// Applies one event, after those applied so far, and says what it meant.
    pub fn apply(&mut self, event: &CaseEvent) -> Applied {
        self.apply_reported(event, false)
    }

    /// [`Case::apply`], where `reported_late` says the event happened before one the hub had
    /// received earlier, whatever the order of application.
    fn apply_reported(&mut self, event: &CaseEvent, reported_late: bool) -> Applied {
        let before = self.state();
        if self.history.iter().any(|s| s.event_id == event.event_id) {
            return Applied {
                effect: Effect::Duplicate,
                before,
                after: before,
                out_of_order: Vec::new(),
            };
        }
        let earlier = reported_late || self.latest.is_some_and(|l| event.occurred_at < l);
        let mut flags = Vec::new();
        let effect = self.transition(event, &mut flags);
        if effect != Effect::Ignored && flags.is_empty() && earlier {
            flags.push(OutOfOrder::EarlierThanPrevious);
        }
        self.latest = Some(
            self.latest
                .map_or(event.occurred_at, |l| l.max(event.occurred_at)),
        );
        self.history.push(Step {
            event_id: event.event_id.clone(),
            node: event.node.name,
            node_type: event.node.node_type,
            result: event.node.result,
            occurred_at: event.occurred_at,
            received_at: event.received_at.unwrap_or(event.occurred_at),
            effect,
            out_of_order: flags.clone(),
        });
        Applied {
            effect,
            before,
            after: self.state(),
            out_of_order: flags,
        }
    }

    fn transition(&mut self, event: &CaseEvent, flags: &mut Vec<OutOfOrder>) -> Effect {
        let node = event.node;
        let t = event.occurred_at;
        if self.stage == CaseState::Completed {
            flags.push(OutOfOrder::AfterCompletion);
            return Effect::Ignored;
        }
        if self.stage == CaseState::Refused && node.name != NodeName::Completion {
            flags.push(OutOfOrder::AfterRefusal);
            return Effect::Ignored;
        }
        if !node.node_type.allows(node.result) {
            flags.push(OutOfOrder::ResultNotAllowed {
                node_type: node.node_type,
                result: node.result,
            });
            return Effect::Ignored;
        }
        let Some(kind) = classify(node.name, node.result) else {
            flags.push(OutOfOrder::ResultNotForStep {
                step: node.name,
                result: node.result,
            });
            return Effect::Ignored;
        };
        match kind {
            Kind::Accept => {
                if self.accepted_at.is_some() {
                    flags.push(OutOfOrder::SecondAcceptance);
                    return Effect::Ignored;
                }
                self.accepted_at = Some(t);
                self.advance(CaseState::Accepted, t);
                Effect::Accepted
            }
            Kind::Refuse => {
                if self.accepted_at.is_some() || self.stage != CaseState::Submitted {
                    flags.push(OutOfOrder::RefusalAfterAcceptance);
                    return Effect::Ignored;
                }
                self.end_all(t);
                self.refusal = Some(Refusal {
                    event_id: event.event_id.clone(),
                    at: t,
                    result: node.result,
                    has_reason: given(event.opinion.as_deref()),
                });
                self.stage = CaseState::Refused;
                self.stage_since = t;
                Effect::Refused
            }
            Kind::Supplement => {
                if matches!(self.stage, CaseState::Decided | CaseState::Delivered) {
                    flags.push(OutOfOrder::SupplementAfterDecision);
                }
                if event.supplement.is_none() {
                    flags.push(OutOfOrder::MissingDetail {
                        field: "supplement",
                    });
                }
                self.supplements.push(SupplementRequest {
                    event_id: event.event_id.clone(),
                    at: t,
                    materials: event
                        .supplement
                        .as_ref()
                        .map(|s| s.materials.clone())
                        .unwrap_or_default(),
                });
                if !self.open_of(|c| c == Cause::Supplement) {
                    self.suspensions.push(Suspension {
                        cause: Cause::Supplement,
                        start: t,
                        end: None,
                        event_id: event.event_id.clone(),
                    });
                }
                Effect::SupplementRequested
            }
            Kind::Special => {
                let Some(sp) = &event.special_procedure else {
                    flags.push(OutOfOrder::MissingDetail {
                        field: "special_procedure",
                    });
                    return Effect::Ignored;
                };
                let cause = Cause::Special(sp.kind);
                match sp.ended_at {
                    Some(end) if end < sp.started_at => {
                        flags.push(OutOfOrder::EndsBeforeStart);
                        Effect::Ignored
                    }
                    Some(end) => {
                        if !self.end_where(|c| c == cause, end) {
                            self.suspensions.push(Suspension {
                                cause,
                                start: sp.started_at,
                                end: Some(end),
                                event_id: event.event_id.clone(),
                            });
                        }
                        Effect::SpecialProcedureEnded(sp.kind)
                    }
                    None => {
                        if !self.open_of(|c| c == cause) {
                            self.suspensions.push(Suspension {
                                cause,
                                start: sp.started_at,
                                end: None,
                                event_id: event.event_id.clone(),
                            });
                        }
                        Effect::SpecialProcedureStarted(sp.kind)
                    }
                }
            }
            Kind::Resume => {
                let ended = if node.name == NodeName::Supplement {
                    self.end_where(
                        |c| {
                            matches!(
                                c,
                                Cause::Supplement
                                    | Cause::Special(
                                        SpecialKind::Supplement | SpecialKind::PreReviewSupplement
                                    )
                            )
                        },
                        t,
                    )
                } else {
                    let end = event
                        .special_procedure
                        .as_ref()
                        .and_then(|sp| sp.ended_at)
                        .unwrap_or(t);
                    match event.special_procedure.as_ref().map(|sp| sp.kind) {
                        Some(kind) => self.end_where(|c| c == Cause::Special(kind), end),
                        None => self.end_where(|c| matches!(c, Cause::Special(_)), end),
                    }
                };
                if !ended {
                    flags.push(OutOfOrder::ResumeWithoutSuspension { step: node.name });
                    return Effect::Ignored;
                }
                Effect::Resumed
            }
            Kind::Review => {
                if self.accepted_at.is_none() {
                    flags.push(OutOfOrder::BeforeAcceptance { step: node.name });
                }
                if matches!(self.stage, CaseState::Decided | CaseState::Delivered) {
                    flags.push(OutOfOrder::Behind {
                        step: node.name,
                        stage: self.stage,
                    });
                    return Effect::Ignored;
                }
                self.reviewed = true;
                self.advance(CaseState::UnderReview, t);
                Effect::Reviewed
            }
            Kind::Decide => {
                if self.accepted_at.is_none() {
                    flags.push(OutOfOrder::BeforeAcceptance { step: node.name });
                } else if !self.reviewed {
                    flags.push(OutOfOrder::Skipped {
                        step: node.name,
                        missing: NodeName::Review,
                    });
                }
                if self.stage == CaseState::Delivered {
                    flags.push(OutOfOrder::Behind {
                        step: node.name,
                        stage: self.stage,
                    });
                    return Effect::Ignored;
                }
                self.advance(CaseState::Decided, t);
                Effect::Decided
            }
            Kind::Deliver => {
                if self.accepted_at.is_none() {
                    flags.push(OutOfOrder::BeforeAcceptance { step: node.name });
                } else if self.stage < CaseState::Decided {
                    flags.push(OutOfOrder::Skipped {
                        step: node.name,
                        missing: NodeName::Decision,
                    });
                }
                self.advance(CaseState::Delivered, t);
                Effect::Delivered
            }
            Kind::Return => {
                if self.accepted_at.is_none() {
                    flags.push(OutOfOrder::BeforeAcceptance { step: node.name });
                }
                let back_to = match node.name {
                    NodeName::Review => CaseState::Accepted,
                    NodeName::Decision => CaseState::UnderReview,
                    _ => CaseState::Decided,
                };
                self.end_all(t);
                self.stage = self.stage.min(back_to);
                self.stage_since = t;
                Effect::Returned
            }
            Kind::Complete => {
                let completion = event.completion.as_ref();
                if completion.is_none() {
                    flags.push(OutOfOrder::MissingDetail {
                        field: "completion",
                    });
                }
                let granted = completion.is_some_and(|c| !c.result.requires_reason());
                if granted && self.accepted_at.is_none() && self.stage != CaseState::Refused {
                    flags.push(OutOfOrder::BeforeAcceptance { step: node.name });
                }
                self.end_all(t);
                self.completion = Some(CompletionRecord {
                    event_id: event.event_id.clone(),
                    at: t,
                    result: completion.map(|c| c.result),
                    has_reason: completion.is_some_and(|c| given(c.reason.as_deref())),
                });
                self.stage = CaseState::Completed;
                self.stage_since = t;
                Effect::Completed
            }
        }
    }

    /// Moves the stage forward (never back) and ends open suspensions.
    fn advance(&mut self, to: CaseState, t: i64) {
        self.end_all(t);
        if self.stage < to {
            self.stage = to;
            self.stage_since = t;
        }
    }

    fn open_of(&self, cause: impl Fn(Cause) -> bool) -> bool {
        self.suspensions
            .iter()
            .any(|s| s.end.is_none() && cause(s.cause))
    }

    /// Ends the open suspensions whose cause matches; whether there was one.
    fn end_where(&mut self, cause: impl Fn(Cause) -> bool, t: i64) -> bool {
        let mut ended = false;
        for s in self
            .suspensions
            .iter_mut()
            .filter(|s| s.end.is_none() && cause(s.cause))
        {
            s.end = Some(t.max(s.start));
            ended = true;
        }
        ended
    }

    fn end_all(&mut self, t: i64) {
        self.end_where(|_| true, t);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Completion, parse_time};
    use serde_json::json;

    pub(crate) const HOUR: i64 = 3_600_000;
    pub(crate) const DAY: i64 = 24 * HOUR;

    /// 2026-11-20T09:00:00+08:00, the submission time of every test case.
    pub(crate) fn t0() -> i64 {
        parse_time("2026-11-20T09:00:00+08:00").unwrap()
    }

    pub(crate) fn case() -> Case {
        Case::new("TB-1", "sy-scjg-food", "ITEM", t0())
    }

    /// An event `id` at `t0 + hours`, step `name`, type and result codes.
    pub(crate) fn ev(id: &str, hours: i64, name: &str, ty: &str, result: &str) -> CaseEvent {
        let at = chrono::DateTime::from_timestamp_millis(t0() + hours * HOUR)
            .unwrap()
            .with_timezone(&crate::clock::cst())
            .to_rfc3339();
        let mut v = json!({
            "event_id": id, "application_id": "TB-1", "system": "sy-scjg-food",
            "node": {"name": name, "type": ty, "result": result},
            "handler": {"name": "王五"}, "opinion": "意见", "occurred_at": at,
        });
        match result {
            "5" => v["supplement"] = json!({"materials": ["premises_layout"], "reason": "缺"}),
            "6" => {
                v["special_procedure"] = json!({"kind": "4", "reason": "核查", "started_at": at})
            }
            _ => {}
        }
        if name == "办结" {
            v["completion"] = json!({"result": "0"});
        }
        CaseEvent::from_json(&v).unwrap()
    }

    pub(crate) fn accept(id: &str, hours: i64) -> CaseEvent {
        ev(id, hours, "受理", "1", "4")
    }

    fn run(case: &mut Case, events: &[CaseEvent]) -> Vec<Applied> {
        events.iter().map(|e| case.apply(e)).collect()
    }

    fn flags(a: &Applied) -> Vec<&'static str> {
        a.out_of_order.iter().map(|f| f.code()).collect()
    }

    #[test]
    fn the_example_case_runs_from_supplement_to_completion() {
        let events: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../examples/messages/case-events.json")).unwrap();
        let events: Vec<CaseEvent> = events
            .iter()
            .map(|v| CaseEvent::from_json(v).unwrap())
            .collect();
        let submitted = parse_time("2026-11-20T13:00:00+08:00").unwrap();
        let mut c = Case::new("TB-210102-20261120-000123", "sy-scjg-food", "X", submitted);
        let applied = run(&mut c, &events);
        let effects: Vec<Effect> = applied.iter().map(|a| a.effect).collect();
        assert_eq!(
            effects,
            vec![
                Effect::SupplementRequested,
                Effect::Accepted,
                Effect::Reviewed,
                Effect::SpecialProcedureEnded(SpecialKind::Verification),
                Effect::Decided,
                Effect::Completed,
            ]
        );
        let states: Vec<CaseState> = applied.iter().map(|a| a.after).collect();
        assert_eq!(
            states,
            vec![
                CaseState::Suspended,
                CaseState::Accepted,
                CaseState::UnderReview,
                CaseState::UnderReview,
                CaseState::Decided,
                CaseState::Completed,
            ]
        );
        assert!(applied.iter().all(|a| !a.is_out_of_order()));
        assert_eq!(c.accepted_at(), parse_time("2026-11-23T10:05:00+08:00"));
        assert_eq!(c.completed_at(), parse_time("2026-11-30T16:00:00+08:00"));
        let done = c.completion().unwrap();
        assert_eq!(done.result, Some(CompletionResult::Certificate));
        assert!(!done.has_reason);
        assert_eq!(c.supplement_requests().len(), 1);
        assert_eq!(
            c.supplement_requests()[0].materials,
            vec!["premises_layout"]
        );
        let p = |s| parse_time(s).unwrap();
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![
                (
                    p("2026-11-20T14:10:00+08:00"),
                    p("2026-11-23T10:05:00+08:00")
                ),
                (
                    p("2026-11-25T09:00:00+08:00"),
                    p("2026-11-26T17:00:00+08:00")
                ),
            ]
        );
        assert_eq!(c.history().len(), 6);
    }

    #[test]
    fn the_main_path_moves_forward_step_by_step() {
        let mut c = case();
        assert_eq!(c.state(), CaseState::Submitted);
        assert_eq!(
            c.open_step(),
            Some(OpenStep {
                step: NodeName::Acceptance,
                since: t0()
            })
        );
        let steps = [
            (
                accept("a", 1),
                Effect::Accepted,
                CaseState::Accepted,
                NodeName::Review,
            ),
            (
                ev("r", 2, "审查", "2", "1"),
                Effect::Reviewed,
                CaseState::UnderReview,
                NodeName::Decision,
            ),
            (
                ev("r2", 3, "审查", "2", "0"),
                Effect::Reviewed,
                CaseState::UnderReview,
                NodeName::Decision,
            ),
            (
                ev("d", 4, "决定", "2", "1"),
                Effect::Decided,
                CaseState::Decided,
                NodeName::Delivery,
            ),
            (
                ev("s", 5, "送达", "2", "1"),
                Effect::Delivered,
                CaseState::Delivered,
                NodeName::Completion,
            ),
        ];
        let mut since = t0();
        for (event, effect, state, open) in steps {
            let a = c.apply(&event);
            assert_eq!((a.effect, a.after), (effect, state), "{}", event.event_id);
            assert!(!a.is_out_of_order(), "{}", event.event_id);
            if event.event_id != "r2" {
                since = event.occurred_at;
            }
            assert_eq!(c.open_step(), Some(OpenStep { step: open, since }));
        }
        assert_eq!(c.accepted_at(), Some(t0() + HOUR));
        let a = c.apply(&ev("e", 6, "办结", "3", "1"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (
                Effect::Completed,
                CaseState::Delivered,
                CaseState::Completed
            )
        );
        assert!(!c.is_open());
        assert_eq!(c.open_step(), None);
        assert_eq!(c.closed_at(), Some(t0() + 6 * HOUR));
    }

    #[test]
    fn a_decision_may_be_taken_again_and_completion_may_follow_a_decision() {
        let mut c = case();
        run(
            &mut c,
            &[
                accept("a", 1),
                ev("r", 2, "审查", "2", "1"),
                ev("d", 3, "决定", "2", "0"),
            ],
        );
        let a = c.apply(&ev("d2", 4, "决定", "2", "1"));
        assert_eq!((a.effect, a.after), (Effect::Decided, CaseState::Decided));
        assert!(!a.is_out_of_order());
        let a = c.apply(&ev("e", 5, "办结", "3", "1"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::Completed, CaseState::Completed)
        );
        assert!(!a.is_out_of_order());
    }

    #[test]
    fn a_single_step_accepts_with_agree_and_an_immediate_case_completes_after_acceptance() {
        let mut c = case();
        let a = c.apply(&ev("a", 1, "受理", "4", "1"));
        assert_eq!((a.effect, a.after), (Effect::Accepted, CaseState::Accepted));
        let a = c.apply(&ev("e", 1, "办结", "4", "1"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::Completed, CaseState::Completed)
        );
        assert!(!a.is_out_of_order());
    }

    #[test]
    fn refusals_close_the_case_and_keep_whether_reasons_were_given() {
        for result in ["2", "3"] {
            let mut c = case();
            let a = c.apply(&ev("x", 1, "受理", "4", result));
            assert_eq!((a.effect, a.after), (Effect::Refused, CaseState::Refused));
            assert!(!a.is_out_of_order());
            let r = c.refusal().unwrap();
            assert!(r.has_reason);
            assert_eq!(r.at, t0() + HOUR);
            assert_eq!(c.closed_at(), Some(t0() + HOUR));
            assert_eq!(c.open_step(), None);
        }
        let mut c = case();
        let mut e = ev("x", 1, "受理", "4", "3");
        e.opinion = Some("  ".into());
        c.apply(&e);
        assert!(!c.refusal().unwrap().has_reason);
        e.opinion = None;
        let mut c = case();
        c.apply(&e);
        assert!(!c.refusal().unwrap().has_reason);
    }

    #[test]
    fn a_refused_case_may_still_report_its_completion() {
        let mut c = case();
        c.apply(&ev("x", 1, "受理", "4", "2"));
        let mut e = ev("e", 2, "办结", "3", "1");
        e.completion = Some(Completion {
            result: CompletionResult::Returned,
            reason: Some("不受理".into()),
        });
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.before, a.after),
            (Effect::Completed, CaseState::Refused, CaseState::Completed)
        );
        assert!(!a.is_out_of_order());
        assert!(c.refusal().is_some());
        let done = c.completion().unwrap();
        assert_eq!(done.result, Some(CompletionResult::Returned));
        assert!(done.has_reason);
    }

    #[test]
    fn a_supplement_suspends_and_the_next_step_or_a_resume_ends_it() {
        // Before acceptance: the acceptance ends it.
        let mut c = case();
        let a = c.apply(&ev("s", 1, "补正", "1", "5"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (
                Effect::SupplementRequested,
                CaseState::Submitted,
                CaseState::Suspended
            )
        );
        assert!(c.is_suspended());
        assert_eq!(
            c.suspended_intervals(t0() + 2 * HOUR),
            vec![(t0() + HOUR, t0() + 2 * HOUR)]
        );
        let a = c.apply(&accept("a", 5));
        assert_eq!(
            (a.before, a.after),
            (CaseState::Suspended, CaseState::Accepted)
        );
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![(t0() + HOUR, t0() + 5 * HOUR)]
        );

        // During review: an explicit 补正 resume ends it and the stage is kept.
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("r", 2, "审查", "2", "1")]);
        let a = c.apply(&ev("s", 3, "审查", "2", "5"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::SupplementRequested, CaseState::Suspended)
        );
        assert_eq!(c.stage(), CaseState::UnderReview);
        let a = c.apply(&ev("back", 7, "补正", "2", "1"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (
                Effect::Resumed,
                CaseState::Suspended,
                CaseState::UnderReview
            )
        );
        assert_eq!(c.suspensions()[0].end, Some(t0() + 7 * HOUR));
        assert_eq!(c.supplement_requests().len(), 1);
    }

    #[test]
    fn a_second_supplement_request_is_counted_without_a_second_interval() {
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("s1", 2, "补正", "2", "5")]);
        let mut e = ev("s2", 3, "补正", "2", "5");
        e.supplement.as_mut().unwrap().materials = vec!["business_license".into()];
        let a = c.apply(&e);
        assert_eq!(a.effect, Effect::SupplementRequested);
        assert!(!a.is_out_of_order());
        assert_eq!(c.supplement_requests().len(), 2);
        assert_eq!(
            c.supplement_requests()[1].materials,
            vec!["business_license"]
        );
        assert_eq!(c.suspensions().len(), 1);
    }

    #[test]
    fn special_procedures_open_end_and_report_whole_intervals() {
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("r", 2, "审查", "2", "1")]);
        let a = c.apply(&ev("h", 3, "特别程序", "2", "6"));
        assert_eq!(
            (a.effect, a.after),
            (
                Effect::SpecialProcedureStarted(SpecialKind::Verification),
                CaseState::Suspended
            )
        );
        // Reported again while it runs: no second interval.
        let a = c.apply(&ev("h2", 4, "特别程序", "2", "6"));
        assert_eq!(
            a.effect,
            Effect::SpecialProcedureStarted(SpecialKind::Verification)
        );
        assert_eq!(c.suspensions().len(), 1);
        // Its end, with ended_at, closes the open one at ended_at.
        let mut e = ev("h3", 10, "特别程序", "2", "6");
        let sp = e.special_procedure.as_mut().unwrap();
        sp.started_at = t0() + 3 * HOUR;
        sp.ended_at = Some(t0() + 9 * HOUR);
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.after),
            (
                Effect::SpecialProcedureEnded(SpecialKind::Verification),
                CaseState::UnderReview
            )
        );
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![(t0() + 3 * HOUR, t0() + 9 * HOUR)]
        );
        // A whole interval reported at once is recorded closed.
        let mut e = ev("p", 30, "特别程序", "2", "6");
        let sp = e.special_procedure.as_mut().unwrap();
        sp.kind = SpecialKind::PublicNotice;
        sp.started_at = t0() + 20 * HOUR;
        sp.ended_at = Some(t0() + 25 * HOUR);
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.after),
            (
                Effect::SpecialProcedureEnded(SpecialKind::PublicNotice),
                CaseState::UnderReview
            )
        );
        assert_eq!(c.suspensions().len(), 2);
        assert!(!c.is_suspended());
    }

    #[test]
    fn a_special_procedure_ends_with_a_resume_or_the_next_step() {
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("h", 2, "特别程序", "2", "6")]);
        let a = c.apply(&ev("end", 5, "特别程序", "2", "1"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (Effect::Resumed, CaseState::Suspended, CaseState::Accepted)
        );
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![(t0() + 2 * HOUR, t0() + 5 * HOUR)]
        );

        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("h", 2, "审查", "2", "6")]);
        let a = c.apply(&ev("r", 6, "审查", "2", "1"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (
                Effect::Reviewed,
                CaseState::Suspended,
                CaseState::UnderReview
            )
        );
        assert_eq!(c.suspensions()[0].end, Some(t0() + 6 * HOUR));
    }

    #[test]
    fn nested_suspensions_merge_into_one_stopped_stretch() {
        let mut c = case();
        run(
            &mut c,
            &[
                accept("a", 1),
                ev("h", 2, "特别程序", "2", "6"),
                ev("s", 3, "补正", "2", "5"),
            ],
        );
        c.apply(&ev("back", 4, "补正", "2", "1"));
        assert_eq!(
            c.state(),
            CaseState::Suspended,
            "the special procedure still runs"
        );
        c.apply(&ev("end", 6, "特别程序", "2", "1"));
        assert_eq!(c.state(), CaseState::Accepted);
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![(t0() + 2 * HOUR, t0() + 6 * HOUR)]
        );
    }

    #[test]
    fn returns_send_the_case_back_to_the_step_and_restart_its_clock() {
        let mut c = case();
        run(
            &mut c,
            &[
                accept("a", 1),
                ev("r", 2, "审查", "2", "1"),
                ev("d", 3, "决定", "2", "1"),
            ],
        );
        let a = c.apply(&ev("back", 4, "决定", "2", "7"));
        assert_eq!(
            (a.effect, a.before, a.after),
            (Effect::Returned, CaseState::Decided, CaseState::UnderReview)
        );
        assert_eq!(
            c.open_step(),
            Some(OpenStep {
                step: NodeName::Decision,
                since: t0() + 4 * HOUR
            })
        );
        let a = c.apply(&ev("back2", 5, "审查", "2", "7"));
        assert_eq!((a.effect, a.after), (Effect::Returned, CaseState::Accepted));
        // A return never moves forward.
        let a = c.apply(&ev("back3", 6, "送达", "2", "7"));
        assert_eq!((a.effect, a.after), (Effect::Returned, CaseState::Accepted));
        assert!(!a.is_out_of_order());
        assert_eq!(
            c.open_step(),
            Some(OpenStep {
                step: NodeName::Review,
                since: t0() + 6 * HOUR
            })
        );
    }

    #[test]
    fn a_completion_ends_open_suspensions() {
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("s", 2, "补正", "2", "5")]);
        let mut e = ev("e", 9, "办结", "3", "1");
        e.completion = Some(Completion {
            result: CompletionResult::SupplementNeverArrived,
            reason: Some("逾期未补正".into()),
        });
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.before, a.after),
            (
                Effect::Completed,
                CaseState::Suspended,
                CaseState::Completed
            )
        );
        assert!(!a.is_out_of_order());
        assert_eq!(
            c.suspended_intervals(i64::MAX),
            vec![(t0() + 2 * HOUR, t0() + 9 * HOUR)]
        );
    }

    #[test]
    fn duplicates_are_not_recorded_twice() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let a = c.apply(&accept("a", 1));
        assert_eq!(
            (a.effect, a.after),
            (Effect::Duplicate, CaseState::Accepted)
        );
        assert!(!a.is_out_of_order());
        assert_eq!(c.history().len(), 1);
    }

    // Every out-of-order flag.

    #[test]
    fn anything_after_completion_is_flagged_and_ignored() {
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("e", 2, "办结", "4", "1")]);
        for (i, e) in [
            ev("x1", 3, "审查", "2", "1"),
            ev("x2", 3, "办结", "3", "1"),
            accept("x3", 3),
            ev("x4", 3, "补正", "1", "5"),
        ]
        .iter()
        .enumerate()
        {
            let a = c.apply(e);
            assert_eq!(
                (a.effect, a.after),
                (Effect::Ignored, CaseState::Completed),
                "{i}"
            );
            assert_eq!(flags(&a), vec!["after_completion"]);
        }
        assert_eq!(c.history().len(), 6);
        assert_eq!(
            c.history()[5].out_of_order,
            vec![OutOfOrder::AfterCompletion]
        );
        assert!(c.supplement_requests().is_empty());
    }

    #[test]
    fn anything_but_completion_after_a_refusal_is_flagged_and_ignored() {
        let mut c = case();
        c.apply(&ev("x", 1, "受理", "4", "3"));
        let a = c.apply(&accept("a", 2));
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Refused));
        assert_eq!(flags(&a), vec!["after_refusal"]);
        assert_eq!(c.accepted_at(), None);
    }

    #[test]
    fn a_second_acceptance_is_flagged_and_keeps_the_first_time() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let a = c.apply(&accept("a2", 2));
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Accepted));
        assert_eq!(flags(&a), vec!["second_acceptance"]);
        assert_eq!(c.accepted_at(), Some(t0() + HOUR));
    }

    #[test]
    fn a_refusal_after_acceptance_is_flagged_and_ignored() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let a = c.apply(&ev("x", 2, "受理", "4", "2"));
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Accepted));
        assert_eq!(flags(&a), vec!["refusal_after_acceptance"]);
        assert!(c.refusal().is_none());
        // Past submission without an acceptance (a decision reported first) counts too.
        let mut c = case();
        c.apply(&ev("d", 1, "决定", "2", "1"));
        let a = c.apply(&ev("x", 2, "受理", "4", "3"));
        assert_eq!(flags(&a), vec!["refusal_after_acceptance"]);
    }

    #[test]
    fn steps_before_acceptance_are_flagged_and_still_applied() {
        for (name, ty, result, effect, state) in [
            ("审查", "2", "1", Effect::Reviewed, CaseState::UnderReview),
            ("决定", "2", "1", Effect::Decided, CaseState::Decided),
            ("送达", "3", "1", Effect::Delivered, CaseState::Delivered),
            ("审查", "2", "7", Effect::Returned, CaseState::Submitted),
            ("办结", "3", "1", Effect::Completed, CaseState::Completed),
        ] {
            let mut c = case();
            let a = c.apply(&ev("x", 1, name, ty, result));
            assert_eq!((a.effect, a.after), (effect, state), "{name} {result}");
            assert_eq!(
                a.out_of_order,
                vec![OutOfOrder::BeforeAcceptance {
                    step: c.history()[0].node
                }]
            );
        }
        // A completion that does not grant the case needs no acceptance.
        let mut c = case();
        let mut e = ev("e", 1, "办结", "3", "1");
        e.completion = Some(Completion {
            result: CompletionResult::Void,
            reason: Some("申请人撤回".into()),
        });
        assert!(!c.apply(&e).is_out_of_order());
    }

    #[test]
    fn an_acceptance_reported_late_still_sets_the_acceptance_time() {
        let mut c = case();
        c.apply(&ev("d", 3, "决定", "2", "1"));
        let a = c.apply(&accept("a", 1));
        assert_eq!((a.effect, a.after), (Effect::Accepted, CaseState::Decided));
        assert_eq!(flags(&a), vec!["earlier_than_previous"]);
        assert_eq!(c.accepted_at(), Some(t0() + HOUR));
    }

    #[test]
    fn skipped_steps_are_flagged_and_still_applied() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let a = c.apply(&ev("d", 2, "决定", "2", "1"));
        assert_eq!((a.effect, a.after), (Effect::Decided, CaseState::Decided));
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::Skipped {
                step: NodeName::Decision,
                missing: NodeName::Review
            }]
        );
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("r", 2, "审查", "2", "1")]);
        let a = c.apply(&ev("s", 3, "送达", "2", "1"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::Delivered, CaseState::Delivered)
        );
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::Skipped {
                step: NodeName::Delivery,
                missing: NodeName::Decision
            }]
        );
    }

    #[test]
    fn steps_the_case_has_passed_are_flagged_and_ignored() {
        let mut c = case();
        run(
            &mut c,
            &[
                accept("a", 1),
                ev("r", 2, "审查", "2", "1"),
                ev("d", 3, "决定", "2", "1"),
            ],
        );
        let a = c.apply(&ev("r2", 4, "审查", "2", "1"));
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Decided));
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::Behind {
                step: NodeName::Review,
                stage: CaseState::Decided
            }]
        );
        c.apply(&ev("s", 5, "送达", "2", "1"));
        let a = c.apply(&ev("d2", 6, "决定", "2", "1"));
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Delivered));
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::Behind {
                step: NodeName::Decision,
                stage: CaseState::Delivered
            }]
        );
    }

    #[test]
    fn results_a_node_type_does_not_allow_are_flagged_and_ignored() {
        let cases = [
            ("受理", "1", "1"),
            ("审查", "2", "4"),
            ("办结", "3", "5"),
            ("受理", "4", "6"),
            ("补正", "1", "0"),
        ];
        for (name, ty, result) in cases {
            let mut c = case();
            let a = c.apply(&ev("x", 1, name, ty, result));
            assert_eq!(
                (a.effect, a.after),
                (Effect::Ignored, CaseState::Submitted),
                "{name} {ty} {result}"
            );
            assert_eq!(flags(&a), vec!["result_not_allowed"]);
        }
        // Every combination agrees with the table in DOMAIN.md.
        let allowed = [
            (NodeType::Start, "456"),
            (NodeType::Middle, "01567"),
            (NodeType::End, "01"),
            (NodeType::Single, "1234"),
        ];
        for (ty, codes) in allowed {
            for r in 0..8u8 {
                let result: NodeResult = serde_json::from_value(json!(r.to_string())).unwrap();
                assert_eq!(
                    ty.allows(result),
                    codes.contains(result.as_str()),
                    "{ty:?} {r}"
                );
            }
        }
    }

    #[test]
    fn results_a_step_does_not_take_are_flagged_and_ignored() {
        for (name, ty, result) in [
            ("受理", "2", "0"),
            ("受理", "2", "7"),
            ("审查", "4", "4"),
            ("决定", "4", "2"),
            ("送达", "4", "3"),
            ("补正", "2", "7"),
            ("特别程序", "4", "2"),
            ("办结", "4", "4"),
        ] {
            let mut c = case();
            let a = c.apply(&ev("x", 1, name, ty, result));
            assert_eq!(
                (a.effect, a.after),
                (Effect::Ignored, CaseState::Submitted),
                "{name} {result}"
            );
            assert_eq!(flags(&a), vec!["result_not_for_step"], "{name} {result}");
        }
    }

    #[test]
    fn resuming_a_suspension_that_never_started_is_flagged_and_ignored() {
        for name in ["补正", "特别程序"] {
            let mut c = case();
            c.apply(&accept("a", 1));
            let a = c.apply(&ev("x", 2, name, "2", "1"));
            assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Accepted));
            assert_eq!(flags(&a), vec!["resume_without_suspension"]);
        }
        // A 补正 does not end a hearing.
        let mut c = case();
        run(&mut c, &[accept("a", 1), ev("h", 2, "特别程序", "2", "6")]);
        let a = c.apply(&ev("x", 3, "补正", "2", "1"));
        assert_eq!(flags(&a), vec!["resume_without_suspension"]);
        assert_eq!(c.state(), CaseState::Suspended);
    }

    #[test]
    fn a_supplement_after_the_decision_is_flagged_and_still_counted() {
        let mut c = case();
        run(
            &mut c,
            &[
                accept("a", 1),
                ev("r", 2, "审查", "2", "1"),
                ev("d", 3, "决定", "2", "1"),
            ],
        );
        let a = c.apply(&ev("s", 4, "决定", "2", "5"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::SupplementRequested, CaseState::Suspended)
        );
        assert_eq!(flags(&a), vec!["supplement_after_decision"]);
        assert_eq!(c.supplement_requests().len(), 1);
    }

    #[test]
    fn a_special_procedure_ending_before_it_starts_is_flagged_and_ignored() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let mut e = ev("h", 5, "特别程序", "2", "6");
        let sp = e.special_procedure.as_mut().unwrap();
        sp.ended_at = Some(sp.started_at - HOUR);
        let a = c.apply(&e);
        assert_eq!((a.effect, a.after), (Effect::Ignored, CaseState::Accepted));
        assert_eq!(flags(&a), vec!["ends_before_start"]);
        assert!(c.suspensions().is_empty());
    }

    #[test]
    fn missing_details_are_flagged() {
        let mut c = case();
        c.apply(&accept("a", 1));
        let mut e = ev("s", 2, "补正", "2", "5");
        e.supplement = None;
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.after),
            (Effect::SupplementRequested, CaseState::Suspended)
        );
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::MissingDetail {
                field: "supplement"
            }]
        );
        let mut e = ev("h", 3, "特别程序", "2", "6");
        e.special_procedure = None;
        let a = c.apply(&e);
        assert_eq!(a.effect, Effect::Ignored);
        assert_eq!(flags(&a), vec!["missing_detail"]);
        let mut e = ev("e", 4, "办结", "3", "1");
        e.completion = None;
        let a = c.apply(&e);
        assert_eq!(
            (a.effect, a.after),
            (Effect::Completed, CaseState::Completed)
        );
        assert_eq!(
            a.out_of_order,
            vec![OutOfOrder::MissingDetail {
                field: "completion"
            }]
        );
        assert_eq!(c.completion().unwrap().result, None);
    }

    #[test]
    fn an_event_earlier_than_one_recorded_is_flagged() {
        let mut c = case();
        run(&mut c, &[accept("a", 5)]);
        let a = c.apply(&ev("r", 3, "审查", "2", "1"));
        assert_eq!(
            (a.effect, a.after),
            (Effect::Reviewed, CaseState::UnderReview)
        );
        assert_eq!(flags(&a), vec!["earlier_than_previous"]);
    }

    #[test]
    fn a_case_rebuilt_from_its_events_is_judged_on_when_they_happened() {
        // 受理, then 办结 two days later; the two 补正 of the first day arrive after the 办结.
        let received = |mut e: CaseEvent, at: i64| {
            e.received_at = Some(at);
            e
        };
        let now = t0() + 10 * DAY;
        let arrived = [
            received(accept("a", 0), now),
            received(ev("e", 48, "办结", "3", "1"), now),
            received(ev("s1", 2, "补正", "2", "5"), now + 1000),
            received(ev("s2", 20, "补正", "2", "5"), now + 2000),
        ];
        let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0(), &arrived);
        assert_eq!(c.state(), CaseState::Completed);
        let requests: Vec<&str> = c
            .supplement_requests()
            .iter()
            .map(|r| r.event_id.as_str())
            .collect();
        assert_eq!(
            requests,
            ["s1", "s2"],
            "both requests are facts of the case"
        );
        // The clock stood still from the first request to the completion that ended it.
        assert_eq!(
            c.suspended_intervals(now),
            vec![(t0() + 2 * HOUR, t0() + 48 * HOUR)]
        );
        // Applied in the order they happened; the two reported after the 办结 are flagged.
        let history: Vec<(&str, Vec<&str>)> = c
            .history()
            .iter()
            .map(|s| {
                (
                    s.event_id.as_str(),
                    s.out_of_order.iter().map(|f| f.code()).collect(),
                )
            })
            .collect();
        assert_eq!(
            history,
            vec![
                ("a", vec![]),
                ("s1", vec!["earlier_than_previous"]),
                ("s2", vec!["earlier_than_previous"]),
                ("e", vec![]),
            ]
        );
        // Known to the hub when it arrived, not when it happened.
        assert_eq!(c.noted_at("s2"), Some(now + 2000));
        assert_eq!(c.closure_noted_at(), Some(now));
        assert_eq!(c.noted_at("nothing"), None);
        // Received together, in one batch, nothing was reported after anything.
        let batch: Vec<CaseEvent> = arrived
            .iter()
            .cloned()
            .map(|e| received(e, now))
            .rev()
            .collect();
        let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0(), &batch);
        assert!(c.history().iter().all(|s| s.out_of_order.is_empty()));
        assert_eq!(c.supplement_requests().len(), 2);
        // One at a time, as they arrived, the late requests came after the 办结.
        let mut one_by_one = case();
        let flagged: Vec<Vec<&str>> = run(&mut one_by_one, &arrived)
            .iter()
            .map(|a| flags(a))
            .collect();
        assert_eq!(flagged[2], vec!["after_completion"]);
        assert!(one_by_one.supplement_requests().is_empty());
    }

    #[test]
    fn every_flag_reads_without_values() {
        let all = [
            OutOfOrder::AfterCompletion,
            OutOfOrder::AfterRefusal,
            OutOfOrder::SecondAcceptance,
            OutOfOrder::RefusalAfterAcceptance,
            OutOfOrder::BeforeAcceptance {
                step: NodeName::Decision,
            },
            OutOfOrder::Skipped {
                step: NodeName::Decision,
                missing: NodeName::Review,
            },
            OutOfOrder::Behind {
                step: NodeName::Review,
                stage: CaseState::Decided,
            },
            OutOfOrder::ResultNotAllowed {
                node_type: NodeType::End,
                result: NodeResult::Returned,
            },
            OutOfOrder::ResultNotForStep {
                step: NodeName::Review,
                result: NodeResult::Accepted,
            },
            OutOfOrder::ResumeWithoutSuspension {
                step: NodeName::Supplement,
            },
            OutOfOrder::SupplementAfterDecision,
            OutOfOrder::EndsBeforeStart,
            OutOfOrder::MissingDetail {
                field: "completion",
            },
            OutOfOrder::EarlierThanPrevious,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(all[4].to_string(), "决定 before 受理");
        assert_eq!(all[6].to_string(), "审查 when already decided");
    }

    #[test]
    fn events_parse_with_times_and_without_handler_details() {
        let e = ev("x", 0, "特别程序", "2", "6");
        assert_eq!(e.occurred_at, t0());
        assert_eq!(e.special_procedure.unwrap().started_at, t0());
        let bad = json!({"event_id": "x", "application_id": "A", "system": "s",
            "node": {"name": "审查", "type": "2", "result": "1"}, "occurred_at": "yesterday"});
        let message = CaseEvent::from_json(&bad).unwrap_err();
        assert!(!message.contains("yesterday"), "{message}");
        let mut bad = bad;
        bad["occurred_at"] = json!("2026-11-20T09:00:00+08:00");
        bad["event_id"] = json!(13043419840726291_i64);
        let message = CaseEvent::from_json(&bad).unwrap_err();
        assert!(!message.contains("1304341984"), "{message}");
        for &name in NodeName::ALL {
            let back: NodeName = serde_json::from_value(json!(name.as_str())).unwrap();
            assert_eq!(back, name);
        }
    }
}
