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
//! A case is judged on its facts whenever they arrive: it is rebuilt in the order its events
//! happened, each knowing when the hub received it, so a case reported all at once after it
//! closed late gets its 黄牌 or 红牌 on record, and record alerts are held from arrival.
//!
//! Between rounds the engine keeps, per watched case, the next moment at which time alone can
//! change its alerts ([`rules::next_check`]), and [`Engine::run`] sleeps until the earliest of
//! them or until the feed's head moves (looked at once a second). Cases are never polled.
//!
//! After a restart it watches the applications with events that are not completed, and those
//! with open alerts, and evaluates each once.
//!
//! Each evaluation also upserts the case's summary (state, dues, completion on time, handling
//! time) and each new event's reporting lag, in the same transaction as the alert changes: the
//! open-cases query and the statistics read those rows instead of the feed.
//!
//! One engine per store: several hubs may share a PostgreSQL database, and each runs an engine,
//! but only the holder of the `supervision_engine` lease ([`LEASE_MS`] long) steps. Every step
//! first takes or renews the lease with a conditional UPDATE, and every write renews it again
//! inside its transaction and is dropped when another engine holds it by then, so an engine that
//! stalled past its lease cannot write behind its successor. The others try each second and one
//! takes over when the holder's lease runs out; a hub that stops hands the lease back. An engine
//! that gets the lease after someone else held it forgets what it knew and starts from the
//! store, as after a restart.

use crate::catalog::Item;
use crate::clock;
use crate::model::{AlertAction, CaseEvent, FeedKind, Level, Rule, parse_time};
use crate::store::{
    AlertRecord, AlertText, AlertWrite, CaseSummary, EngineRound, FeedEntry, FeedQuery, LeaseHold,
    ReportingLag, Store, StoreError,
};
use crate::supervision::calendar::Calendar;
use crate::supervision::case::Case;
use crate::supervision::rules::{
    self, Alert, AlertChange, AlertKey, Deadlines, Quiet, Refusals, StepDue, Thresholds,
};
use crate::telemetry::Telemetry;
use crate::telemetry::trace::{self, SpanContext, SpanKind};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The engine's position in the feed, in `cursors`.
pub const CURSOR: &str = "supervision_engine";

/// The lease that lets one engine per store step, in `leases`.
pub const LEASE: &str = "supervision_engine";

/// How long a lease lasts unless renewed: the longest the alerts stand still when a hub dies.
pub const LEASE_MS: i64 = 15_000;

/// A running engine renews its lease when less than this is left, so a few missed renewals in a
/// row do not cost it the lease.
const RENEW_LEFT_MS: i64 = LEASE_MS * 2 / 3;

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
    /// When the hub accepted the application: the case has been open since.
    since: i64,
    /// When time alone next changes its alerts; `None` when only an event can.
    next: Option<i64>,
}

/// A system's open cases: how many, and since when the oldest has been open.
#[derive(Debug, Clone, Copy)]
struct OpenCases {
    count: usize,
    since: i64,
}

impl Default for OpenCases {
    fn default() -> OpenCases {
        OpenCases {
            count: 0,
            since: i64::MAX,
        }
    }
}

impl OpenCases {
    fn add(&mut self, count: usize, since: i64) {
        self.count += count;
        self.since = self.since.min(since);
    }
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
    /// Whether this engine held the lease through the round; when not, it did nothing (or
    /// stopped at the write that found the lease gone).
    pub leading: bool,
}

/// A case's evaluation: what its alerts need and its summary.
struct Evaluation {
    pending: Vec<Pending>,
    summary: Option<CaseSummary>,
}

impl Evaluation {
    fn none() -> Evaluation {
        Evaluation {
            pending: Vec::new(),
            summary: None,
        }
    }
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
    /// The trace of the application it is about, when it has one.
    trace: Option<SpanContext>,
}

pub struct Engine {
    store: Store,
    calendar: Calendar,
    thresholds: Thresholds,
    started: bool,
    cursor: i64,
    /// By application id.
    cases: BTreeMap<String, Watched>,
    /// When each system was last heard from: its latest case event's arrival or heartbeat.
    last_seen: BTreeMap<String, i64>,
    /// Per system, the applications it has not reported on yet: how many, and since when.
    awaiting: BTreeMap<String, (usize, i64)>,
    /// Per system, its messages refused within the record hold.
    refusals: BTreeMap<String, Refusals>,
    /// Per system, its holders' unresolved disputes: (id, due at).
    disputes: BTreeMap<String, Vec<(String, i64)>>,
    /// Per system, its results awaiting their completion: (license id, received at).
    unsettled: BTreeMap<String, Vec<(String, i64)>>,
    /// Each system's department USCC, as its cases, its applications and its refusals say: a
    /// system's own alerts carry it, so that a feed filtered by department keeps them.
    departments: BTreeMap<String, String>,
    /// Item versions as cases name them: a version never changes once written.
    items: HashMap<(String, i64), Arc<Item>>,
    /// The `now` of the latest step: wake times at or before it are spent.
    last_step: i64,
    /// Who this engine is in `leases`: unique per engine.
    holder: String,
    /// The lease's epoch when this engine took it; `None` while it does not hold it.
    lease_epoch: Option<i64>,
    /// Until when the lease is held, as last renewed.
    lease_until: Option<i64>,
    /// Where the spans of alerts raised on applications go.
    telemetry: Arc<Telemetry>,
}

/// Makes holder names unique among the engines of one process (tests run several).
static ENGINES: AtomicU64 = AtomicU64::new(0);

/// A name no other engine uses: host, process, start time and a counter.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hub".to_owned());
    format!(
        "{host}/{}/{}/{}",
        std::process::id(),
        clock::now_millis(),
        ENGINES.fetch_add(1, Ordering::Relaxed)
    )
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
            awaiting: BTreeMap::new(),
            refusals: BTreeMap::new(),
            disputes: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            departments: BTreeMap::new(),
            items: HashMap::new(),
            last_step: i64::MIN,
            holder: holder_name(),
            lease_epoch: None,
            lease_until: None,
            telemetry: Telemetry::unexported(),
        }
    }

    /// The engine, recording into the hub's telemetry.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Engine {
        self.telemetry = telemetry;
        self
    }

    /// This engine's name in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Hands the lease back, if held, so that another hub's engine takes over at once.
    pub async fn release(&mut self) -> Result<(), StoreError> {
        if self.lease_epoch.is_some() {
            self.store.release_lease(LEASE, &self.holder).await?;
        }
        self.forget();
        Ok(())
    }

    /// Drops what this engine knows of the cases: another engine may have moved on since.
    fn forget(&mut self) {
        self.started = false;
        self.cases.clear();
        self.last_seen.clear();
        self.awaiting.clear();
        self.refusals.clear();
        self.disputes.clear();
        self.unsettled.clear();
        self.lease_epoch = None;
        self.lease_until = None;
    }

    /// Takes or renews the lease at `now_ms`; whether this engine holds it.
    async fn hold(&mut self, now_ms: i64) -> Result<bool, StoreError> {
        let until = now_ms.saturating_add(LEASE_MS);
        let taken = self
            .store
            .take_lease(LEASE, &self.holder, now_ms, until)
            .await?;
        let Some(epoch) = taken else {
            if self.lease_epoch.is_some() {
                tracing::warn!(holder = %self.holder, "the supervision lease went to another hub; standing by");
            }
            self.forget();
            return Ok(false);
        };
        if self.lease_epoch != Some(epoch) {
            // New, or back after another holder: what this engine remembers may be stale.
            self.forget();
            self.lease_epoch = Some(epoch);
            tracing::info!(holder = %self.holder, epoch, "this hub runs the supervision engine");
        }
        self.lease_until = Some(until);
        Ok(true)
    }

    /// The feed position up to which case events have been handled.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The next moment at which time alone changes an alert: a case's next check, a system's
    /// silence threshold or the end of its refusals' hold. `None` when only new events can.
    pub fn next_wake(&self) -> Option<i64> {
        let cases = self.cases.values().filter_map(|w| w.next);
        let silences = self
            .open_systems()
            .into_iter()
            .filter_map(|(system, open)| {
                let minutes = self.thresholds.silence_minutes_for(&system);
                let quiet = self.quiet_since(&system, &open).at();
                (minutes > 0).then(|| quiet + i64::from(minutes) * MINUTE + 1)
            });
        let refusals = self
            .refusals
            .values()
            .map(|r| rules::refusals_end(r, &self.thresholds));
        let disputes = self.disputes.values().flatten().map(|(_, due)| due + 1);
        let hold = i64::from(self.thresholds.record_hold_hours) * 60 * MINUTE;
        let unsettled = self
            .unsettled
            .values()
            .flatten()
            .map(move |(_, at)| at + hold + 1);
        cases
            .chain(silences)
            .chain(refusals)
            .chain(disputes)
            .chain(unsettled)
            .filter(|&t| t > self.last_step)
            .min()
    }

    /// One round at `now_ms`: new case events first, then the cases whose check is due, then
    /// systems' silence.
    pub async fn step(&mut self, now_ms: i64) -> Result<StepReport, StoreError> {
        let mut report = StepReport::default();
        if !self.hold(now_ms).await? {
            return Ok(report);
        }
        report.leading = true;
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
                        since: i64::MAX,
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
                    kind: Some(FeedKind::Event),
                    limit: PAGE,
                    ..FeedQuery::default()
                })
                .await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            let mut touched = BTreeSet::new();
            let mut lags = Vec::new();
            for e in &page {
                touched.insert(e.application_id.clone());
                let seen = self.last_seen.entry(e.system_id.clone()).or_insert(e.at);
                *seen = (*seen).max(e.at);
                lags.extend(reporting_lag(e));
            }
            let open = self.store.open_alerts().await?;
            let touched_ids: Vec<String> = touched.iter().cloned().collect();
            let (pending, summaries) = self.evaluate_cases(&touched_ids, &open, now_ms).await?;
            let written = self
                .write(&pending, &summaries, &lags, Some((CURSOR, last)), now_ms)
                .await?;
            let Some(entries) = written else {
                report.leading = false;
                return Ok(report);
            };
            report.entries.extend(entries);
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
        let (mut pending, summaries) = self.evaluate_cases(&due, &open, now_ms).await?;
        report.cases += due.len();
        for (system, at) in self.store.systems_last_heartbeat().await? {
            let seen = self.last_seen.entry(system).or_insert(at);
            *seen = (*seen).max(at);
        }
        self.awaiting = BTreeMap::new();
        for (system, count, oldest, department) in self.store.awaiting_by_system().await? {
            self.learn_department(&system, &department);
            self.awaiting.insert(system, (count, oldest));
        }
        let hold_start = now_ms.saturating_sub(
            i64::from(self.thresholds.record_hold_hours).saturating_mul(60 * MINUTE),
        );
        self.refusals = BTreeMap::new();
        for r in self.store.refusals_since(hold_start).await? {
            self.learn_department(&r.system_id, &r.department);
            self.refusals.insert(
                r.system_id,
                Refusals {
                    count: r.count,
                    first_at: r.first_at,
                    latest_at: r.latest.at,
                    latest_via: r.latest.via,
                    latest_reasons: r.latest.reasons,
                },
            );
        }
        self.disputes = BTreeMap::new();
        for (system, id, due) in self.store.unresolved_disputes().await? {
            self.disputes.entry(system).or_default().push((id, due));
        }
        self.unsettled = BTreeMap::new();
        for (system, license, at) in self.store.results_awaiting().await? {
            self.unsettled
                .entry(system)
                .or_default()
                .push((license, at));
        }
        pending.extend(self.evaluate_systems(&open, now_ms));
        if !pending.is_empty() || !summaries.is_empty() {
            match self.write(&pending, &summaries, &[], None, now_ms).await? {
                Some(entries) => report.entries.extend(entries),
                None => {
                    report.leading = false;
                    return Ok(report);
                }
            }
        }
        self.last_step = now_ms;
        Ok(report)
    }

    /// The feed's head, the latest heartbeat and the refusals' head: a round is due when any
    /// moves.
    async fn heads(&self) -> Result<(i64, i64, i64), StoreError> {
        Ok((
            self.store.feed_head().await?,
            self.store.heartbeats_head().await?,
            self.store.refusals_head().await?,
        ))
    }

    /// Steps whenever the feed's head or a heartbeat moves, a wake time comes or the lease needs renewing, until
    /// `shutdown` turns true; then hands the lease back. Without the lease it tries to take it
    /// once a second.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // The heads (see `heads`) as of the last round this engine led.
        let mut head_seen: Option<(i64, i64, i64)> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = clock::now_millis();
            let mut sleep_ms = POLL_MS;
            let renew = self
                .lease_until
                .is_none_or(|until| until - now <= RENEW_LEFT_MS);
            match self.heads().await {
                Ok(head) => {
                    let due = self.next_wake().is_some_and(|t| t <= now);
                    if renew || head_seen != Some(head) || due {
                        match self.step(now).await {
                            // The head read before the step: everything up to it was handled.
                            Ok(report) if report.leading => head_seen = Some(head),
                            Ok(_) => head_seen = None,
                            Err(e) => {
                                tracing::warn!(cause = %e, "supervision round failed; retrying")
                            }
                        }
                    }
                    if self.lease_epoch.is_some()
                        && let Some(wake) = self.next_wake()
                    {
                        sleep_ms = (wake - clock::now_millis()).clamp(0, POLL_MS);
                    }
                }
                Err(e) => tracing::warn!(cause = %e, "cannot read the supervision feed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = self.release().await {
            tracing::warn!(cause = %e, "could not hand the supervision lease back; it lapses by itself");
        }
    }

    /// Rebuilds the cases `ids` and says what their alerts need and their summaries, reading
    /// their applications and events a batch at a time.
    async fn evaluate_cases(
        &mut self,
        ids: &[String],
        open: &[AlertRecord],
        now_ms: i64,
    ) -> Result<(Vec<Pending>, Vec<CaseSummary>), StoreError> {
        let mut pending = Vec::new();
        let mut summaries = Vec::new();
        if ids.is_empty() {
            return Ok((pending, summaries));
        }
        let mut by_case: HashMap<&str, Vec<&AlertRecord>> = HashMap::new();
        for alert in open {
            if let Some(case) = alert.application_id.as_deref() {
                by_case.entry(case).or_default().push(alert);
            }
        }
        for batch in ids.chunks(PAGE as usize) {
            let mut apps = self.store.applications(batch).await?;
            let mut events = self.store.events_of_applications(batch).await?;
            for id in batch {
                let mine = by_case.get(id.as_str()).map_or(&[][..], Vec::as_slice);
                let Some(app) = apps.remove(id) else {
                    self.cases.remove(id);
                    continue;
                };
                let records = events.remove(id).unwrap_or_default();
                let evaluation = self.evaluate_case(&app, records, mine, now_ms).await?;
                pending.extend(evaluation.pending);
                summaries.extend(evaluation.summary);
            }
        }
        Ok((pending, summaries))
    }

    /// The item version a case names (or, when that version is gone, the current one).
    async fn item_of(&mut self, code: &str, version: i64) -> Result<Option<Arc<Item>>, StoreError> {
        let key = (code.to_owned(), version);
        if let Some(item) = self.items.get(&key) {
            return Ok(Some(item.clone()));
        }
        if let Some(item) = self.store.item_version(code, version).await? {
            let item = Arc::new(item);
            self.items.insert(key, item.clone());
            return Ok(Some(item));
        }
        Ok(self.store.current_item(code).await?.map(Arc::new))
    }

    /// Rebuilds one case from its application and its stored events and says what its alerts
    /// (`mine`, those open) need. Updates or drops its watch.
    async fn evaluate_case(
        &mut self,
        app: &crate::store::ApplicationRecord,
        records: Vec<crate::store::EventRecord>,
        mine: &[&AlertRecord],
        now_ms: i64,
    ) -> Result<Evaluation, StoreError> {
        let id = app.id.as_str();
        let Some(item) = self.item_of(&app.item_code, app.item_version).await? else {
            tracing::warn!(application = id, item = %app.item_code, "case not supervised: its item is not in the catalog");
            self.cases.remove(id);
            return Ok(Evaluation::none());
        };
        let mut events = Vec::new();
        for record in records {
            let parsed = serde_json::from_str(&record.body)
                .ok()
                .and_then(|v| CaseEvent::from_json(&v).ok());
            match parsed {
                Some(mut event) => {
                    event.received_at = Some(record.received_at);
                    events.push(event)
                }
                None => {
                    tracing::warn!(application = id, event = %record.event_id, "stored case event is not canonical; left out")
                }
            }
        }
        self.learn_department(&app.system_id, &item.department.uscc);
        let case = Case::from_events(id, &app.system_id, &app.item_code, app.accepted_at, &events);
        let due = self.deadlines(&case, &item, now_ms);
        let current = rules::evaluate(&case, &item, due, now_ms, &self.thresholds);
        let mut pending = self.pending(mine, &current, now_ms, &item.department.uscc);
        let trace = app.trace_context.as_deref().and_then(SpanContext::parse);
        for p in &mut pending {
            p.trace = trace;
        }
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
                    since: app.accepted_at,
                    next,
                },
            );
        } else {
            self.cases.remove(id);
        }
        let summary = self.summary(&case, &item, now_ms);
        Ok(Evaluation {
            pending,
            summary: Some(summary),
        })
    }

    /// The case's row in `cases`. A closed case's dues count its suspensions up to its closure,
    /// so they stay put once it is closed; an open one's up to `now_ms` (a suspended case's dues
    /// move later until it resumes).
    fn summary(&self, case: &Case, item: &Item, now_ms: i64) -> CaseSummary {
        let until = case.closed_at().map_or(now_ms, |closed| closed.min(now_ms));
        let due = self.deadlines(case, item, until);
        let completed_at = case.completed_at();
        let accepted_at = case.accepted_at();
        CaseSummary {
            application_id: case.application_id().to_owned(),
            system_id: case.system().to_owned(),
            item_code: case.item_code().to_owned(),
            department: item.department.uscc.clone(),
            state: case.state(),
            submitted_at: case.submitted_at(),
            accepted_at,
            promised_due: due.promised,
            statutory_due: due.statutory,
            completed_at,
            // The rules call a case late once past its due, so completing at the due is on time.
            on_time: completed_at
                .zip(due.promised)
                .map(|(done, promised)| done <= promised),
            handling_ms: completed_at
                .zip(accepted_at)
                .map(|(done, accepted)| done - accepted),
            updated_at: now_ms,
        }
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

    /// Systems with open cases (reported on, or not yet), each with how many and since when the
    /// oldest has been open.
    fn open_systems(&self) -> BTreeMap<String, OpenCases> {
        let mut systems: BTreeMap<String, OpenCases> = BTreeMap::new();
        for w in self
            .cases
            .values()
            .filter(|w| w.open && !w.system.is_empty())
        {
            systems.entry(w.system.clone()).or_default().add(1, w.since);
        }
        for (system, &(count, oldest)) in &self.awaiting {
            systems
                .entry(system.clone())
                .or_default()
                .add(count, oldest);
        }
        systems
    }

    /// Since when `system`, with `open` cases, has said nothing: its last event or heartbeat,
    /// but not before it had an open case (a system with nothing to report is not silent).
    fn quiet_since(&self, system: &str, open: &OpenCases) -> Quiet {
        match self.last_seen.get(system) {
            Some(&seen) if seen >= open.since => Quiet::SinceHeard(seen),
            _ => Quiet::SinceOpenCase(open.since),
        }
    }

    /// Remembers `system`'s department, unless it is unknown (`""`).
    fn learn_department(&mut self, system: &str, department: &str) {
        if !department.is_empty()
            && self.departments.get(system).map(String::as_str) != Some(department)
        {
            self.departments
                .insert(system.to_owned(), department.to_owned());
        }
    }

    /// A system's department USCC, `""` if not known yet.
    fn department_of(&self, system: &str) -> &str {
        self.departments.get(system).map_or("", String::as_str)
    }

    /// The system rules: `system_silent` for the systems with open cases, `events_refused` for
    /// those with refusals within the hold, `dispute_overdue` for those with unresolved
    /// disputes, `result_unsettled` for those with results awaiting their completion, and any
    /// of them for a system with such an alert open.
    fn evaluate_systems(&self, open: &[AlertRecord], now_ms: i64) -> Vec<Pending> {
        let counts = self.open_systems();
        let mut systems: BTreeSet<String> = counts.keys().cloned().collect();
        systems.extend(self.refusals.keys().cloned());
        systems.extend(self.disputes.keys().cloned());
        systems.extend(self.unsettled.keys().cloned());
        let systems_own = |a: &&AlertRecord| a.application_id.is_none() && a.rule.is_system_rule();
        systems.extend(open.iter().filter(systems_own).map(|a| a.system_id.clone()));
        let mut pending = Vec::new();
        for system in systems {
            // Without open cases the rule does not hold, and an open alert resolves.
            let (cases, quiet) = match counts.get(&system) {
                Some(open) => (open.count, self.quiet_since(&system, open)),
                None => (0, Quiet::SinceHeard(now_ms)),
            };
            let mut current: Vec<_> =
                rules::system_silence(&system, quiet, cases, now_ms, &self.thresholds)
                    .into_iter()
                    .collect();
            if let Some(refusals) = self.refusals.get(&system) {
                current.extend(rules::events_refused(
                    &system,
                    refusals,
                    now_ms,
                    &self.thresholds,
                ));
            }
            if let Some(disputes) = self.disputes.get(&system) {
                current.extend(rules::disputes_overdue(&system, disputes, now_ms));
            }
            if let Some(awaiting) = self.unsettled.get(&system) {
                current.extend(rules::results_unsettled(
                    &system,
                    awaiting,
                    now_ms,
                    &self.thresholds,
                ));
            }
            let mine: Vec<&AlertRecord> = open
                .iter()
                .filter(systems_own)
                .filter(|a| a.system_id == system)
                .collect();
            pending.extend(self.pending(&mine, &current, now_ms, self.department_of(&system)));
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
            .map(|a| {
                let alert = Alert {
                    key: AlertKey {
                        rule: a.rule,
                        system: a.system_id.clone(),
                        case: a.application_id.clone(),
                    },
                    level: a.level,
                };
                (alert, *a)
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
                        trace: None,
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
                        department: department_of_alert(record(&key)?, department),
                        level: condition.level,
                        from: Some(from),
                        evidence: condition.evidence,
                        at,
                        trace: None,
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
                            department: department_of_alert(r, department),
                            level,
                            from: None,
                            evidence: r.evidence.clone(),
                            at,
                            trace: None,
                        }
                    }
                })
            })
            .collect()
    }

    /// Writes a round under the lease; `None` when the lease had gone to another engine, in
    /// which case nothing was written and this engine forgets what it knew.
    async fn write(
        &mut self,
        pending: &[Pending],
        cases: &[CaseSummary],
        lags: &[ReportingLag],
        cursor: Option<(&str, i64)>,
        now_ms: i64,
    ) -> Result<Option<Vec<FeedEntry>>, StoreError> {
        let writes: Vec<AlertWrite> = pending
            .iter()
            .map(|p| AlertWrite {
                action: p.action,
                id: p.id.as_deref(),
                rule: p.rule,
                system_id: &p.system,
                application_id: p.application.as_deref(),
                item_code: p.item.as_deref(),
                department: &p.department,
                level: p.level,
                from_level: p.from,
                evidence: &p.evidence,
                at: p.at,
            })
            .collect();
        if writes.is_empty() && cases.is_empty() && lags.is_empty() && cursor.is_none() {
            return Ok(Some(Vec::new()));
        }
        let until = now_ms.saturating_add(LEASE_MS);
        let round = EngineRound {
            alerts: &writes,
            describe: Some(describe_alert),
            cases,
            lags,
            cursor,
            lease: Some(LeaseHold {
                name: LEASE,
                holder: &self.holder,
                until,
            }),
        };
        let Some(entries) = self.store.apply_engine_round(&round).await? else {
            tracing::warn!(holder = %self.holder, "the supervision lease went to another hub before this round was written; dropped");
            self.forget();
            return Ok(None);
        };
        self.lease_until = Some(until);
        for e in &entries {
            tracing::info!(routing_key = %e.routing_key, application = %e.application_id, "supervision alert");
        }
        self.trace_alerts(pending, now_ms);
        Ok(Some(entries))
    }

    /// A span in its application's trace for each alert raised, escalated or resolved on an
    /// application, once written: the trace shows when supervision judged the case.
    fn trace_alerts(&self, pending: &[Pending], now_ms: i64) {
        let tracer = &self.telemetry.tracer;
        for p in pending {
            let Some(parent) = p.trace else { continue };
            let name = match p.action {
                AlertAction::Raise => "alert.raise",
                AlertAction::Escalate => "alert.escalate",
                AlertAction::Resolve => "alert.resolve",
            };
            let mut span = tracer.start_at(
                name,
                SpanKind::Internal,
                Some(parent),
                trace::ns_of_millis(now_ms),
            );
            if span.is_recording() {
                span.set("tongban.rule", p.rule.as_str());
                span.set("tongban.level", p.level.as_str());
                span.set("tongban.system", p.system.clone());
                if let Some(application) = &p.application {
                    span.set("tongban.application", application.clone());
                }
            }
        }
    }
}

/// An alert change's feed entry: routing key `alert.<level>.<rule>`, body the alert as JSON
/// (`from` on an escalation). Alerts carry no personal data: evidence names steps and times.
pub fn describe_alert(w: &AlertWrite<'_>, id: &str) -> AlertText {
    let mut body = serde_json::json!({
        "id": id,
        "change": w.action,
        "rule": w.rule,
        "level": w.level,
        "system": w.system_id,
        "department": w.department,
        "application_id": w.application_id,
        "item": w.item_code,
        "evidence": w.evidence,
        "at": clock::format_millis(w.at),
    });
    if let Some(from) = w.from_level {
        body["from"] = serde_json::Value::from(from.as_str());
    }
    AlertText {
        routing_key: format!("alert.{}.{}", w.level, w.rule),
        body: body.to_string(),
    }
}

/// A case event's reporting lag from its feed entry: the entry's time is the event's arrival.
/// `None` when the body has no readable `occurred_at`.
fn reporting_lag(entry: &FeedEntry) -> Option<ReportingLag> {
    let body: serde_json::Value = serde_json::from_str(&entry.body).ok()?;
    let occurred = body
        .get("occurred_at")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_time)?;
    Some(ReportingLag {
        feed_seq: entry.seq,
        system_id: entry.system_id.clone(),
        item_code: entry.item_code.clone(),
        application_id: entry.application_id.clone(),
        received_at: entry.at,
        lag_ms: entry.at - occurred,
    })
}

/// The department an alert change carries: the one the alert was raised with, or `department`
/// when that was not known.
fn department_of_alert(alert: &AlertRecord, department: &str) -> String {
    if alert.department.is_empty() {
        department.to_owned()
    } else {
        alert.department.clone()
    }
}
