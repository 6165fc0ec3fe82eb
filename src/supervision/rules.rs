//! The e-supervision rules (电子监察) and the life of the alerts they raise, as pure functions.
//!
//! [`evaluate`] looks at one case at one moment and lists the [`Condition`]s that hold;
//! [`system_silence`] does the same for a connected system. [`reconcile`] compares what holds with
//! the alerts already open and says what to change, so that an alert is raised once, escalates
//! in place and is resolved when its condition ends. Deadlines come in as epoch milliseconds:
//! the working-day calendar computes them, this module only compares.
//!
//! # Rules
//!
//! | id | level | holds while |
//! |---|---|---|
//! | `time_limit` | 预警 warning once `warn_percent` of the promised limit is used; 黄牌 yellow past the promised date; 红牌 red past the statutory limit | the case is accepted and open; and, as a record, once it completed past the promised date (yellow) or the statutory limit (red), however late the hub learnt of it |
//! | `step_overdue` | warning | the step the case waits for is past its own limit (`step_limits`), even if the case is not |
//! | `out_of_order` | warning | the case has events flagged out of order (see [`super::case`]) |
//! | `acceptance_refused` | warning with reasons given (was the application lawful?), yellow without | the case was refused (不受理 / 不予受理) |
//! | `completion_without_reason` | yellow | the case completed with a result 1–5 and no reason |
//! | `repeated_supplement` | yellow | more than one supplement request (第十四条: everything at once) |
//! | `shareable_material_requested` | yellow | a supplement request asked for a material the catalog marks obtainable by sharing (第十三条) |
//! | `implausible_time` | warning | an event is dated more than `clock_tolerance_minutes` before the hub received the application (a system clock on UTC, a date typed wrong), or after the hub received the event itself (a system clock that is fast; one more than `future_limit_minutes` ahead is refused): its dues and stretches run from a time that cannot be right |
//! | `dispute_overdue` | yellow | a holder's dispute of a system's result (or of an access to it) is unresolved past the working days `sharing.toml` gives (第二十六条) |
//! | `result_unsettled` | warning | a result the system shared still awaits its application's completion (办结) after `record_hold_hours` |
//! | `system_silent` | warning | a system with open cases (applications it has not reported on yet included) has sent no event or heartbeat for longer than its threshold, counted from when it last did or from its oldest open case, whichever is later |
//! | `events_refused` | warning | the hub refused a message of the system (it does not map, is dated in the future, concerns an application the system does not handle, …), by webhook, poll or queue, within the last `record_hold_hours`: it resolves once that long has passed since the latest refusal, not when the next message is taken, because the refused facts are lost until the system sends them again |
//!
//! The clock rules (`time_limit` on an open case, `step_overdue`) end when the case closes or the
//! step is done; a case that completed late keeps its `time_limit` card as a record, with
//! evidence naming its acceptance, promised date, statutory limit and completion. The record
//! rules (the other case rules) are facts about the case's history, so they end when the case
//! has been closed for `record_hold_hours`, counted from the closure or from the latest such
//! fact if that came later (an event after 办结), where each counts from the later of when it
//! happened and when the hub received it: a fact reported late, or a whole case reported in one
//! batch after it closed, is shown for the whole hold after it arrives, and the resolved alert
//! keeps the evidence.
//!
//! Evidence names times, event ids, steps, result codes and material ids; never a handler, an
//! opinion, a reason's text or anything about the applicant. `events_refused` adds the reasons
//! the hub refused a message for: mapping, schema and hub messages, which never quote a value,
//! with ID and phone numbers scrubbed.

use super::case::Case;
use crate::catalog::{Item, TimeLimit, TimeUnit};
use crate::clock::format_millis;
use crate::model::{Level, NodeName, Rule, Via};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Out-of-order events listed in one evidence text; the rest are counted.
const EVIDENCE_EVENTS: usize = 5;

/// A step's own limit, as `hub.toml` writes it under `[supervision.step_limits]`:
/// `"审查" = { working_days = 3 }` or `"受理" = { hours = 24 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepLimit {
    Hours(u32),
    WorkingDays(u32),
}

impl StepLimit {
    /// The limit in the catalog's terms, for the calendar.
    pub fn time_limit(self) -> TimeLimit {
        match self {
            StepLimit::Hours(value) => TimeLimit {
                value,
                unit: TimeUnit::Hour,
            },
            StepLimit::WorkingDays(value) => TimeLimit {
                value,
                unit: TimeUnit::WorkingDay,
            },
        }
    }
}

/// The rules' thresholds: `hub.toml`'s `[supervision]`. Every key is optional.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `warn_percent` | 80 | `time_limit` warns once this share of the promised limit is used |
/// | `step_limits` | none | per step name (受理, 审查, 决定, 送达, 办结): its own limit for `step_overdue` |
/// | `silence_minutes` | 60 | how long a system with open cases may stay silent; 0 turns `system_silent` off |
/// | `system_silence_minutes` | none | per system id, overriding `silence_minutes` |
/// | `record_hold_hours` | 72 | how long record alerts stay open after the case closes (a weekend and a day) |
/// | `clock_tolerance_minutes` | 5 | how far systems' clocks may be off: a case event dated further ahead of its arrival, or further before the hub received its application, is flagged (`implausible_time`) |
/// | `future_limit_minutes` | 1440 | a case event dated further ahead of its arrival than this is refused (a date typed wrong, not a clock a little off); at least `clock_tolerance_minutes` |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub warn_percent: u8,
    pub step_limits: BTreeMap<NodeName, StepLimit>,
    pub silence_minutes: u32,
    pub system_silence_minutes: BTreeMap<String, u32>,
    pub record_hold_hours: u32,
    pub clock_tolerance_minutes: u32,
    pub future_limit_minutes: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn_percent: 80,
            step_limits: BTreeMap::new(),
            silence_minutes: 60,
            system_silence_minutes: BTreeMap::new(),
            record_hold_hours: 72,
            clock_tolerance_minutes: 5,
            future_limit_minutes: 1440,
        }
    }
}

impl Thresholds {
    /// What is wrong with the values, each as `key: message`; empty when they are usable.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.warn_percent) {
            errors.push("warn_percent: must be between 1 and 100".to_owned());
        }
        for (step, limit) in &self.step_limits {
            if matches!(step, NodeName::Supplement | NodeName::SpecialProcedure) {
                errors.push(format!(
                    "step_limits.{step}: the clock stops in {step}, so it cannot have a limit"
                ));
            }
            if limit.time_limit().value == 0 {
                errors.push(format!("step_limits.{step}: must be more than 0"));
            }
        }
        if self.record_hold_hours == 0 {
            errors.push(
                "record_hold_hours: must be more than 0, or refusals and events after completion are never shown"
                    .to_owned(),
            );
        }
        if self.future_limit_minutes < self.clock_tolerance_minutes {
            errors.push(format!(
                "future_limit_minutes: must be at least clock_tolerance_minutes ({}): an event \
                 dated ahead within the tolerance is taken, so it cannot be refused",
                self.clock_tolerance_minutes
            ));
        }
        errors
    }

    /// The step's own limit, if one is configured.
    pub fn step_limit(&self, step: NodeName) -> Option<TimeLimit> {
        self.step_limits.get(&step).map(|l| l.time_limit())
    }

    /// How long `system` may stay silent, in minutes; 0 is never.
    pub fn silence_minutes_for(&self, system: &str) -> u32 {
        self.system_silence_minutes
            .get(system)
            .copied()
            .unwrap_or(self.silence_minutes)
    }
}

/// A case's deadlines, computed on the calendar with its suspensions (an open one counted up to
/// now), as epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadlines {
    /// The promised date: acceptance plus the item's promised limit.
    pub promised: Option<i64>,
    /// Acceptance plus the statutory limit.
    pub statutory: Option<i64>,
    /// When `warn_percent` of the promised limit is used, if the calendar can tell; otherwise
    /// [`warning_at`] derives it from the running time between acceptance and the promised date.
    pub warning: Option<i64>,
    /// The open step's own deadline, for `step_overdue`.
    pub step: Option<StepDue>,
}

/// The deadline of the step a case waits for: [`Case::open_step`]'s step and start, plus the
/// step's limit from [`Thresholds::step_limit`] on the calendar. It counts only while the case
/// still waits for that step from that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDue {
    pub step: NodeName,
    pub since: i64,
    pub due: i64,
}

/// A rule that holds now: what an alert is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub rule: Rule,
    pub level: Level,
    pub system: String,
    /// The application id; `None` for a system's own condition.
    pub case: Option<String>,
    /// The item code.
    pub item: Option<String>,
    /// Times, event ids, steps and material ids; never personal data.
    pub evidence: String,
}

impl Condition {
    pub fn key(&self) -> AlertKey {
        AlertKey {
            rule: self.rule,
            system: self.system.clone(),
            case: self.case.clone(),
        }
    }

    fn has_key(&self, key: &AlertKey) -> bool {
        self.rule == key.rule && self.system == key.system && self.case == key.case
    }
}

fn same_subject(a: &Condition, b: &Condition) -> bool {
    a.rule == b.rule && a.system == b.system && a.case == b.case
}

/// What makes an alert the same alert: one per rule and case (or system).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct AlertKey {
    pub rule: Rule,
    pub system: String,
    pub case: Option<String>,
}

/// An alert that is open, as far as [`reconcile`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub key: AlertKey,
    pub level: Level,
}

/// What to do with the alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertChange {
    /// A condition with no open alert.
    Raise { condition: Condition, at: i64 },
    /// An open alert whose condition now holds at a higher level.
    Escalate {
        key: AlertKey,
        from: Level,
        condition: Condition,
        at: i64,
    },
    /// An open alert whose condition no longer holds.
    Resolve {
        key: AlertKey,
        level: Level,
        at: i64,
    },
}

/// The conditions that hold for `case` at `now_ms`.
///
/// `item` is the catalog item the case handles (its materials say which sharing can supply);
/// `due` its deadlines from the calendar.
pub fn evaluate(
    case: &Case,
    item: &Item,
    due: Deadlines,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Vec<Condition> {
    let condition = |rule, level, evidence| Condition {
        rule,
        level,
        system: case.system().to_owned(),
        case: Some(case.application_id().to_owned()),
        item: Some(case.item_code().to_owned()),
        evidence,
    };
    let mut out = Vec::new();
    if let Some((level, evidence)) = time_limit(case, &due, now_ms, thresholds) {
        out.push(condition(Rule::TimeLimit, level, evidence));
    }
    if let Some(evidence) = step_overdue(case, &due, now_ms) {
        out.push(condition(Rule::StepOverdue, Level::Warning, evidence));
    }
    for record in records(case, item, &due, thresholds) {
        if on_record(case, record.noted, now_ms, thresholds) {
            out.push(condition(record.rule, record.level, record.evidence));
        }
    }
    out
}

/// Since when a system has been quiet: its last event or heartbeat, or, when it has said
/// nothing since its oldest open case began, that case's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    SinceHeard(i64),
    SinceOpenCase(i64),
}

impl Quiet {
    pub fn at(self) -> i64 {
        match self {
            Quiet::SinceHeard(at) | Quiet::SinceOpenCase(at) => at,
        }
    }
}

/// The `system_silent` condition: `system` has `open_cases` and has been `quiet` for longer
/// than its threshold.
pub fn system_silence(
    system: &str,
    quiet: Quiet,
    open_cases: usize,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<Condition> {
    let minutes = thresholds.silence_minutes_for(system);
    let silent = now_ms - quiet.at();
    if minutes == 0 || open_cases == 0 || silent <= i64::from(minutes) * MINUTE {
        return None;
    }
    Some(Condition {
        rule: Rule::SystemSilent,
        level: Level::Warning,
        system: system.to_owned(),
        case: None,
        item: None,
        evidence: format!(
            "no event or heartbeat since {}{} ({} minutes; threshold {minutes}) with {open_cases} open case{}",
            format_millis(quiet.at()),
            match quiet {
                Quiet::SinceHeard(_) => "",
                Quiet::SinceOpenCase(_) => ", when its oldest open case began",
            },
            silent / MINUTE,
            if open_cases == 1 { "" } else { "s" },
        ),
    })
}

/// The `dispute_overdue` condition: `system` leaves holders' disputes (`(id, due at)`, 第二十六条)
/// unresolved past their due time.
pub fn disputes_overdue(
    system: &str,
    disputes: &[(String, i64)],
    now_ms: i64,
) -> Option<Condition> {
    let late: Vec<String> = disputes
        .iter()
        .filter(|(_, due)| now_ms > *due)
        .map(|(id, due)| format!("{id} (due {})", format_millis(*due)))
        .collect();
    if late.is_empty() {
        return None;
    }
    Some(Condition {
        rule: Rule::DisputeOverdue,
        level: Level::Yellow,
        system: system.to_owned(),
        case: None,
        item: None,
        evidence: format!(
            "{} holder dispute{} unresolved past the time limit: {}",
            late.len(),
            if late.len() == 1 { "" } else { "s" },
            late.join(", ")
        ),
    })
}

/// The `result_unsettled` condition: `system` shared results (`(license id, received at)`) that
/// still await their application's completion (办结) longer than the record hold: the
/// completion that would make them valid has not come, so the holder has a license nobody can
/// rely on.
pub fn results_unsettled(
    system: &str,
    awaiting: &[(String, i64)],
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<Condition> {
    let hold = hold_ms(thresholds);
    let late: Vec<String> = awaiting
        .iter()
        .filter(|(_, at)| now_ms - *at > hold)
        .map(|(id, at)| format!("{id} (received {})", format_millis(*at)))
        .collect();
    if late.is_empty() {
        return None;
    }
    Some(Condition {
        rule: Rule::ResultUnsettled,
        level: Level::Warning,
        system: system.to_owned(),
        case: None,
        item: None,
        evidence: format!(
            "{} result{} awaiting the completion of {} application for more than {} hours: {}",
            late.len(),
            if late.len() == 1 { "" } else { "s" },
            if late.len() == 1 { "its" } else { "their" },
            thresholds.record_hold_hours,
            late.join(", ")
        ),
    })
}

/// A system's refused messages within the record hold: what `events_refused` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    pub count: i64,
    pub first_at: i64,
    pub latest_at: i64,
    /// How the latest came.
    pub latest_via: Via,
    /// The latest refusal's reasons, masked.
    pub latest_reasons: Vec<String>,
}

/// Reasons listed in an `events_refused` evidence; the rest are counted.
const EVIDENCE_REASONS: usize = 5;

/// The moment an `events_refused` condition ends by time alone: the record hold after the
/// latest refusal.
pub fn refusals_end(refusals: &Refusals, thresholds: &Thresholds) -> i64 {
    refusals.latest_at.saturating_add(hold_ms(thresholds))
}

/// The `events_refused` condition: `system` had messages refused within the record hold.
pub fn events_refused(
    system: &str,
    refusals: &Refusals,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<Condition> {
    if refusals.count == 0 || now_ms >= refusals_end(refusals, thresholds) {
        return None;
    }
    let mut reasons: Vec<String> = refusals
        .latest_reasons
        .iter()
        .take(EVIDENCE_REASONS)
        .cloned()
        .collect();
    if refusals.latest_reasons.len() > EVIDENCE_REASONS {
        reasons.push(format!(
            "and {} more",
            refusals.latest_reasons.len() - EVIDENCE_REASONS
        ));
    }
    Some(Condition {
        rule: Rule::EventsRefused,
        level: Level::Warning,
        system: system.to_owned(),
        case: None,
        item: None,
        evidence: format!(
            "{} message{} refused since {}; the latest at {} (by {}): {}",
            refusals.count,
            if refusals.count == 1 { "" } else { "s" },
            format_millis(refusals.first_at),
            format_millis(refusals.latest_at),
            refusals.latest_via,
            reasons.join("; ")
        ),
    })
}

/// Turns what holds now into alert changes. `open` must be the open alerts of the cases and
/// systems `current` was evaluated for (an alert of another case would be resolved). A condition
/// with no open alert is raised; one at a higher level than its alert escalates it; an open
/// alert with no condition is resolved. An alert never goes down a level: a lower level while
/// the condition holds changes nothing. Several conditions with one key count as the highest.
pub fn reconcile(open: &[Alert], current: &[Condition], now_ms: i64) -> Vec<AlertChange> {
    let mut strongest: Vec<&Condition> = Vec::new();
    for c in current {
        match strongest.iter_mut().find(|s| same_subject(s, c)) {
            Some(s) if c.level > s.level => *s = c,
            Some(_) => {}
            None => strongest.push(c),
        }
    }
    let mut changes = Vec::new();
    for c in &strongest {
        match open.iter().find(|a| c.has_key(&a.key)) {
            None => changes.push(AlertChange::Raise {
                condition: (*c).clone(),
                at: now_ms,
            }),
            Some(a) if c.level > a.level => changes.push(AlertChange::Escalate {
                key: a.key.clone(),
                from: a.level,
                condition: (*c).clone(),
                at: now_ms,
            }),
            Some(_) => {}
        }
    }
    for a in open {
        if !strongest.iter().any(|c| c.has_key(&a.key)) {
            changes.push(AlertChange::Resolve {
                key: a.key.clone(),
                level: a.level,
                at: now_ms,
            });
        }
    }
    changes
}

/// When `warn_percent` of the promised limit is used: `due.warning` if the calendar gave it,
/// else the moment the running time since acceptance (outside suspensions) reaches that share of
/// the running time between acceptance and the promised date. On a working-day calendar the
/// latter counts nights and weekends too, so it is an approximation.
pub fn warning_at(
    case: &Case,
    due: &Deadlines,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<i64> {
    if due.warning.is_some() {
        return due.warning;
    }
    let start = case.accepted_at()?;
    let promised = due.promised?;
    let spans = case.suspended_intervals(now_ms);
    let total = running(start, promised, &spans);
    let needed = total.saturating_mul(i64::from(thresholds.warn_percent.min(100))) / 100;
    Some(after_running(start, needed, &spans))
}

/// The next moment after `now_ms` at which [`evaluate`]'s answer can change by time alone, for
/// a timer; `None` when only a new event can change it. Deadlines move when events arrive, so the
/// timer is set again after each one.
pub fn next_check(
    case: &Case,
    item: &Item,
    due: Deadlines,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<i64> {
    let mut times = Vec::new();
    if case.is_open() && case.accepted_at().is_some() {
        times.extend(warning_at(case, &due, now_ms, thresholds));
        times.extend(due.promised.map(|t| t + 1));
        times.extend(due.statutory.map(|t| t + 1));
    }
    if let Some(step) = due.step.filter(|s| waits_for(case, s)) {
        times.push(step.due + 1);
    }
    if let Some(closed) = case.closure_noted_at() {
        for record in records(case, item, &due, thresholds) {
            times.push(closed.max(record.noted) + hold_ms(thresholds));
        }
    }
    times.into_iter().filter(|&t| t > now_ms).min()
}

fn time_limit(
    case: &Case,
    due: &Deadlines,
    now_ms: i64,
    thresholds: &Thresholds,
) -> Option<(Level, String)> {
    let accepted = case.accepted_at()?;
    if !case.is_open() {
        return None;
    }
    let show = |t: Option<i64>| t.map_or_else(|| "none".to_owned(), format_millis);
    let dates = format!(
        "accepted {}, promised date {}, statutory limit {}",
        format_millis(accepted),
        show(due.promised),
        show(due.statutory)
    );
    let past = |t: Option<i64>| t.is_some_and(|t| now_ms > t);
    if past(due.statutory) {
        return Some((Level::Red, format!("past the statutory limit: {dates}")));
    }
    if past(due.promised) {
        return Some((Level::Yellow, format!("past the promised date: {dates}")));
    }
    let warn = warning_at(case, due, now_ms, thresholds)?;
    (now_ms >= warn).then(|| {
        (
            Level::Warning,
            format!(
                "{}% of the promised limit used at {}: {dates}",
                thresholds.warn_percent,
                format_millis(warn)
            ),
        )
    })
}

fn waits_for(case: &Case, step: &StepDue) -> bool {
    case.open_step()
        .is_some_and(|o| o.step == step.step && o.since == step.since)
}

fn step_overdue(case: &Case, due: &Deadlines, now_ms: i64) -> Option<String> {
    let step = due.step.filter(|s| waits_for(case, s))?;
    (now_ms > step.due).then(|| {
        format!(
            "step {} waited for since {}, past its own limit at {}",
            step.step,
            format_millis(step.since),
            format_millis(step.due)
        )
    })
}

/// A fact in the case's history that a record rule flags, and when the hub could first know
/// it: the latest [`Case::noted_at`] of the events it rests on.
struct Record {
    rule: Rule,
    level: Level,
    noted: i64,
    evidence: String,
}

/// The latest time the hub could know any of `events`, by their ids; `fallback` when it knows
/// none of them.
fn noted(case: &Case, events: impl IntoIterator<Item = impl AsRef<str>>, fallback: i64) -> i64 {
    events
        .into_iter()
        .filter_map(|id| case.noted_at(id.as_ref()))
        .max()
        .unwrap_or(fallback)
}

/// A closed case's late completion, as a `time_limit` record: 黄牌 when it completed past the
/// promised date, 红牌 past the statutory limit, whenever the hub learnt of it.
fn closed_late(case: &Case, due: &Deadlines) -> Option<Record> {
    let accepted = case.accepted_at()?;
    let done = case.completion()?;
    let show = |t: Option<i64>| t.map_or_else(|| "none".to_owned(), format_millis);
    let past = |t: Option<i64>| t.is_some_and(|t| done.at > t);
    let (level, what) = if past(due.statutory) {
        (Level::Red, "past the statutory limit")
    } else if past(due.promised) {
        (Level::Yellow, "past the promised date")
    } else {
        return None;
    };
    Some(Record {
        rule: Rule::TimeLimit,
        level,
        noted: noted(case, [&done.event_id], done.at),
        evidence: format!(
            "closed {what}: accepted {}, promised date {}, statutory limit {}, closed {} (event {})",
            format_millis(accepted),
            show(due.promised),
            show(due.statutory),
            format_millis(done.at),
            done.event_id
        ),
    })
}

/// Events dated further from the possible than the clocks' tolerance: before the hub received
/// the application, or after the hub received the event.
fn implausible_times(case: &Case, thresholds: &Thresholds) -> Option<Record> {
    let tolerance = i64::from(thresholds.clock_tolerance_minutes) * MINUTE;
    let found: Vec<(&super::case::Step, String)> = case
        .history()
        .iter()
        .filter_map(|s| {
            let why = if s.occurred_at < case.submitted_at() - tolerance {
                format!(
                    "{} before the hub received the application at {}",
                    crate::clock::duration_text(case.submitted_at() - s.occurred_at),
                    format_millis(case.submitted_at())
                )
            } else if s.occurred_at > s.received_at + tolerance {
                format!(
                    "{} after the hub received it at {}",
                    crate::clock::duration_text(s.occurred_at - s.received_at),
                    format_millis(s.received_at)
                )
            } else {
                return None;
            };
            Some((s, why))
        })
        .collect();
    let noted = found.iter().map(|(s, _)| s.noted_at()).max()?;
    let mut listed: Vec<String> = found
        .iter()
        .take(EVIDENCE_EVENTS)
        .map(|(s, why)| {
            format!(
                "event {} ({} · {}) dated {}, {why}",
                s.event_id,
                s.node,
                s.result.as_str(),
                format_millis(s.occurred_at)
            )
        })
        .collect();
    if found.len() > EVIDENCE_EVENTS {
        listed.push(format!("and {} more", found.len() - EVIDENCE_EVENTS));
    }
    Some(Record {
        rule: Rule::ImplausibleTime,
        level: Level::Warning,
        noted,
        evidence: listed.join("; "),
    })
}

fn records(case: &Case, item: &Item, due: &Deadlines, thresholds: &Thresholds) -> Vec<Record> {
    let mut out: Vec<Record> = closed_late(case, due).into_iter().collect();
    out.extend(implausible_times(case, thresholds));
    let flagged: Vec<_> = case
        .history()
        .iter()
        .filter(|s| !s.out_of_order.is_empty())
        .collect();
    if let Some(noted) = flagged.iter().map(|s| s.noted_at()).max() {
        let mut listed: Vec<String> = flagged
            .iter()
            .take(EVIDENCE_EVENTS)
            .map(|s| {
                let why: Vec<String> = s.out_of_order.iter().map(|f| f.to_string()).collect();
                format!(
                    "event {} ({} · {}): {}",
                    s.event_id,
                    s.node,
                    s.result.as_str(),
                    why.join(", ")
                )
            })
            .collect();
        if flagged.len() > EVIDENCE_EVENTS {
            listed.push(format!("and {} more", flagged.len() - EVIDENCE_EVENTS));
        }
        out.push(Record {
            rule: Rule::OutOfOrder,
            level: Level::Warning,
            noted,
            evidence: listed.join("; "),
        });
    }
    if let Some(r) = case.refusal() {
        let (level, reasons) = if r.has_reason {
            (Level::Warning, "with reasons")
        } else {
            (Level::Yellow, "without reasons")
        };
        out.push(Record {
            rule: Rule::AcceptanceRefused,
            level,
            noted: noted(case, [&r.event_id], r.at),
            evidence: format!(
                "event {} refused acceptance ({} {}) at {}, {reasons}",
                r.event_id,
                r.result.as_str(),
                r.result.label(),
                format_millis(r.at)
            ),
        });
    }
    if let Some(done) = case.completion()
        && let Some(result) = done
            .result
            .filter(|r| r.requires_reason() && !done.has_reason)
    {
        out.push(Record {
            rule: Rule::CompletionWithoutReason,
            level: Level::Yellow,
            noted: noted(case, [&done.event_id], done.at),
            evidence: format!(
                "event {} completed the case with result {} {} at {} without a reason",
                done.event_id,
                result.as_str(),
                result.label(),
                format_millis(done.at)
            ),
        });
    }
    let requests = case.supplement_requests();
    if requests.len() > 1 {
        let listed: Vec<String> = requests
            .iter()
            .map(|r| {
                format!(
                    "event {} at {} [{}]",
                    r.event_id,
                    format_millis(r.at),
                    r.materials.join(", ")
                )
            })
            .collect();
        out.push(Record {
            rule: Rule::RepeatedSupplement,
            level: Level::Yellow,
            noted: noted(
                case,
                requests.iter().map(|r| &r.event_id),
                requests.iter().map(|r| r.at).max().unwrap_or_default(),
            ),
            evidence: format!(
                "{} supplement requests, where 第十四条 asks for everything at once: {}",
                requests.len(),
                listed.join("; ")
            ),
        });
    }
    let shareable: Vec<(&str, i64, Vec<&str>)> = requests
        .iter()
        .filter_map(|r| {
            let ids: Vec<&str> = r
                .materials
                .iter()
                .filter(|m| {
                    item.materials
                        .iter()
                        .any(|c| &c.id == *m && c.can_be_shared())
                })
                .map(String::as_str)
                .collect();
            (!ids.is_empty()).then_some((r.event_id.as_str(), r.at, ids))
        })
        .collect();
    if let Some(at) = shareable.iter().map(|(_, at, _)| *at).max() {
        let noted = noted(case, shareable.iter().map(|(id, ..)| *id), at);
        let listed: Vec<String> = shareable
            .iter()
            .map(|(id, at, ids)| {
                format!(
                    "event {id} at {} asked for {}",
                    format_millis(*at),
                    ids.join(", ")
                )
            })
            .collect();
        out.push(Record {
            rule: Rule::ShareableMaterialRequested,
            level: Level::Yellow,
            noted,
            evidence: format!(
                "sharing can supply what was requested (第十三条): {}",
                listed.join("; ")
            ),
        });
    }
    out
}

fn hold_ms(thresholds: &Thresholds) -> i64 {
    i64::from(thresholds.record_hold_hours) * HOUR
}

/// Whether a record fact still holds: always on an open case; on a closed one until the hold
/// has passed since the hub could know both the closure and the fact (each the later of when it
/// happened and when it arrived), so a fact reported late is shown for the whole hold.
fn on_record(case: &Case, fact_noted: i64, now_ms: i64, thresholds: &Thresholds) -> bool {
    match case.closure_noted_at() {
        None => true,
        Some(closed) => now_ms < closed.max(fact_noted) + hold_ms(thresholds),
    }
}

/// Time in `[from, to]` outside the (sorted, disjoint) suspended spans.
fn running(from: i64, to: i64, spans: &[(i64, i64)]) -> i64 {
    let stopped: i64 = spans
        .iter()
        .map(|&(s, e)| (e.min(to) - s.max(from)).max(0))
        .sum();
    (to - from - stopped).max(0)
}

/// The moment `needed` running time has passed since `from`, skipping the suspended spans.
fn after_running(from: i64, needed: i64, spans: &[(i64, i64)]) -> i64 {
    let mut cursor = from;
    let mut left = needed;
    for &(s, e) in spans {
        if e <= cursor {
            continue;
        }
        if s > cursor {
            if s - cursor >= left {
                return cursor + left;
            }
            left -= s - cursor;
        }
        cursor = cursor.max(e);
    }
    cursor + left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaseEvent, Completion, CompletionResult};
    use crate::supervision::case::tests::{DAY, HOUR, accept, case, ev, t0};

    fn item() -> Item {
        let catalog: Vec<Item> =
            serde_json::from_str(include_str!("../../examples/province/catalog.json")).unwrap();
        catalog
            .into_iter()
            .find(|i| i.materials.iter().any(|m| m.id == "premises_layout"))
            .unwrap()
    }

    /// A supplement request at `t0 + hours` for the given materials.
    fn supplement(id: &str, hours: i64, materials: &[&str]) -> CaseEvent {
        let mut e = ev(id, hours, "补正", "2", "5");
        e.supplement.as_mut().unwrap().materials =
            materials.iter().map(|m| m.to_string()).collect();
        e
    }

    fn complete(id: &str, hours: i64, result: CompletionResult, reason: Option<&str>) -> CaseEvent {
        let mut e = ev(id, hours, "办结", "3", "1");
        e.completion = Some(Completion {
            result,
            reason: reason.map(str::to_owned),
        });
        e
    }

    /// The open alerts as a store would keep them, and every change made to them.
    #[derive(Default)]
    struct Board {
        open: Vec<Alert>,
        log: Vec<(Rule, &'static str, Level, i64)>,
    }

    impl Board {
        fn take(&mut self, current: &[Condition], now: i64) {
            for change in reconcile(&self.open, current, now) {
                match change {
                    AlertChange::Raise { condition, at } => {
                        assert!(!self.open.iter().any(|a| a.key == condition.key()));
                        self.log
                            .push((condition.rule, "raise", condition.level, at));
                        self.open.push(Alert {
                            key: condition.key(),
                            level: condition.level,
                        });
                    }
                    AlertChange::Escalate {
                        key,
                        from,
                        condition,
                        at,
                    } => {
                        let a = self.open.iter_mut().find(|a| a.key == key).unwrap();
                        assert_eq!(a.level, from);
                        assert!(condition.level > from);
                        a.level = condition.level;
                        self.log.push((key.rule, "escalate", condition.level, at));
                    }
                    AlertChange::Resolve { key, level, at } => {
                        let before = self.open.len();
                        self.open.retain(|a| a.key != key);
                        assert_eq!(self.open.len(), before - 1);
                        self.log.push((key.rule, "resolve", level, at));
                    }
                }
            }
        }

        fn of(&self, rule: Rule) -> Vec<(&'static str, Level, i64)> {
            self.log
                .iter()
                .filter(|(r, ..)| *r == rule)
                .map(|(_, what, level, at)| (*what, *level, *at))
                .collect()
        }
    }

    /// Walks a case through time hour by hour from `t0` for `days`, applying each scripted event
    /// when its time comes and reconciling every rule's conditions at every step.
    fn walk(
        events: &[CaseEvent],
        days: i64,
        due: impl Fn(&Case, i64) -> Deadlines,
    ) -> (Board, Case) {
        let item = item();
        let thresholds = Thresholds::default();
        let mut c = case();
        let mut board = Board::default();
        let mut pending = events.iter().peekable();
        let mut now = t0();
        while now <= t0() + days * DAY {
            while let Some(e) = pending.next_if(|e| e.occurred_at <= now) {
                c.apply(e);
            }
            let current = evaluate(&c, &item, due(&c, now), now, &thresholds);
            for cond in &current {
                assert_eq!(cond.case.as_deref(), Some("TB-1"));
                assert_eq!(cond.item.as_deref(), Some("ITEM"));
                assert_eq!(cond.system, "sy-scjg-food");
            }
            board.take(&current, now);
            now += HOUR;
        }
        (board, c)
    }

    /// Promised 5 days and statutory 10 days after acceptance, moved on by every suspension
    /// that started after it (a stand-in for the calendar).
    fn natural_days(c: &Case, now: i64) -> Deadlines {
        let Some(a) = c.accepted_at() else {
            return Deadlines::default();
        };
        let stopped: i64 = c
            .suspended_intervals(now)
            .iter()
            .filter(|(s, _)| *s >= a)
            .map(|(s, e)| e - s)
            .sum();
        Deadlines {
            promised: Some(a + 5 * DAY + stopped),
            statutory: Some(a + 10 * DAY + stopped),
            ..Deadlines::default()
        }
    }

    fn only(board: &Board, rule: Rule) {
        for &other in Rule::ALL.iter().filter(|r| **r != rule) {
            assert_eq!(board.of(other), vec![], "{other}");
        }
    }

    #[test]
    fn time_limit_warns_turns_yellow_then_red_as_one_alert_kept_on_record_when_completed_late() {
        let events = [
            accept("a", 0),
            ev("r", 24, "审查", "2", "1"),
            complete("e", 11 * 24 + 5, CompletionResult::Certificate, None),
        ];
        let (board, _) = walk(&events, 16, natural_days);
        let a = t0();
        // Completed past the statutory limit: the 红牌 is a fact of the case now, shown for
        // the record hold after the completion, then resolved.
        assert_eq!(
            board.of(Rule::TimeLimit),
            vec![
                ("raise", Level::Warning, a + 4 * DAY),
                ("escalate", Level::Yellow, a + 5 * DAY + HOUR),
                ("escalate", Level::Red, a + 10 * DAY + HOUR),
                ("resolve", Level::Red, a + 14 * DAY + 5 * HOUR),
            ]
        );
        only(&board, Rule::TimeLimit);
    }

    #[test]
    fn time_limit_stops_while_suspended_and_resolves_when_completed_in_time() {
        // Two days in a hearing after acceptance push the warning and the promised date on.
        let mut hearing = ev("h", 24, "特别程序", "2", "6");
        hearing.special_procedure.as_mut().unwrap().kind = crate::model::SpecialKind::Hearing;
        let events = [
            accept("a", 0),
            hearing,
            ev("end", 72, "特别程序", "2", "1"),
            complete("e", 6 * 24 + 12, CompletionResult::Certificate, None),
        ];
        let (board, _) = walk(&events, 10, natural_days);
        assert_eq!(
            board.of(Rule::TimeLimit),
            vec![
                ("raise", Level::Warning, t0() + 6 * DAY),
                ("resolve", Level::Warning, t0() + 6 * DAY + 12 * HOUR),
            ]
        );
        only(&board, Rule::TimeLimit);
    }

    /// `event` as the hub received it at `at`.
    fn arrived(mut event: CaseEvent, at: i64) -> CaseEvent {
        event.received_at = Some(at);
        event
    }

    /// The rules' conditions for `case` at `now`, as (rule, level).
    fn holding(c: &Case, now: i64) -> Vec<(Rule, Level)> {
        evaluate(
            c,
            &item(),
            natural_days(c, now),
            now,
            &Thresholds::default(),
        )
        .into_iter()
        .map(|x| (x.rule, x.level))
        .collect()
    }

    #[test]
    fn a_case_reported_after_it_closed_late_gets_its_card_on_record_from_arrival() {
        // Accepted 11-20, completed 13 days later (past the statutory 10), both reported on
        // 12-10: a 红牌 from then, for the record hold, then resolved.
        let now = t0() + 20 * DAY;
        let events = [
            arrived(accept("a", 0), now),
            arrived(
                complete("e", 13 * 24, CompletionResult::Certificate, None),
                now,
            ),
        ];
        let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0(), &events);
        assert_eq!(holding(&c, now), vec![(Rule::TimeLimit, Level::Red)]);
        let evidence = &evaluate(
            &c,
            &item(),
            natural_days(&c, now),
            now,
            &Thresholds::default(),
        )[0]
        .evidence;
        assert_eq!(
            evidence,
            "closed past the statutory limit: accepted 2026-11-20T09:00:00.000+08:00, \
             promised date 2026-11-25T09:00:00.000+08:00, statutory limit \
             2026-11-30T09:00:00.000+08:00, closed 2026-12-03T09:00:00.000+08:00 (event e)"
        );
        let hold = now + 72 * HOUR;
        assert_eq!(holding(&c, hold - 1), vec![(Rule::TimeLimit, Level::Red)]);
        assert_eq!(holding(&c, hold), vec![]);
        assert_eq!(
            next_check(
                &c,
                &item(),
                natural_days(&c, now),
                now,
                &Thresholds::default()
            ),
            Some(hold)
        );
        // Past the promised date only: a 黄牌. On time: nothing.
        for (hours, expected) in [
            (7 * 24, vec![(Rule::TimeLimit, Level::Yellow)]),
            (5 * 24, vec![]),
        ] {
            let events = [
                arrived(accept("a", 0), now),
                arrived(
                    complete("e", hours, CompletionResult::Certificate, None),
                    now,
                ),
            ];
            let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0(), &events);
            assert_eq!(holding(&c, now), expected, "completed after {hours} h");
        }
    }

    #[test]
    fn record_alerts_count_their_hold_from_when_the_fact_arrived() {
        // A 不予受理 without reasons that happened 88 hours before it arrived.
        let now = t0() + 88 * HOUR;
        let mut refuse = ev("x", 0, "受理", "4", "3");
        refuse.opinion = None;
        let c = Case::from_events(
            "TB-1",
            "sy-scjg-food",
            "ITEM",
            t0(),
            &[arrived(refuse, now)],
        );
        assert_eq!(
            holding(&c, now),
            vec![(Rule::AcceptanceRefused, Level::Yellow)]
        );
        assert_eq!(
            holding(&c, now + 72 * HOUR - 1),
            vec![(Rule::AcceptanceRefused, Level::Yellow)]
        );
        assert_eq!(holding(&c, now + 72 * HOUR), vec![]);

        // Two 补正 of November, reported in December after the 办结 (reported on time).
        let done = t0() + 2 * DAY;
        let late = t0() + 20 * DAY;
        let events = [
            arrived(accept("a", 0), t0()),
            arrived(complete("e", 48, CompletionResult::Certificate, None), done),
            arrived(supplement("s1", 3, &["premises_layout"]), late),
            arrived(supplement("s2", 20, &["safety_rules"]), late + 1000),
        ];
        let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0(), &events);
        let got = holding(&c, late + 1000);
        assert!(
            got.contains(&(Rule::RepeatedSupplement, Level::Yellow)),
            "{got:?}"
        );
        assert!(got.contains(&(Rule::OutOfOrder, Level::Warning)), "{got:?}");
        assert_eq!(holding(&c, late + 1000 + 72 * HOUR), vec![]);
    }

    #[test]
    fn events_dated_before_the_application_reached_the_hub_are_implausible() {
        // 20 days before the hub received the application; 8 hours before (a server on UTC);
        // 4 minutes before (within the tolerance); after its own arrival (stored before such
        // events were refused).
        let now = t0() + DAY;
        let mut ahead = ev("later", 2, "审查", "2", "1");
        ahead.received_at = Some(t0() + HOUR);
        let events = [
            arrived(ev("d20", -20 * 24, "受理", "1", "4"), now),
            arrived(ev("h8", -8, "补正", "2", "5"), now),
            ev("close", 0, "审查", "2", "0"),
            ahead,
        ];
        let c = Case::from_events("TB-1", "sy-scjg-food", "ITEM", t0() + 4 * MINUTE, &events);
        let got: Vec<Condition> = evaluate(
            &c,
            &item(),
            Deadlines::default(),
            now,
            &Thresholds::default(),
        )
        .into_iter()
        .filter(|x| x.rule == Rule::ImplausibleTime)
        .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].level, Level::Warning);
        assert_eq!(
            got[0].evidence,
            "event d20 (受理 · 4) dated 2026-10-31T09:00:00.000+08:00, 20 days 4 minutes before \
             the hub received the application at 2026-11-20T09:04:00.000+08:00; \
             event h8 (补正 · 5) dated 2026-11-20T01:00:00.000+08:00, 8 hours 4 minutes before \
             the hub received the application at 2026-11-20T09:04:00.000+08:00; \
             event later (审查 · 1) dated 2026-11-20T11:00:00.000+08:00, 1 hour after the hub \
             received it at 2026-11-20T10:00:00.000+08:00"
        );
        // Plausible dates: nothing.
        let fine = Case::from_events(
            "TB-1",
            "sy-scjg-food",
            "ITEM",
            t0() + 4 * MINUTE,
            &[accept("a", 0)],
        );
        assert!(
            evaluate(
                &fine,
                &item(),
                Deadlines::default(),
                now,
                &Thresholds::default()
            )
            .iter()
            .all(|x| x.rule != Rule::ImplausibleTime)
        );
    }

    #[test]
    fn refused_messages_warn_until_the_hold_has_passed_since_the_latest() {
        let t = Thresholds::default();
        let reasons: Vec<String> = (1..=7).map(|i| format!("reason {i}")).collect();
        let refusals = Refusals {
            count: 3,
            first_at: t0(),
            latest_at: t0() + HOUR,
            latest_via: Via::Poll,
            latest_reasons: reasons,
        };
        let c = events_refused("sy-scjg-food", &refusals, t0() + 2 * HOUR, &t).unwrap();
        assert_eq!(
            (c.rule, c.level, c.case),
            (Rule::EventsRefused, Level::Warning, None)
        );
        assert_eq!(
            c.evidence,
            "3 messages refused since 2026-11-20T09:00:00.000+08:00; the latest at \
             2026-11-20T10:00:00.000+08:00 (by poll): reason 1; reason 2; reason 3; reason 4; \
             reason 5; and 2 more"
        );
        let end = refusals_end(&refusals, &t);
        assert_eq!(end, t0() + HOUR + 72 * HOUR);
        assert!(events_refused("sy-scjg-food", &refusals, end - 1, &t).is_some());
        assert!(events_refused("sy-scjg-food", &refusals, end, &t).is_none());
        assert!(Rule::EventsRefused.is_system_rule() && !Rule::ImplausibleTime.is_system_rule());
    }

    #[test]
    fn a_suspended_case_past_its_promised_date_stays_yellow() {
        let mut c = case();
        c.apply(&accept("a", 0));
        c.apply(&ev("s", 6 * 24, "补正", "2", "5"));
        let due = Deadlines {
            promised: Some(t0() + 5 * DAY),
            ..Deadlines::default()
        };
        let now = t0() + 8 * DAY;
        let got = evaluate(&c, &item(), due, now, &Thresholds::default());
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].rule, got[0].level),
            (Rule::TimeLimit, Level::Yellow)
        );
    }

    #[test]
    fn the_warning_comes_from_the_calendar_when_it_gives_one() {
        let mut c = case();
        c.apply(&accept("a", 0));
        let due = Deadlines {
            promised: Some(t0() + 7 * DAY),
            warning: Some(t0() + 4 * DAY),
            ..Deadlines::default()
        };
        let thresholds = Thresholds::default();
        assert_eq!(
            warning_at(&c, &due, t0(), &thresholds),
            Some(t0() + 4 * DAY)
        );
        let got = evaluate(&c, &item(), due, t0() + 4 * DAY, &thresholds);
        assert_eq!(got[0].level, Level::Warning);
        assert!(
            got[0]
                .evidence
                .starts_with("80% of the promised limit used at 2026-11-24T09:00:00.000+08:00"),
            "{}",
            got[0].evidence
        );
    }

    #[test]
    fn the_derived_warning_skips_suspended_time() {
        let mut c = case();
        c.apply(&accept("a", 0));
        c.apply(&ev("s", 24, "补正", "2", "5"));
        c.apply(&ev("back", 72, "补正", "2", "1"));
        // 10 days running between acceptance and the promised date, 2 of them stopped.
        let due = Deadlines {
            promised: Some(t0() + 12 * DAY),
            ..Deadlines::default()
        };
        assert_eq!(
            warning_at(&c, &due, t0(), &Thresholds::default()),
            Some(t0() + 10 * DAY)
        );
        let at_half = Thresholds {
            warn_percent: 5,
            ..Thresholds::default()
        };
        assert_eq!(warning_at(&c, &due, t0(), &at_half), Some(t0() + 12 * HOUR));
        assert_eq!(after_running(0, 10, &[(0, 5), (8, 9)]), 16);
        assert_eq!(running(0, 20, &[(0, 5), (8, 9), (19, 30)]), 13);
    }

    #[test]
    fn step_overdue_warns_once_and_resolves_when_the_step_is_done() {
        let events = [
            accept("a", 0),
            ev("r", 3 * 24 + 2, "审查", "2", "1"),
            ev("d", 4 * 24, "决定", "2", "1"),
        ];
        // 审查 may take 2 days; the case's own dates are far off.
        let due = |c: &Case, _| Deadlines {
            promised: c.accepted_at().map(|a| a + 30 * DAY),
            step: c.open_step().map(|o| StepDue {
                step: o.step,
                since: o.since,
                due: o.since + 2 * DAY,
            }),
            ..Deadlines::default()
        };
        let (board, _) = walk(&events, 5, due);
        assert_eq!(
            board.of(Rule::StepOverdue),
            vec![
                ("raise", Level::Warning, t0() + 2 * DAY + HOUR),
                ("resolve", Level::Warning, t0() + 3 * DAY + 2 * HOUR),
            ]
        );
        // The skipped review is a record of its own.
        assert_eq!(board.of(Rule::TimeLimit), vec![]);
    }

    #[test]
    fn a_step_deadline_for_another_step_or_start_counts_for_nothing() {
        let mut c = case();
        c.apply(&accept("a", 0));
        for step in [
            StepDue {
                step: NodeName::Decision,
                since: t0(),
                due: t0() + HOUR,
            },
            StepDue {
                step: NodeName::Review,
                since: t0() - DAY,
                due: t0() + HOUR,
            },
        ] {
            let due = Deadlines {
                step: Some(step),
                ..Deadlines::default()
            };
            assert_eq!(
                evaluate(&c, &item(), due, t0() + DAY, &Thresholds::default()),
                vec![]
            );
        }
    }

    #[test]
    fn out_of_order_warns_once_and_resolves_after_the_hold() {
        let events = [
            ev("d", 2, "决定", "2", "1"),
            accept("a", 1),
            ev("x", 4, "审查", "2", "1"),
            complete("e", 24, CompletionResult::Certificate, None),
        ];
        let (board, c) = walk(&events, 6, |_, _| Deadlines::default());
        assert_eq!(
            board.of(Rule::OutOfOrder),
            vec![
                ("raise", Level::Warning, t0() + 2 * HOUR),
                ("resolve", Level::Warning, t0() + 24 * HOUR + 72 * HOUR),
            ]
        );
        only(&board, Rule::OutOfOrder);
        let got = evaluate(
            &c,
            &item(),
            Deadlines::default(),
            t0() + 25 * HOUR,
            &Thresholds::default(),
        );
        assert_eq!(
            got[0].evidence,
            "event d (决定 · 1): 决定 before 受理; event a (受理 · 4): happened before an earlier report; \
             event x (审查 · 1): 审查 when already decided"
        );
    }

    #[test]
    fn out_of_order_evidence_lists_five_events_and_counts_the_rest() {
        let mut c = case();
        c.apply(&accept("a", 0));
        for i in 0..7 {
            c.apply(&accept(&format!("again-{i}"), 1 + i));
        }
        let got = evaluate(
            &c,
            &item(),
            Deadlines::default(),
            t0() + DAY,
            &Thresholds::default(),
        );
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .evidence
                .contains("event again-4 (受理 · 4): a second 受理")
        );
        assert!(!got[0].evidence.contains("again-5"));
        assert!(
            got[0].evidence.ends_with("; and 2 more"),
            "{}",
            got[0].evidence
        );
    }

    #[test]
    fn an_event_after_completion_raises_out_of_order_on_a_closed_case() {
        let events = [
            accept("a", 0),
            complete("e", 2, CompletionResult::Certificate, None),
            ev("late", 5 * 24, "审查", "2", "1"),
        ];
        let (board, _) = walk(&events, 10, |_, _| Deadlines::default());
        assert_eq!(
            board.of(Rule::OutOfOrder),
            vec![
                ("raise", Level::Warning, t0() + 5 * DAY),
                ("resolve", Level::Warning, t0() + 8 * DAY),
            ]
        );
        only(&board, Rule::OutOfOrder);
    }

    #[test]
    fn a_refusal_with_reasons_is_a_warning_and_without_a_yellow_card() {
        for (opinion, level) in [
            (Some("材料不符合法定形式"), Level::Warning),
            (None, Level::Yellow),
        ] {
            let mut refuse = ev("x", 3, "受理", "4", "3");
            refuse.opinion = opinion.map(str::to_owned);
            let (board, _) = walk(&[refuse], 5, |_, _| Deadlines::default());
            assert_eq!(
                board.of(Rule::AcceptanceRefused),
                vec![
                    ("raise", level, t0() + 3 * HOUR),
                    ("resolve", level, t0() + 75 * HOUR),
                ]
            );
            only(&board, Rule::AcceptanceRefused);
        }
    }

    #[test]
    fn a_completion_without_reason_is_a_yellow_card_until_the_hold_ends() {
        for result in [
            CompletionResult::Returned,
            CompletionResult::Void,
            CompletionResult::Deleted,
            CompletionResult::ReportedUp,
            CompletionResult::SupplementNeverArrived,
        ] {
            let events = [accept("a", 0), complete("e", 10, result, Some(" "))];
            let (board, _) = walk(&events, 5, |_, _| Deadlines::default());
            assert_eq!(
                board.of(Rule::CompletionWithoutReason),
                vec![
                    ("raise", Level::Yellow, t0() + 10 * HOUR),
                    ("resolve", Level::Yellow, t0() + 82 * HOUR),
                ],
                "{result:?}"
            );
            only(&board, Rule::CompletionWithoutReason);
        }
        // With a reason, or a result that needs none, nothing.
        for (result, reason) in [
            (CompletionResult::Returned, Some("申请人撤回")),
            (CompletionResult::Certificate, None),
            (CompletionResult::Completed, None),
        ] {
            let events = [accept("a", 0), complete("e", 10, result, reason)];
            let (board, _) = walk(&events, 1, |_, _| Deadlines::default());
            assert_eq!(board.log, vec![]);
        }
    }

    #[test]
    fn a_second_supplement_request_is_a_yellow_card_raised_once() {
        let events = [
            supplement("s1", 1, &["premises_layout"]),
            accept("a", 5),
            supplement("s2", 10, &["safety_rules"]),
            ev("r", 12, "审查", "2", "1"),
            supplement("s3", 14, &["application_form"]),
            complete("e", 30, CompletionResult::Certificate, None),
        ];
        let (board, c) = walk(&events, 6, |_, _| Deadlines::default());
        assert_eq!(
            board.of(Rule::RepeatedSupplement),
            vec![
                ("raise", Level::Yellow, t0() + 10 * HOUR),
                ("resolve", Level::Yellow, t0() + 102 * HOUR),
            ]
        );
        only(&board, Rule::RepeatedSupplement);
        let got = evaluate(
            &c,
            &item(),
            Deadlines::default(),
            t0() + 31 * HOUR,
            &Thresholds::default(),
        );
        assert!(
            got[0]
                .evidence
                .starts_with("3 supplement requests, where 第十四条"),
            "{}",
            got[0].evidence
        );
        assert!(
            got[0]
                .evidence
                .contains("event s2 at 2026-11-20T19:00:00.000+08:00 [safety_rules]")
        );
    }

    /// A material the catalog links to a license type (`shared_by`) counts as obtainable by
    /// sharing even when `shareable` is not set: one link for acceptance and this rule.
    #[test]
    fn asking_for_a_material_a_license_stands_for_is_a_yellow_card_too() {
        let mut item = item();
        let layout = item
            .materials
            .iter_mut()
            .find(|m| m.id == "premises_layout")
            .unwrap();
        assert!(!layout.shareable);
        let events = [accept("a", 0), supplement("s", 3, &["premises_layout"])];
        let at = t0() + 4 * HOUR;
        let (_, c) = walk(&events, 2, |_, _| Deadlines::default());
        let raised = |item: &Item| {
            evaluate(&c, item, Deadlines::default(), at, &Thresholds::default())
                .iter()
                .any(|r| r.rule == Rule::ShareableMaterialRequested)
        };
        assert!(!raised(&item));
        item.materials
            .iter_mut()
            .find(|m| m.id == "premises_layout")
            .unwrap()
            .shared_by = Some("11100000000013338W099".into());
        assert!(raised(&item));
    }

    #[test]
    fn asking_for_a_shareable_material_is_a_yellow_card() {
        let events = [
            accept("a", 0),
            supplement("s", 3, &["premises_layout", "business_license"]),
            ev("r", 20, "审查", "2", "1"),
            complete("e", 40, CompletionResult::Certificate, None),
        ];
        let (board, c) = walk(&events, 6, |_, _| Deadlines::default());
        assert_eq!(
            board.of(Rule::ShareableMaterialRequested),
            vec![
                ("raise", Level::Yellow, t0() + 3 * HOUR),
                ("resolve", Level::Yellow, t0() + 112 * HOUR),
            ]
        );
        only(&board, Rule::ShareableMaterialRequested);
        let got = evaluate(
            &c,
            &item(),
            Deadlines::default(),
            t0() + 41 * HOUR,
            &Thresholds::default(),
        );
        assert_eq!(
            got[0].evidence,
            "sharing can supply what was requested (第十三条): event s at 2026-11-20T12:00:00.000+08:00 asked for business_license"
        );
        // Materials only the applicant has, or ones the catalog does not know: nothing.
        let events = [
            accept("a", 0),
            supplement("s", 3, &["premises_layout", "no_such"]),
        ];
        let (board, _) = walk(&events, 1, |_, _| Deadlines::default());
        assert_eq!(board.log, vec![]);
    }

    #[test]
    fn system_silence_warns_once_and_resolves_when_heard_from_or_without_open_cases() {
        let t = Thresholds {
            system_silence_minutes: [("sy-slow".to_owned(), 240)].into(),
            ..Thresholds::default()
        };
        let mut board = Board::default();
        let seen = t0();
        let mut last_seen = seen;
        let mut open = 3;
        for minute in 0..=300 {
            let now = seen + minute * 60_000;
            if minute == 200 {
                last_seen = now;
            }
            if minute == 290 {
                open = 0;
            }
            let current: Vec<Condition> =
                system_silence("sy-scjg-food", Quiet::SinceHeard(last_seen), open, now, &t)
                    .into_iter()
                    .collect();
            board.take(&current, now);
        }
        assert_eq!(
            board.of(Rule::SystemSilent),
            vec![
                ("raise", Level::Warning, seen + 61 * 60_000),
                ("resolve", Level::Warning, seen + 200 * 60_000),
                ("raise", Level::Warning, seen + 261 * 60_000),
                ("resolve", Level::Warning, seen + 290 * 60_000),
            ]
        );
        let c = system_silence(
            "sy-scjg-food",
            Quiet::SinceHeard(seen),
            1,
            seen + 61 * 60_000,
            &t,
        )
        .unwrap();
        assert_eq!(c.case, None);
        assert_eq!(
            c.evidence,
            "no event or heartbeat since 2026-11-20T09:00:00.000+08:00 (61 minutes; threshold 60) with 1 open case"
        );
        assert!(
            system_silence(
                "sy-slow",
                Quiet::SinceHeard(seen),
                1,
                seen + 239 * 60_000,
                &t
            )
            .is_none()
        );
        assert!(
            system_silence(
                "sy-slow",
                Quiet::SinceHeard(seen),
                1,
                seen + 241 * 60_000,
                &t
            )
            .is_some()
        );
        let off = Thresholds {
            silence_minutes: 0,
            ..Thresholds::default()
        };
        assert!(
            system_silence(
                "sy-scjg-food",
                Quiet::SinceHeard(seen),
                1,
                seen + 100 * DAY,
                &off
            )
            .is_none()
        );
    }

    #[test]
    fn a_messy_case_raises_each_rule_once_and_resolves_each_once() {
        let mut refuse_late = ev("x", 30, "受理", "4", "2");
        refuse_late.opinion = None;
        let events = [
            supplement("s1", 1, &["business_license"]),
            accept("a", 2),
            ev("d", 4, "决定", "2", "1"),
            supplement("s2", 5, &["premises_layout"]),
            ev("back", 7, "补正", "2", "1"),
            refuse_late,
            complete("e", 6 * 24, CompletionResult::Returned, None),
        ];
        let due = |c: &Case, now| {
            let mut d = natural_days(c, now);
            d.step = c.open_step().map(|o| StepDue {
                step: o.step,
                since: o.since,
                due: o.since + DAY,
            });
            d
        };
        let (board, _) = walk(&events, 12, due);
        let close = t0() + 6 * DAY;
        let hold = close + 72 * HOUR;
        let raised_resolved = |rule| {
            let got = board.of(rule);
            assert_eq!(
                got.iter().filter(|(w, ..)| *w == "raise").count(),
                1,
                "{rule}"
            );
            assert_eq!(
                got.iter().filter(|(w, ..)| *w == "resolve").count(),
                1,
                "{rule}"
            );
            got
        };
        for rule in [
            Rule::OutOfOrder,
            Rule::RepeatedSupplement,
            Rule::ShareableMaterialRequested,
        ] {
            let got = raised_resolved(rule);
            assert_eq!(got.last().unwrap().2, hold, "{rule}");
        }
        assert_eq!(
            raised_resolved(Rule::CompletionWithoutReason)
                .last()
                .unwrap()
                .2,
            hold
        );
        let time = raised_resolved(Rule::TimeLimit);
        assert_eq!(
            time.iter().map(|(w, l, _)| (*w, *l)).collect::<Vec<_>>(),
            vec![
                ("raise", Level::Warning),
                ("escalate", Level::Yellow),
                ("resolve", Level::Yellow),
            ]
        );
        // Completed past the promised date: on record until the hold ends.
        assert_eq!(time.last().unwrap().2, hold);
        let step = raised_resolved(Rule::StepOverdue);
        assert_eq!(step.last().unwrap().2, close);
        // The refusal after acceptance was not applied, so it is only out of order.
        assert_eq!(board.of(Rule::AcceptanceRefused), vec![]);
        assert!(board.open.is_empty());
    }

    #[test]
    fn reconcile_raises_escalates_resolves_and_otherwise_leaves_alone() {
        let cond = |rule, case: &str, level| Condition {
            rule,
            level,
            system: "s".into(),
            case: Some(case.into()),
            item: Some("i".into()),
            evidence: "e".into(),
        };
        let alert = |c: &Condition| Alert {
            key: c.key(),
            level: c.level,
        };
        let warn = cond(Rule::TimeLimit, "A", Level::Warning);
        let yellow = cond(Rule::TimeLimit, "A", Level::Yellow);
        let other_case = cond(Rule::TimeLimit, "B", Level::Warning);
        let other_rule = cond(Rule::OutOfOrder, "A", Level::Warning);
        assert_eq!(
            reconcile(&[], std::slice::from_ref(&warn), 1),
            vec![AlertChange::Raise {
                condition: warn.clone(),
                at: 1
            }]
        );
        assert_eq!(
            reconcile(&[alert(&warn)], std::slice::from_ref(&warn), 2),
            vec![]
        );
        assert_eq!(
            reconcile(&[alert(&warn)], std::slice::from_ref(&yellow), 3),
            vec![AlertChange::Escalate {
                key: warn.key(),
                from: Level::Warning,
                condition: yellow.clone(),
                at: 3
            }]
        );
        // Never down a level.
        assert_eq!(
            reconcile(&[alert(&yellow)], std::slice::from_ref(&warn), 4),
            vec![]
        );
        // The highest of several conditions with one key counts.
        assert_eq!(
            reconcile(&[], &[warn.clone(), yellow.clone()], 5),
            vec![AlertChange::Raise {
                condition: yellow.clone(),
                at: 5
            }]
        );
        // Keys are rule and case.
        assert_eq!(
            reconcile(
                &[alert(&warn)],
                &[other_case.clone(), other_rule.clone()],
                6
            ),
            vec![
                AlertChange::Raise {
                    condition: other_case,
                    at: 6
                },
                AlertChange::Raise {
                    condition: other_rule,
                    at: 6
                },
                AlertChange::Resolve {
                    key: warn.key(),
                    level: Level::Warning,
                    at: 6
                },
            ]
        );
    }

    #[test]
    fn next_check_is_the_next_threshold_a_timer_should_wake_for() {
        let item = item();
        let t = Thresholds::default();
        let mut c = case();
        c.apply(&accept("a", 0));
        let due = Deadlines {
            promised: Some(t0() + 5 * DAY),
            statutory: Some(t0() + 10 * DAY),
            step: Some(StepDue {
                step: NodeName::Review,
                since: t0(),
                due: t0() + 2 * DAY,
            }),
            ..Deadlines::default()
        };
        assert_eq!(
            next_check(&c, &item, due, t0(), &t),
            Some(t0() + 2 * DAY + 1)
        );
        assert_eq!(
            next_check(&c, &item, due, t0() + 3 * DAY, &t),
            Some(t0() + 4 * DAY)
        );
        assert_eq!(
            next_check(&c, &item, due, t0() + 4 * DAY, &t),
            Some(t0() + 5 * DAY + 1)
        );
        assert_eq!(
            next_check(&c, &item, due, t0() + 6 * DAY, &t),
            Some(t0() + 10 * DAY + 1)
        );
        assert_eq!(next_check(&c, &item, due, t0() + 11 * DAY, &t), None);
        // Whatever the time, the condition changes exactly there.
        for (at, before, after) in [
            (t0() + 4 * DAY, None, Some(Level::Warning)),
            (
                t0() + 5 * DAY + 1,
                Some(Level::Warning),
                Some(Level::Yellow),
            ),
            (t0() + 10 * DAY + 1, Some(Level::Yellow), Some(Level::Red)),
        ] {
            let level = |now| {
                evaluate(&c, &item, due, now, &t)
                    .into_iter()
                    .find(|x| x.rule == Rule::TimeLimit)
                    .map(|x| x.level)
            };
            assert_eq!((level(at - 1), level(at)), (before, after));
        }
        // A closed case wakes once more, when its record alerts end.
        c.apply(&supplement("s1", 1, &["premises_layout"]));
        c.apply(&supplement("s2", 2, &["premises_layout"]));
        c.apply(&complete("e", 30, CompletionResult::Certificate, None));
        assert_eq!(
            next_check(&c, &item, due, t0() + 31 * HOUR, &t),
            Some(t0() + 102 * HOUR)
        );
        assert_eq!(next_check(&c, &item, due, t0() + 102 * HOUR, &t), None);
    }

    #[test]
    fn thresholds_read_from_toml_with_defaults() {
        let t: Thresholds = toml::from_str(
            r#"
            warn_percent = 75
            silence_minutes = 30
            [step_limits]
            "受理" = { working_days = 5 }
            "审查" = { hours = 48 }
            [system_silence_minutes]
            sy-scjg-food = 15
            "#,
        )
        .unwrap();
        assert_eq!(t.warn_percent, 75);
        assert_eq!(t.record_hold_hours, 72);
        assert_eq!(t.clock_tolerance_minutes, 5);
        assert_eq!(t.future_limit_minutes, 1440);
        assert_eq!(
            t.step_limit(NodeName::Acceptance),
            Some(TimeLimit {
                value: 5,
                unit: TimeUnit::WorkingDay
            })
        );
        assert_eq!(
            t.step_limit(NodeName::Review),
            Some(TimeLimit {
                value: 48,
                unit: TimeUnit::Hour
            })
        );
        assert_eq!(t.step_limit(NodeName::Decision), None);
        assert_eq!(t.silence_minutes_for("sy-scjg-food"), 15);
        assert_eq!(t.silence_minutes_for("other"), 30);
        assert_eq!(t.check(), Vec::<String>::new());
        assert_eq!(
            toml::from_str::<Thresholds>("").unwrap(),
            Thresholds::default()
        );
        for bad in [
            "warn_percnt = 80",
            "[step_limits]\n\"批准\" = { hours = 1 }",
            "[step_limits]\n\"审查\" = { days = 1 }",
            "[step_limits]\n\"审查\" = { hours = 1, working_days = 1 }",
        ] {
            assert!(toml::from_str::<Thresholds>(bad).is_err(), "{bad}");
        }
        let wrong: Thresholds = toml::from_str(
            "warn_percent = 0\nrecord_hold_hours = 0\n[step_limits]\n\"补正\" = { hours = 0 }",
        )
        .unwrap();
        assert_eq!(wrong.check().len(), 4, "{:?}", wrong.check());
        // Events within the tolerance are taken, so the refusal limit cannot be below it.
        let refuses_tolerated: Thresholds =
            toml::from_str("clock_tolerance_minutes = 10\nfuture_limit_minutes = 9").unwrap();
        assert_eq!(
            refuses_tolerated.check(),
            [
                "future_limit_minutes: must be at least clock_tolerance_minutes (10): an event \
              dated ahead within the tolerance is taken, so it cannot be refused"
            ]
        );
        let equal: Thresholds =
            toml::from_str("clock_tolerance_minutes = 10\nfuture_limit_minutes = 10").unwrap();
        assert_eq!(equal.check(), Vec::<String>::new());
    }

    #[test]
    fn ids_and_levels_are_stable() {
        let ids: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "time_limit",
                "step_overdue",
                "out_of_order",
                "acceptance_refused",
                "completion_without_reason",
                "repeated_supplement",
                "shareable_material_requested",
                "system_silent",
                "events_refused",
                "implausible_time",
                "dispute_overdue",
                "result_unsettled",
            ]
        );
        for &r in Rule::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert!(Level::Warning < Level::Yellow && Level::Yellow < Level::Red);
        assert_eq!(
            [Level::Warning, Level::Yellow, Level::Red].map(|l| (l.as_str(), l.label())),
            [("warning", "预警"), ("yellow", "黄牌"), ("red", "红牌")]
        );
    }

    #[test]
    fn evidence_never_carries_personal_data() {
        let secret = "13043419840726291X";
        let mut events = vec![
            supplement("s1", 1, &["business_license"]),
            accept("a", 2),
            supplement("s2", 3, &["premises_layout"]),
            ev("d", 4, "决定", "2", "1"),
            complete("e", 5, CompletionResult::Returned, Some(" ")),
        ];
        for e in &mut events {
            e.opinion = Some(format!("申请人 {secret}"));
            if let Some(s) = e.supplement.as_mut() {
                s.reason = format!("{secret} 的材料");
            }
        }
        let mut c = case();
        for e in &events {
            c.apply(e);
        }
        let due = Deadlines {
            promised: Some(t0()),
            statutory: Some(t0()),
            ..Deadlines::default()
        };
        let mut all = evaluate(&c, &item(), due, t0() + 6 * HOUR, &Thresholds::default());
        assert_eq!(all.len(), 5, "{all:?}");
        all.extend(system_silence(
            "s",
            Quiet::SinceHeard(t0()),
            1,
            t0() + DAY,
            &Thresholds::default(),
        ));
        for cond in all {
            assert!(!cond.evidence.contains(secret), "{}", cond.evidence);
            assert!(!cond.evidence.contains("王五"), "{}", cond.evidence);
            assert!(!cond.evidence.contains("申请人"), "{}", cond.evidence);
        }
    }
}
