//! The supervision report (第二十八–二十九条): how departments, systems or items handled their
//! cases and answered for them over whole months, for the 电子监察 supervisors (and finance,
//! which reads the handling statistics). Pure: the facts are read before
//! (`Store::supervision_facts`), the systems' departments come from the configuration, and the
//! report is turned into JSON or CSV after.
//!
//! **The period** is the usage report's: whole calendar months in China Standard Time
//! ([`super::usage::period`]). Every figure is given for the whole period and for each month.
//!
//! **Per group** (a department, a system or an item, as `by` says) and for the whole province:
//! - cases begun in the period (when the hub accepted the application, `submitted_at`, as the
//!   case list and the statistics count them; a month's cases are those begun in it), and of
//!   those, as they stand now: completed, completed on time (by the promised due) and late, the
//!   on-time rate (on time / completed; none when none completed, and a completion without a
//!   promised due counts as neither on time nor late), open, open and past their promised due
//!   now (`overdue_now`), refused (不予受理);
//! - alerts raised in the period, by level as they stand now (an escalated alert counts at its
//!   level) and by rule, and how many have been followed up (督办, any step) and closed;
//! - inbound messages refused in the period (a refusal names a system and its department, never
//!   an item: grouped by item they count in the province only);
//! - the reporting lag's p95 (nearest rank, as the statistics) of case events that reached the
//!   hub in the period, with their number;
//! - supplement requests (补齐补正: node result 5 at a step other than 办结, of a node type that
//!   allows it, as the case counts them for `repeated_supplement`) in the cases begun in the
//!   period, the cases with one and the cases with more than one (第十四条);
//! - disputes of the system's results opened in the period. A dispute belongs to its system's
//!   department (from the configuration; else the department of the case whose result it
//!   disputes) and to that case's item.
//!
//! A fact whose group is unknown (an empty department, a system's own alert by item) counts in
//! the province only. Nothing here names an applicant: counts, codes and durations only.

use super::usage::{Month, Period};
use crate::model::{Level, NodeName, NodeResult, NodeType, Rule};
use crate::store::SupervisionFacts;
use std::collections::{BTreeMap, HashMap};

/// What the report's groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    #[default]
    Department,
    System,
    Item,
}

impl GroupBy {
    pub const ALL: [GroupBy; 3] = [GroupBy::Department, GroupBy::System, GroupBy::Item];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Department => "department",
            GroupBy::System => "system",
            GroupBy::Item => "item",
        }
    }

    pub fn parse(text: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == text)
    }
}

/// The figures of one group (or the province) over one month or the whole period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub cases_begun: i64,
    pub completed: i64,
    pub on_time: i64,
    pub late: i64,
    /// `on_time / completed`; `None` when none completed.
    pub on_time_rate: Option<f64>,
    pub open: i64,
    pub overdue_now: i64,
    pub refused: i64,
    pub alerts_raised: i64,
    /// Every level, lowest first.
    pub alerts_by_level: Vec<(Level, i64)>,
    /// Every rule, in the rules' order.
    pub alerts_by_rule: Vec<(Rule, i64)>,
    pub alerts_followed_up: i64,
    pub alerts_closed: i64,
    /// `None` where refusals cannot be told (a group of items).
    pub inbound_refusals: Option<i64>,
    pub lag_events: i64,
    pub lag_p95_ms: Option<i64>,
    pub supplement_requests: i64,
    pub cases_with_supplements: i64,
    pub cases_with_repeated_supplements: i64,
    pub disputes_opened: i64,
}

/// A group's (or the province's) figures over the period and in each of its months.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub total: Figures,
    /// Every month of the period, first first.
    pub months: Vec<(Month, Figures)>,
}

/// One group: its key (a department's USCC, a system id or an item code) and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: String,
    pub line: Line,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SupervisionReport {
    pub period: Period,
    pub by: GroupBy,
    pub system: Option<String>,
    pub department: Option<String>,
    pub generated_at: i64,
    /// By key; only groups with a fact in the period.
    pub groups: Vec<Group>,
    pub province: Line,
}

/// What a report is made from.
pub struct Inputs<'a> {
    pub period: &'a Period,
    pub by: GroupBy,
    /// Only this system's facts.
    pub system: Option<&'a str>,
    /// Only this department's (USCC) facts.
    pub department: Option<&'a str>,
    pub facts: &'a SupervisionFacts,
    /// Each system's department (USCC), as the configuration has it.
    pub system_departments: &'a BTreeMap<String, String>,
    pub generated_at: i64,
}

/// Counts as they are added up, before rates and percentiles.
#[derive(Debug, Clone, Default)]
struct Tally {
    cases_begun: i64,
    completed: i64,
    on_time: i64,
    late: i64,
    open: i64,
    overdue_now: i64,
    refused: i64,
    alerts_by_level: BTreeMap<Level, i64>,
    alerts_by_rule: BTreeMap<Rule, i64>,
    alerts_followed_up: i64,
    alerts_closed: i64,
    inbound_refusals: i64,
    lags: Vec<i64>,
    supplement_requests: i64,
    cases_with_supplements: i64,
    cases_with_repeated_supplements: i64,
    disputes_opened: i64,
}

/// The nearest-rank 95th percentile: the value ranked ⌈0.95·n⌉ of n.
pub fn p95(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    let rank = (n * 95).div_ceil(100).max(1);
    Some(values[rank - 1])
}

impl Tally {
    fn figures(mut self, refusals_known: bool) -> Figures {
        Figures {
            cases_begun: self.cases_begun,
            completed: self.completed,
            on_time: self.on_time,
            late: self.late,
            on_time_rate: (self.completed > 0).then(|| self.on_time as f64 / self.completed as f64),
            open: self.open,
            overdue_now: self.overdue_now,
            refused: self.refused,
            alerts_raised: self.alerts_by_level.values().sum(),
            alerts_by_level: Level::ALL
                .iter()
                .map(|l| (*l, self.alerts_by_level.get(l).copied().unwrap_or(0)))
                .collect(),
            alerts_by_rule: Rule::ALL
                .iter()
                .map(|r| (*r, self.alerts_by_rule.get(r).copied().unwrap_or(0)))
                .collect(),
            alerts_followed_up: self.alerts_followed_up,
            alerts_closed: self.alerts_closed,
            inbound_refusals: refusals_known.then_some(self.inbound_refusals),
            lag_events: self.lags.len() as i64,
            lag_p95_ms: p95(&mut self.lags),
            supplement_requests: self.supplement_requests,
            cases_with_supplements: self.cases_with_supplements,
            cases_with_repeated_supplements: self.cases_with_repeated_supplements,
            disputes_opened: self.disputes_opened,
        }
    }
}

/// A group's or the province's tallies: the period's and each month's.
#[derive(Debug, Clone)]
struct Tallies {
    total: Tally,
    months: Vec<Tally>,
}

impl Tallies {
    fn new(months: usize) -> Tallies {
        Tallies {
            total: Tally::default(),
            months: vec![Tally::default(); months],
        }
    }

    fn line(self, months: &[Month], refusals_known: bool) -> Line {
        Line {
            total: self.total.figures(refusals_known),
            months: months
                .iter()
                .copied()
                .zip(self.months)
                .map(|(m, t)| (m, t.figures(refusals_known)))
                .collect(),
        }
    }
}

/// Where a fact goes: the province, and its group when it has one.
struct Sheet<'a> {
    by: GroupBy,
    system: Option<&'a str>,
    department: Option<&'a str>,
    index: HashMap<Month, usize>,
    months: usize,
    province: Tallies,
    groups: BTreeMap<String, Tallies>,
}

/// A fact's keys: its system, department and item (`None` or `""`: unknown).
struct Keys<'k> {
    system: &'k str,
    department: Option<&'k str>,
    item: Option<&'k str>,
}

impl Sheet<'_> {
    /// Adds to every tally the fact belongs to, with `add`, unless the filters leave it out or
    /// its month is not in the period.
    fn add(&mut self, keys: Keys<'_>, month: Month, add: impl Fn(&mut Tally)) {
        if self.system.is_some_and(|s| s != keys.system)
            || self.department.is_some_and(|d| keys.department != Some(d))
        {
            return;
        }
        let Some(&m) = self.index.get(&month) else {
            return;
        };
        add(&mut self.province.total);
        add(&mut self.province.months[m]);
        let key = match self.by {
            GroupBy::Department => keys.department,
            GroupBy::System => Some(keys.system),
            GroupBy::Item => keys.item,
        };
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let months = self.months;
            let tallies = self
                .groups
                .entry(key.to_owned())
                .or_insert_with(|| Tallies::new(months));
            add(&mut tallies.total);
            add(&mut tallies.months[m]);
        }
    }
}

/// Whether a canonical case event (JSON text) requests a supplement as the case counts one:
/// result 5 (补齐补正) at a step other than 办结, of a node type that allows it.
pub fn is_supplement_request(body: &str) -> bool {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let node = &event["node"];
    let code = |name: &str| node[name].as_str().unwrap_or_default();
    let (Ok(step), Ok(kind), Ok(result)) = (
        code("name").parse::<NodeName>(),
        code("type").parse::<NodeType>(),
        code("result").parse::<NodeResult>(),
    ) else {
        return false;
    };
    result == NodeResult::SupplementRequested && step != NodeName::Completion && kind.allows(result)
}

/// The report (see the module's description).
pub fn report(inputs: &Inputs<'_>) -> SupervisionReport {
    let months = inputs.period.months();
    let mut sheet = Sheet {
        by: inputs.by,
        system: inputs.system,
        department: inputs.department,
        index: months.iter().enumerate().map(|(i, m)| (*m, i)).collect(),
        months: months.len(),
        province: Tallies::new(months.len()),
        groups: BTreeMap::new(),
    };
    let facts = inputs.facts;
    for c in &facts.cases {
        let keys = Keys {
            system: &c.system_id,
            department: Some(&c.department),
            item: Some(&c.item_code),
        };
        sheet.add(keys, Month::of_day(c.day), |t| {
            t.cases_begun += c.begun;
            t.completed += c.completed;
            t.on_time += c.on_time;
            t.late += c.late;
            t.open += c.open;
            t.overdue_now += c.overdue;
            t.refused += c.refused;
        });
    }
    for a in &facts.alerts {
        let keys = Keys {
            system: &a.system_id,
            department: Some(&a.department),
            item: a.item_code.as_deref(),
        };
        sheet.add(keys, Month::of_day(a.day), |t| {
            *t.alerts_by_level.entry(a.level).or_default() += a.raised;
            *t.alerts_by_rule.entry(a.rule).or_default() += a.raised;
            t.alerts_followed_up += a.followed_up;
            t.alerts_closed += a.closed;
        });
    }
    for r in &facts.refusals {
        let keys = Keys {
            system: &r.system_id,
            department: Some(&r.department),
            item: None,
        };
        sheet.add(keys, Month::of_day(r.day), |t| {
            t.inbound_refusals += r.refusals
        });
    }
    for l in &facts.lags {
        let keys = Keys {
            system: &l.system_id,
            department: Some(&l.department),
            item: Some(&l.item_code),
        };
        sheet.add(keys, Month::of_millis(l.received_at), |t| {
            t.lags.push(l.lag_ms)
        });
    }
    // Supplement requests per case: the rows come a case at a time.
    let mut i = 0;
    let rows = &facts.supplements;
    while i < rows.len() {
        let case = &rows[i];
        let mut requests = 0;
        while i < rows.len() && rows[i].application_id == case.application_id {
            requests += i64::from(is_supplement_request(&rows[i].body));
            i += 1;
        }
        if requests == 0 {
            continue;
        }
        let keys = Keys {
            system: &case.system_id,
            department: Some(&case.department),
            item: Some(&case.item_code),
        };
        sheet.add(keys, Month::of_day(case.day), |t| {
            t.supplement_requests += requests;
            t.cases_with_supplements += 1;
            t.cases_with_repeated_supplements += i64::from(requests > 1);
        });
    }
    for d in &facts.disputes {
        let department = inputs
            .system_departments
            .get(&d.system_id)
            .map(String::as_str)
            .or(d.department.as_deref());
        let keys = Keys {
            system: &d.system_id,
            department,
            item: d.item_code.as_deref(),
        };
        sheet.add(keys, Month::of_day(d.day), |t| {
            t.disputes_opened += d.opened
        });
    }
    let refusals_by_group = inputs.by != GroupBy::Item;
    SupervisionReport {
        period: inputs.period.clone(),
        by: inputs.by,
        system: inputs.system.map(str::to_owned),
        department: inputs.department.map(str::to_owned),
        generated_at: inputs.generated_at,
        groups: sheet
            .groups
            .into_iter()
            .map(|(key, tallies)| Group {
                key,
                line: tallies.line(&months, refusals_by_group),
            })
            .collect(),
        province: sheet.province.line(&months, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AlertDay, CaseDay, CaseEventRow, DisputeDay, LagRow, RefusalDay};

    fn period() -> Period {
        let from: Month = "2026-01".parse().unwrap();
        let to: Month = "2026-02".parse().unwrap();
        super::super::usage::period(Some(from), Some(to), to.plus(3).start_millis()).unwrap()
    }

    /// The day number of a date in China time.
    fn day(month: Month, d: i64) -> i64 {
        (month.start_millis() + 8 * 3_600_000) / 86_400_000 + d - 1
    }

    fn event(step: &str, kind: &str, result: &str) -> String {
        serde_json::json!({"node": {"name": step, "type": kind, "result": result}}).to_string()
    }

    #[test]
    fn the_nearest_rank_p95() {
        assert_eq!(p95(&mut []), None);
        assert_eq!(p95(&mut [7]), Some(7));
        let mut twenty: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(p95(&mut twenty), Some(19));
        let mut twenty_one: Vec<i64> = (1..=21).collect();
        assert_eq!(p95(&mut twenty_one), Some(20));
    }

    #[test]
    fn supplement_requests_are_result_5_where_the_node_type_allows_it() {
        assert!(is_supplement_request(&event("审查", "2", "5")));
        assert!(is_supplement_request(&event("受理", "1", "5")));
        assert!(!is_supplement_request(&event("办结", "2", "5")));
        assert!(!is_supplement_request(&event("审查", "3", "5")));
        assert!(!is_supplement_request(&event("补正", "2", "1")));
        assert!(!is_supplement_request("not json"));
    }

    #[test]
    fn figures_go_to_their_group_month_and_the_province() {
        let p = period();
        let jan = p.from;
        let feb = p.to;
        let facts = SupervisionFacts {
            cases: vec![
                CaseDay {
                    system_id: "s1".into(),
                    item_code: "i1".into(),
                    department: "D1".into(),
                    day: day(jan, 31),
                    begun: 3,
                    completed: 2,
                    on_time: 1,
                    late: 1,
                    open: 1,
                    overdue: 1,
                    refused: 0,
                },
                CaseDay {
                    system_id: "s2".into(),
                    item_code: "i2".into(),
                    department: "".into(),
                    day: day(feb, 1),
                    begun: 1,
                    refused: 1,
                    ..CaseDay::default()
                },
            ],
            alerts: vec![AlertDay {
                system_id: "s1".into(),
                item_code: None,
                department: "D1".into(),
                day: day(feb, 2),
                level: Level::Red,
                rule: Rule::SystemSilent,
                raised: 2,
                followed_up: 1,
                closed: 1,
            }],
            refusals: vec![RefusalDay {
                system_id: "s1".into(),
                department: "D1".into(),
                day: day(jan, 1),
                refusals: 4,
            }],
            lags: vec![LagRow {
                system_id: "s1".into(),
                item_code: "i1".into(),
                department: "D1".into(),
                received_at: feb.start_millis(),
                lag_ms: 500,
            }],
            supplements: vec![
                CaseEventRow {
                    application_id: "A".into(),
                    system_id: "s1".into(),
                    item_code: "i1".into(),
                    department: "D1".into(),
                    day: day(jan, 5),
                    body: event("审查", "2", "5"),
                },
                CaseEventRow {
                    application_id: "A".into(),
                    system_id: "s1".into(),
                    item_code: "i1".into(),
                    department: "D1".into(),
                    day: day(jan, 5),
                    body: event("决定", "2", "5"),
                },
            ],
            disputes: vec![DisputeDay {
                system_id: "s2".into(),
                item_code: None,
                department: None,
                day: day(feb, 28),
                opened: 1,
            }],
        };
        let departments = BTreeMap::from([("s2".to_string(), "D2".to_string())]);
        let r = report(&Inputs {
            period: &p,
            by: GroupBy::Department,
            system: None,
            department: None,
            facts: &facts,
            system_departments: &departments,
            generated_at: 0,
        });
        let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["D1", "D2"]);
        let d1 = &r.groups[0].line;
        assert_eq!(d1.total.cases_begun, 3);
        assert_eq!(d1.total.on_time_rate, Some(0.5));
        assert_eq!(d1.months[0].1.cases_begun, 3);
        assert_eq!(d1.months[1].1.alerts_raised, 2);
        assert_eq!(d1.months[1].1.lag_p95_ms, Some(500));
        assert_eq!(d1.total.inbound_refusals, Some(4));
        assert_eq!(d1.total.supplement_requests, 2);
        assert_eq!(d1.total.cases_with_repeated_supplements, 1);
        assert_eq!(r.groups[1].line.total.disputes_opened, 1);
        // The case of no department counts in the province only.
        assert_eq!(r.province.total.cases_begun, 4);
        assert_eq!(r.province.months[1].1.refused, 1);
        assert_eq!(r.province.total.on_time_rate, Some(0.5));
        assert_eq!(r.province.months[1].1.on_time_rate, None);

        let by_item = report(&Inputs {
            by: GroupBy::Item,
            department: Some("D1"),
            ..Inputs {
                period: &p,
                by: GroupBy::Department,
                system: None,
                department: None,
                facts: &facts,
                system_departments: &departments,
                generated_at: 0,
            }
        });
        let keys: Vec<&str> = by_item.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["i1"]);
        assert_eq!(by_item.groups[0].line.total.inbound_refusals, None);
        assert_eq!(by_item.groups[0].line.total.alerts_raised, 0);
        assert_eq!(by_item.province.total.alerts_raised, 2);
        assert_eq!(by_item.province.total.inbound_refusals, Some(4));
        assert_eq!(by_item.province.total.disputes_opened, 0);
    }
}
