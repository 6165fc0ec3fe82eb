//! The ledger of the four integrations kept live: every system on the inventory (and every
//! connected one) judged again every `[ledger] evaluate_every_minutes` on its traffic and its
//! latest probes (`service::ledger`), each status kept with since when, and a change from the
//! status judged before put on the supervision feed
//! (`integration.<system>.<integration>.<status>`) in the same transaction.
//! Every `simulate_every_hours` after the hub started or the system's latest probe run, each
//! connected system goes through the probes again: the identity probe, a simulated transaction
//! (模拟办事) and its result, on `TEST-` applications never stored (see `probes`); an operator
//! runs one at once through the API. The funding report (第十一条) is made from the ledger, and
//! the usage report (第十条) from every system's traffic (`service::usage`).

use super::live::Live;
use super::probes::{self, Probing};
use crate::auth::assertion::Signer;
use crate::clock;
use crate::config::{Config, SystemRecord};
use crate::model::{IntegrationStatus, Probe};
use crate::service::inbound::Recorder;
use crate::service::ledger::{self, Inputs, Judgement};
use crate::service::probe_inbox::PROBE_PREFIX;
use crate::service::usage::{self, Period, SystemEntry, UsageReport};
use crate::store::{FeedText, IntegrationRecord, ProbeRun, Store, StoreError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("no connected system `{0}`: only a connected system is probed")]
    NotConnected(String),
    #[error("system `{0}` is being probed already")]
    Running(String),
    #[error(
        "system `{system}`'s application mapping {mapping} has no two-way test case (mappings/tests/{mapping}/<case>.canonical.json with its <case>.legacy.*) to build the simulated application from"
    )]
    NoSample { system: String, mapping: String },
}

/// Where a system stands: its record on the inventory (if any), whether it is connected, and
/// its status on each integration judged so far.
#[derive(Debug, Clone)]
pub struct Standing {
    pub id: String,
    pub record: Option<SystemRecord>,
    /// Its department (USCC), from the inventory or its adapter.
    pub department_uscc: String,
    pub connected: bool,
    pub integrations: Vec<IntegrationRecord>,
}

/// The ledger over the live configuration.
#[derive(Clone)]
pub struct Ledger {
    live: Arc<Live>,
    store: Store,
    signer: Arc<Signer>,
    recorder: Recorder,
    /// Systems being probed now, one run each at a time.
    running: Arc<Mutex<HashSet<String>>>,
}

/// What a probe run on schedule records as its origin.
pub const SCHEDULE: &str = "schedule";

/// The lease that lets one hub per store probe on schedule, in `leases`.
pub const SCHEDULE_LEASE: &str = "ledger_schedule";

impl Ledger {
    pub fn new(live: Arc<Live>, store: Store, signer: Arc<Signer>, recorder: Recorder) -> Ledger {
        Ledger {
            live,
            store,
            signer,
            recorder,
            running: Arc::default(),
        }
    }

    /// Every system on the inventory and every connected one, by id.
    fn systems(config: &Config) -> BTreeMap<String, (Option<SystemRecord>, String)> {
        let mut systems: BTreeMap<String, (Option<SystemRecord>, String)> = config
            .systems
            .iter()
            .flatten()
            .map(|s| (s.id.clone(), (Some(s.clone()), s.department_uscc.clone())))
            .collect();
        for adapter in config.adapters.values() {
            systems
                .entry(adapter.id.clone())
                .or_insert_with(|| (None, adapter.department_uscc.clone()));
        }
        systems
    }

    /// Where every system stands, as last judged.
    pub async fn standings(&self) -> Result<Vec<Standing>, StoreError> {
        let config = self.live.config();
        let mut statuses: BTreeMap<String, Vec<IntegrationRecord>> = BTreeMap::new();
        for record in self.store.integration_statuses().await? {
            statuses
                .entry(record.system_id.clone())
                .or_default()
                .push(record);
        }
        Ok(Self::systems(&config)
            .into_iter()
            .map(|(id, (record, department_uscc))| Standing {
                connected: config.adapters.contains_key(&id),
                integrations: statuses.remove(&id).unwrap_or_default(),
                id,
                record,
                department_uscc,
            })
            .collect())
    }

    /// Judges every system now, keeping each status; a change goes on the feed. How many
    /// statuses changed.
    pub async fn evaluate(&self) -> Result<usize, StoreError> {
        let config = self.live.config();
        let thresholds = &config.hub.ledger;
        let now = clock::now_millis();
        let since = now - i64::from(thresholds.window_days) * 86_400_000;
        let reported_by = now - i64::from(thresholds.max_reporting_lag_minutes) * 60_000;
        let before: BTreeMap<(String, Probe), IntegrationRecord> = self
            .store
            .integration_statuses()
            .await?
            .into_iter()
            .map(|r| ((r.system_id.clone(), r.integration), r))
            .collect();
        let mut changed = 0;
        for (id, (_, department)) in Self::systems(&config) {
            let adapter = config.adapters.get(&id);
            let mut items = Vec::new();
            for claim in adapter.map(|a| a.items.as_slice()).unwrap_or_default() {
                let status = self
                    .store
                    .current_item(&claim.code)
                    .await?
                    .map(|i| i.status);
                items.push((claim.code.clone(), status));
            }
            let figures = self
                .store
                .integration_figures(&id, since, reported_by)
                .await?;
            let runs = self.store.latest_probe_runs(&id).await?;
            let judgements = ledger::judge(&Inputs {
                adapter,
                items,
                figures,
                runs: &runs,
                thresholds,
            });
            for judgement in judgements {
                let previous = before.get(&(id.clone(), judgement.integration));
                // A first judgement sets where the system stands (GET /api/v1/ledger shows
                // it); the feed tells what changes from there.
                let change = previous.is_some_and(|p| p.status != judgement.status);
                let record = IntegrationRecord {
                    system_id: id.clone(),
                    integration: judgement.integration,
                    status: judgement.status,
                    since: match previous {
                        Some(p) if p.status == judgement.status => p.since,
                        _ => now,
                    },
                    evaluated_at: now,
                    evidence: evidence_json(&judgement).to_string(),
                };
                let feed = change.then(|| {
                    announcement(&record, &department, previous.map(|p| p.status), &judgement)
                });
                let recorded = self
                    .store
                    .put_integration_status(
                        &record,
                        previous.zip(feed.as_ref()).map(|(p, f)| (p.status, f)),
                    )
                    .await?;
                // Another hub judging at the same time may have recorded this change first.
                if feed.is_some() && recorded {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Whether this hub probes on schedule this round: of the hubs sharing the store, the
    /// holder of the [`SCHEDULE_LEASE`], renewed each round (`wait` apart) and taken by another
    /// hub when its holder has not renewed it for a round and a minute.
    async fn schedules(&self, wait: Duration) -> bool {
        let Some(holder) = self.live.hub_id() else {
            return false;
        };
        let now = clock::now_millis();
        let until = now
            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2))
            .saturating_add(60_000);
        match self
            .store
            .take_lease(SCHEDULE_LEASE, holder, now, until)
            .await
        {
            Ok(held) => held.is_some(),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot take the probe schedule's lease; not probing on schedule this round");
                false
            }
        }
    }

    /// Starts probing connected `system` now (same-source items, identity, a simulated
    /// transaction and its result) in the background: the run's id. When it ends, the runs are
    /// recorded and every system judged again.
    pub fn start(&self, system: &str) -> Result<String, LedgerError> {
        let config = self.live.config();
        let adapter = config
            .adapters
            .get(system)
            .ok_or_else(|| LedgerError::NotConnected(system.to_string()))?;
        let sample =
            probes::sample_from_dir(&config.dir, &adapter.outbound.mapping).ok_or_else(|| {
                LedgerError::NoSample {
                    system: system.to_string(),
                    mapping: adapter.outbound.mapping.clone(),
                }
            })?;
        if !self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(system.to_string())
        {
            return Err(LedgerError::Running(system.to_string()));
        }
        let done = Done(self.running.clone(), system.to_string());
        let run_id = format!("SIM-{:x}-{}", clock::now_millis(), random_hex());
        let (this, id, run) = (self.clone(), system.to_string(), run_id.clone());
        tokio::spawn(async move {
            let _done = done;
            match this.probe(&config, &id, &run, &sample).await {
                Ok(()) => tracing::info!(system = %id, run = %run, "probed"),
                Err(e) => {
                    tracing::warn!(system = %id, run = %run, cause = %e, "cannot record a probe run")
                }
            }
        });
        Ok(run_id)
    }

    async fn probe(
        &self,
        config: &Arc<Config>,
        system: &str,
        run_id: &str,
        sample: &Value,
    ) -> Result<(), StoreError> {
        let Some(adapter) = config.adapters.get(system) else {
            return Ok(());
        };
        let probing = Probing {
            config,
            adapter,
            sample,
            prefix: format!("{PROBE_PREFIX}{run_id}-"),
            signer: &self.signer,
            sealer: &self.recorder.sealer,
            limits: &config.hub.onboarding,
        };
        let mut reports =
            vec![probes::same_source(&self.store, adapter, &config.hub.onboarding).await];
        // A connected system's reports reach the hub by its running workers, and the probe
        // through them.
        reports.extend(
            probing
                .run(config, &self.store, &self.recorder.probes)
                .await,
        );
        let at = clock::now_millis();
        let runs: Vec<ProbeRun> = reports
            .iter()
            .map(|r| ProbeRun {
                run_id: run_id.to_string(),
                system_id: system.to_string(),
                probe: r.probe,
                at,
                origin: SCHEDULE.into(),
                outcome: r.outcome,
                report: serde_json::to_string(r).unwrap_or_else(|_| "{}".into()),
            })
            .collect();
        self.store.record_probe_runs(&runs).await?;
        self.evaluate().await?;
        Ok(())
    }

    /// Judges every `evaluate_every_minutes` and probes each connected system when its run is
    /// due, until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let started = clock::now_millis();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let config = self.live.config();
            let every = config.hub.ledger.simulate_every_hours;
            let wait =
                Duration::from_secs(u64::from(config.hub.ledger.evaluate_every_minutes) * 60);
            if every > 0 && self.schedules(wait).await {
                let every_ms = i64::from(every) * 3_600_000;
                for id in config.adapters.keys() {
                    let last = match self.store.last_probe_run(id, SCHEDULE).await {
                        Ok(last) => last,
                        Err(e) => {
                            tracing::warn!(system = %id, cause = %e, "cannot read when the system was last probed");
                            continue;
                        }
                    };
                    if clock::now_millis() < last.unwrap_or(started) + every_ms {
                        continue;
                    }
                    match self.start(id) {
                        Ok(run) => tracing::info!(system = %id, run = %run, "probing on schedule"),
                        Err(LedgerError::Running(_)) => {}
                        Err(e) => {
                            tracing::warn!(system = %id, cause = %e, "cannot probe the system on schedule")
                        }
                    }
                }
            }
            match self.evaluate().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "integration statuses changed"),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot judge the integration statuses now; will try again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Takes a system off the running set when its run ends, however it ends.
struct Done(Arc<Mutex<HashSet<String>>>, String);

impl Drop for Done {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("{:08x}", u32::from_le_bytes(bytes))
}

/// What a status is kept with: the reasons and the evidence.
fn evidence_json(judgement: &Judgement) -> Value {
    json!({
        "reasons": judgement.reasons,
        "evidence": judgement.evidence,
    })
}

/// The feed entry that says a status changed.
fn announcement(
    record: &IntegrationRecord,
    department: &str,
    previous: Option<IntegrationStatus>,
    judgement: &Judgement,
) -> FeedText {
    FeedText {
        body: json!({
            "system": record.system_id,
            "department": department,
            "integration": record.integration,
            "status": record.status,
            "previous": previous,
            "since": clock::format_millis(record.since),
            "reasons": judgement.reasons,
        })
        .to_string(),
        routing_key: format!(
            "integration.{}.{}.{}",
            record.system_id,
            record.integration.as_str(),
            record.status.as_str()
        ),
        department: department.to_string(),
        item_code: String::new(),
    }
}

/// One system's line in the funding report (第十一条): fundable only when it is to integrate, is
/// connected and is integrated on all four; otherwise every reason why not.
#[derive(Debug, Clone)]
pub struct FundingLine {
    pub standing: Standing,
    pub fundable: bool,
    pub reasons: Vec<String>,
}

/// A department's totals in the funding report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentFunding {
    pub uscc: String,
    pub name: String,
    pub systems: usize,
    pub fundable_systems: usize,
    /// Yuan requested by all its systems, and by those not fundable.
    pub requested_yuan: u64,
    pub not_fundable_yuan: u64,
}

/// The funding report: every system on the inventory requesting funding for `year` (all years
/// when `None`), with its verdict, and each department's totals.
#[derive(Debug, Clone)]
pub struct FundingReport {
    pub year: Option<u16>,
    pub generated_at: i64,
    pub lines: Vec<FundingLine>,
    pub departments: Vec<DepartmentFunding>,
}

impl Ledger {
    /// The funding report as the ledger stands now.
    pub async fn funding(&self, year: Option<u16>) -> Result<FundingReport, StoreError> {
        let generated_at = clock::now_millis();
        let mut lines = Vec::new();
        for standing in self.standings().await? {
            let Some(record) = standing.record.clone() else {
                // Only the inventory says what a system costs.
                continue;
            };
            if year.is_some_and(|y| y != record.funding_year) {
                continue;
            }
            let mut reasons = Vec::new();
            if record.plan == crate::config::Plan::Retire {
                reasons.push("to be retired (第十条): its operation is not funded".to_string());
            }
            if !standing.connected {
                reasons
                    .push("not connected to the hub: integrated in none of the four ways".into());
            }
            for &integration in Probe::ALL {
                match standing
                    .integrations
                    .iter()
                    .find(|r| r.integration == integration)
                {
                    None => reasons.push(format!("{}: not judged yet", integration.as_str())),
                    Some(r) if r.status != IntegrationStatus::Integrated && standing.connected => {
                        let kept: Value = serde_json::from_str(&r.evidence).unwrap_or(Value::Null);
                        let why = kept["reasons"][0].as_str().unwrap_or("see the ledger");
                        reasons.push(format!(
                            "{}: {} since {} ({why})",
                            integration.as_str(),
                            r.status.as_str(),
                            clock::format_millis(r.since)
                        ));
                    }
                    Some(_) => {}
                }
            }
            lines.push(FundingLine {
                fundable: reasons.is_empty(),
                reasons,
                standing,
            });
        }
        let mut departments: BTreeMap<String, DepartmentFunding> = BTreeMap::new();
        for line in &lines {
            let Some(record) = &line.standing.record else {
                continue;
            };
            let d = departments
                .entry(record.department_uscc.clone())
                .or_insert_with(|| DepartmentFunding {
                    uscc: record.department_uscc.clone(),
                    name: record.department_name.clone(),
                    ..DepartmentFunding::default()
                });
            d.systems += 1;
            d.requested_yuan += record.funding_yuan;
            if line.fundable {
                d.fundable_systems += 1;
            } else {
                d.not_fundable_yuan += record.funding_yuan;
            }
        }
        Ok(FundingReport {
            year,
            generated_at,
            lines,
            departments: departments.into_values().collect(),
        })
    }
}

impl Ledger {
    /// The usage report (第十条) over `period`: every system on the inventory and every
    /// connected one, with its traffic in the period as the store has it now.
    pub async fn usage(&self, period: &Period) -> Result<UsageReport, StoreError> {
        let config = self.live.config();
        let generated_at = clock::now_millis();
        // Days start at midnight in the calendar's zone, China Standard Time.
        let offset = i64::from(clock::cst().local_minus_utc()) * 1000;
        let applications = self
            .store
            .daily_applications(period.start, period.end, offset)
            .await?;
        let event_days = self
            .store
            .event_days(period.start, period.end, offset)
            .await?;
        let systems = Self::systems(&config)
            .into_iter()
            .map(|(id, (record, department_uscc))| {
                let adapter = config.adapters.get(&id);
                let mut items: BTreeSet<String> = record
                    .as_ref()
                    .map(|r| r.items.iter().cloned().collect())
                    .unwrap_or_default();
                items.extend(
                    adapter
                        .iter()
                        .flat_map(|a| a.items.iter().map(|c| c.code.clone())),
                );
                SystemEntry {
                    name: record
                        .as_ref()
                        .map(|r| r.name.clone())
                        .or_else(|| adapter.map(|a| a.name.clone())),
                    department_name: record
                        .as_ref()
                        .map(|r| r.department_name.clone())
                        .or_else(|| adapter.map(|a| a.department_name.clone())),
                    connected: adapter.is_some(),
                    plan: record.as_ref().map(|r| r.plan),
                    items,
                    department_uscc,
                    id,
                }
            })
            .collect();
        Ok(usage::report(&usage::Inputs {
            period,
            systems,
            applications: &applications,
            event_days: &event_days,
            thresholds: &config.hub.usage,
            generated_at,
        }))
    }
}
