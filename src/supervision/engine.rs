//! The supervision engine: follows the feed's case events, keeps each watched case's alerts in
//! step with the rules, and wakes on a timer when a case crosses a threshold.
//!
//! [`Engine::step`] does one round at a given time: it reads the case events after its cursor
//! (`supervision_engine` in `cursors`), rebuilds each touched case from its stored events,
//! computes its deadlines on the calendar, evaluates the rules and reconciles them with the open
//! alerts; then it does the same for the cases whose next check has come, and checks the
//! systems with open cases for silence. Alert changes, their feed entries and the cursor commit
//! together, so an engine that restarts resumes where the last commit left it and, because it
//! reconciles against the stored open alerts, raises nothing twice.
//!
//! Between rounds the engine keeps, per watched case, the next moment at which time alone can
//! change its alerts ([`rules::next_check`]), and [`Engine::run`] sleeps until the earliest of
//! them or until the feed's head moves (looked at once a second). Cases are never polled.
//!
//! After a restart it watches the applications with events that are not completed, and those
//! with open alerts, and evaluates each once.

use super::calendar::Calendar;
use super::case::{Case, CaseEvent};
use super::rules::{
    self, Alert, AlertChange, AlertKey, Deadlines, Level, Rule, StepDue, Thresholds,
};
use crate::catalog::Item;
use crate::clock;
use crate::store::{AlertAction, AlertRecord, AlertWrite, FeedEntry, FeedQuery, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The engine's position in the feed, in `cursors`.
pub const CURSOR: &str = "supervision_engine";

/// Case events read per transaction.
const PAGE: u32 = 500;

/// How often [`Engine::run`] looks at the feed's head for new events.
const POLL_MS: i64 = 1000;

const MINUTE: i64 = 60_000;

/// A case the engine watches.
#[derive(Debug, Clone)]
struct Watched {
    system: String,
    open: bool,
    /// When time alone next changes its alerts; `None` when only an event can.
    next: Option<i64>,
}

/// What one [`Engine::step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Case events read from the feed.
    pub events: usize,
    /// Cases evaluated.
    pub cases: usize,
    /// The alert entries appended to the feed, in order.
    pub entries: Vec<FeedEntry>,
}

/// An alert change before it is written.
struct Pending {
    action: AlertAction,
    id: Option<String>,
    rule: Rule,
    system: String,
    application: Option<String>,
    item: Option<String>,
    department: String,
    level: Level,
    from: Option<Level>,
    evidence: String,
    at: i64,
}

pub struct Engine {
    store: Store,
    calendar: Calendar,
    thresholds: Thresholds,
    started: bool,
    cursor: i64,
    /// By application id.
    cases: BTreeMap<String, Watched>,
    /// When each system's latest case event arrived.
    last_seen: BTreeMap<String, i64>,
    /// The `now` of the latest step: wake times at or before it are spent.
    last_step: i64,
}

impl Engine {
    pub fn new(store: Store, calendar: Calendar, thresholds: Thresholds) -> Engine {
        Engine {
            store,
            calendar,
            thresholds,
            started: false,
            cursor: 0,
            cases: BTreeMap::new(),
            last_seen: BTreeMap::new(),
            last_step: i64::MIN,
        }
    }

    /// The feed position up to which case events have been handled.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next moment at which time alone changes an alert: a case's next check or a system's
    /// silence threshold. `None` when only new events can.
    pub fn next_wake(&self) -> Option<i64> {
        let cases = self.cases.values().filter_map(|w| w.next);
        let silences = self.open_systems().into_keys().filter_map(|system| {
            let minutes = self.thresholds.silence_minutes_for(&system);
            let seen = self.last_seen.get(&system)?;
            (minutes > 0).then(|| seen + i64::from(minutes) * MINUTE + 1)
        });
        cases.chain(silences).filter(|&t| t > self.last_step).min()
    }

    /// One round at `now_ms`: new case events first, then the cases whose check is due, then
    /// systems' silence.
    pub async fn step(&mut self, now_ms: i64) -> Result<StepReport, StoreError> {
        let mut report = StepReport::default();
        if !self.started {
            self.cursor = self.store.cursor(CURSOR).await?;
            self.last_seen = self.store.systems_last_event().await?.into_iter().collect();
            for id in self.store.supervised_applications().await? {
                // Unknown until evaluated: due at once.
                self.cases.insert(
                    id,
                    Watched {
                        system: String::new(),
                        open: true,
                        next: Some(i64::MIN),
                    },
                );
            }
            self.started = true;
        }
        let mut evaluated = BTreeSet::new();
        loop {
            let page = self
                .store
                .feed_after(&FeedQuery {
                    after: self.cursor,
                    kind: Some("event".into()),
                    limit: PAGE,
                    ..FeedQuery::default()
                })
                .await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            let mut touched = BTreeSet::new();
            for e in &page {
                touched.insert(e.application_id.clone());
                let seen = self.last_seen.entry(e.system_id.clone()).or_insert(e.at);
                *seen = (*seen).max(e.at);
            }
            let open = self.store.open_alerts().await?;
            let mut pending = Vec::new();
            for id in &touched {
                pending.extend(self.evaluate_case(id, &open, now_ms).await?);
            }
            report
                .entries
                .extend(self.write(&pending, Some((CURSOR, last))).await?);
            self.cursor = last;
            report.events += page.len();
            report.cases += touched.len();
            evaluated.extend(touched);
            if page.len() < PAGE as usize {
                break;
            }
        }

        let due: Vec<String> = self
            .cases
            .iter()
            .filter(|(id, w)| w.next.is_some_and(|t| t <= now_ms) && !evaluated.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        let open = self.store.open_alerts().await?;
        let mut pending = Vec::new();
        for id in &due {
            pending.extend(self.evaluate_case(id, &open, now_ms).await?);
        }
        report.cases += due.len();
        pending.extend(self.evaluate_systems(&open, now_ms));
        if !pending.is_empty() {
            report.entries.extend(self.write(&pending, None).await?);
        }
        self.last_step = now_ms;
        Ok(report)
    }

    /// Steps whenever the feed's head moves or a wake time comes, until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut head_seen: Option<i64> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = clock::now_millis();
            let mut sleep_ms = POLL_MS;
            match self.store.feed_head().await {
                Ok(head) => {
                    let due = self.next_wake().is_some_and(|t| t <= now);
                    if head_seen != Some(head) || due {
                        match self.step(now).await {
                            // The head read before the step: everything up to it was handled.
                            Ok(_) => head_seen = Some(head),
                            Err(e) => {
                                tracing::warn!(cause = %e, "supervision round failed; retrying")
                            }
                        }
                    }
                    if let Some(wake) = self.next_wake() {
                        sleep_ms = (wake - clock::now_millis()).clamp(0, POLL_MS);
                    }
                }
                Err(e) => tracing::warn!(cause = %e, "cannot read the supervision feed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Rebuilds one case and says what its alerts need. Updates or drops its watch.
    async fn evaluate_case(
        &mut self,
        id: &str,
        open: &[AlertRecord],
        now_ms: i64,
    ) -> Result<Vec<Pending>, StoreError> {
        let Some(app) = self.store.application(id).await? else {
            self.cases.remove(id);
            return Ok(Vec::new());
        };
        let item = match self
            .store
            .item_version(&app.item_code, app.item_version)
            .await?
        {
            Some(item) => item,
            None => match self.store.current_item(&app.item_code).await? {
                Some(item) => item,
                None => {
                    tracing::warn!(application = id, item = %app.item_code, "case not supervised: its item is not in the catalog");
                    self.cases.remove(id);
                    return Ok(Vec::new());
                }
            },
        };
        let mut events = Vec::new();
        for record in self.store.events_of(id).await? {
            let parsed = serde_json::from_str(&record.body)
                .ok()
                .and_then(|v| CaseEvent::from_json(&v).ok());
            match parsed {
                Some(event) => events.push(event),
                None => {
                    tracing::warn!(application = id, event = %record.event_id, "stored case event is not canonical; left out")
                }
            }
        }
        let case = Case::from_events(id, &app.system_id, &app.item_code, app.accepted_at, &events);
        let due = self.deadlines(&case, &item, now_ms);
        let current = rules::evaluate(&case, &item, due, now_ms, &self.thresholds);
        let mine: Vec<&AlertRecord> = open
            .iter()
            .filter(|a| a.application_id.as_deref() == Some(id))
            .collect();
        let pending = self.pending(&mine, &current, now_ms, &item.department.uscc);
        let next = rules::next_check(&case, &item, due, now_ms, &self.thresholds);
        let alerts_left = mine.len()
            + pending
                .iter()
                .filter(|p| p.action == AlertAction::Raise)
                .count()
            > pending
                .iter()
                .filter(|p| p.action == AlertAction::Resolve)
                .count();
        if case.is_open() || next.is_some() || alerts_left {
            self.cases.insert(
                id.to_owned(),
                Watched {
                    system: app.system_id.clone(),
                    open: case.is_open(),
                    next,
                },
            );
        } else {
            self.cases.remove(id);
        }
        Ok(pending)
    }

    /// The case's deadlines on the calendar, its suspensions counted up to `now_ms`.
    fn deadlines(&self, case: &Case, item: &Item, now_ms: i64) -> Deadlines {
        let spans = case.suspended_intervals(now_ms);
        let mut due = Deadlines::default();
        if let Some(accepted) = case.accepted_at() {
            due.promised = self
                .calendar
                .deadline(accepted, &item.promised_limit, &spans);
            due.statutory = self
                .calendar
                .deadline(accepted, &item.statutory_limit, &spans);
            due.warning = self.calendar.when_used(
                accepted,
                &item.promised_limit,
                &spans,
                f64::from(self.thresholds.warn_percent) / 100.0,
            );
        }
        if let Some(open) = case.open_step()
            && let Some(limit) = self.thresholds.step_limit(open.step)
            && let Some(at) = self.calendar.deadline(open.since, &limit, &spans)
        {
            due.step = Some(StepDue {
                step: open.step,
                since: open.since,
                due: at,
            });
        }
        due
    }

    /// Systems with open cases, and how many each has.
    fn open_systems(&self) -> BTreeMap<String, usize> {
        let mut systems = BTreeMap::new();
        for w in self
            .cases
            .values()
            .filter(|w| w.open && !w.system.is_empty())
        {
            *systems.entry(w.system.clone()).or_insert(0) += 1;
        }
        systems
    }

    /// `system_silent` for the systems with open cases or an open silence alert.
    fn evaluate_systems(&self, open: &[AlertRecord], now_ms: i64) -> Vec<Pending> {
        let counts = self.open_systems();
        let mut systems: BTreeSet<String> = counts.keys().cloned().collect();
        let silent =
            |a: &&AlertRecord| a.application_id.is_none() && a.rule == Rule::SystemSilent.id();
        systems.extend(open.iter().filter(silent).map(|a| a.system_id.clone()));
        let mut pending = Vec::new();
        for system in systems {
            let cases = counts.get(&system).copied().unwrap_or(0);
            let seen = self.last_seen.get(&system).copied().unwrap_or(now_ms);
            let current: Vec<_> =
                rules::system_silence(&system, seen, cases, now_ms, &self.thresholds)
                    .into_iter()
                    .collect();
            let mine: Vec<&AlertRecord> = open
                .iter()
                .filter(silent)
                .filter(|a| a.system_id == system)
                .collect();
            pending.extend(self.pending(&mine, &current, now_ms, ""));
        }
        pending
    }

    /// Reconciles `current` with the open alerts `mine` and turns the changes into writes.
    fn pending(
        &self,
        mine: &[&AlertRecord],
        current: &[rules::Condition],
        now_ms: i64,
        department: &str,
    ) -> Vec<Pending> {
        let known: Vec<(Alert, &AlertRecord)> = mine
            .iter()
            .filter_map(|a| {
                let alert = Alert {
                    key: AlertKey {
                        rule: parse_rule(&a.rule)?,
                        system: a.system_id.clone(),
                        case: a.application_id.clone(),
                    },
                    level: parse_level(&a.level)?,
                };
                Some((alert, *a))
            })
            .collect();
        let alerts: Vec<Alert> = known.iter().map(|(a, _)| a.clone()).collect();
        let record = |key: &AlertKey| known.iter().find(|(a, _)| &a.key == key).map(|(_, r)| *r);
        rules::reconcile(&alerts, current, now_ms)
            .into_iter()
            .filter_map(|change| {
                Some(match change {
                    AlertChange::Raise { condition, at } => Pending {
                        action: AlertAction::Raise,
                        id: None,
                        rule: condition.rule,
                        system: condition.system,
                        application: condition.case,
                        item: condition.item,
                        department: department.to_owned(),
                        level: condition.level,
                        from: None,
                        evidence: condition.evidence,
                        at,
                    },
                    AlertChange::Escalate {
                        key,
                        from,
                        condition,
                        at,
                    } => Pending {
                        action: AlertAction::Escalate,
                        id: Some(record(&key)?.id.clone()),
                        rule: condition.rule,
                        system: condition.system,
                        application: condition.case,
                        item: condition.item,
                        department: department.to_owned(),
                        level: condition.level,
                        from: Some(from),
                        evidence: condition.evidence,
                        at,
                    },
                    AlertChange::Resolve { key, level, at } => {
                        let r = record(&key)?;
                        Pending {
                            action: AlertAction::Resolve,
                            id: Some(r.id.clone()),
                            rule: key.rule,
                            system: key.system,
                            application: key.case,
                            item: r.item_code.clone(),
                            department: department.to_owned(),
                            level,
                            from: None,
                            evidence: r.evidence.clone(),
                            at,
                        }
                    }
                })
            })
            .collect()
    }

    async fn write(
        &self,
        pending: &[Pending],
        cursor: Option<(&str, i64)>,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let writes: Vec<AlertWrite> = pending
            .iter()
            .map(|p| AlertWrite {
                action: p.action,
                id: p.id.as_deref(),
                rule: p.rule.id(),
                system_id: &p.system,
                application_id: p.application.as_deref(),
                item_code: p.item.as_deref(),
                department: &p.department,
                level: p.level.as_str(),
                from_level: p.from.map(Level::as_str),
                evidence: &p.evidence,
                at: p.at,
            })
            .collect();
        if writes.is_empty() && cursor.is_none() {
            return Ok(Vec::new());
        }
        let entries = self.store.apply_alert_changes(&writes, cursor).await?;
        for e in &entries {
            tracing::info!(routing_key = %e.routing_key, application = %e.application_id, "supervision alert");
        }
        Ok(entries)
    }
}

fn parse_rule(id: &str) -> Option<Rule> {
    Rule::ALL.into_iter().find(|r| r.id() == id)
}

fn parse_level(text: &str) -> Option<Level> {
    [Level::Warning, Level::Yellow, Level::Red]
        .into_iter()
        .find(|l| l.as_str() == text)
}
