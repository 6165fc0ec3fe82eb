//! The usage report (第十条): how much each self-built system is used and whether another system
//! does what it does, so that the systems that are little used (使用范围小、频度低) or whose
//! function can be replaced (功能可被替代) are found for clean-up. Pure: the figures are read
//! before (`store::usage`), the configuration is given, and the report is turned into JSON or
//! CSV after.
//!
//! **The period** is whole calendar months in China Standard Time (+08:00, the calendar's
//! zone): `from` to `to`, both included, at most [`MAX_MONTHS`]. Without `to` it ends with
//! the last full month (or with `from`, when that is later); without `from` it starts 11
//! months before `to`, so the default is the last 12 full months. A period may reach the
//! current month (counted so far) but not beyond.
//!
//! **Per system** (every system on the inventory and every connected one): the applications
//! accepted for it (routed to it) in each month, the distinct items they were for, its active
//! days (days with an application accepted for it or a case event received from it), and its
//! share of the province's applications in the period (a fraction; none when there were none).
//!
//! **Little used**: over the period it averaged fewer than `little_used_per_month`
//! applications a month, or was active on fewer than `little_used_active_days_per_month` days
//! a month on average (`[usage]`; 0 turns a criterion off). A month counts whole, the current
//! one too.
//!
//! **Replaceable**: every item the system handles (on the inventory or claimed by its adapter)
//! is handled by another system too, one not to be retired, in any region (a system doing the
//! same item elsewhere could take it over). The hub has no notion of the platform handling an
//! item itself: every application goes to a system (`routing::route`), so only other systems
//! count. A system that handles no item is not called replaceable (nothing shows another
//! does what it does); it is little used.

use crate::clock;
use crate::config::{Plan, UsageConfig};
use crate::store::{DailyApplications, EventDay};
use chrono::{Datelike, TimeZone};
use std::collections::{BTreeMap, BTreeSet};

/// The longest period a report covers, in months.
pub const MAX_MONTHS: i64 = 36;

const DAY_MS: i64 = 86_400_000;

/// What is wrong with a period asked for; [`PeriodError::parameter`] says which parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("`{0}` is not a month: write YYYY-MM, e.g. 2026-03, with a year from 2000 to 2100")]
    NotAMonth(String),
    #[error("`from` ({from}) is after `to` ({to}{note})")]
    Reversed {
        from: Month,
        to: Month,
        /// `, the default` when `to` was not given.
        note: &'static str,
    },
    #[error("the period {from}..{to} has {months} months; a report covers at most {MAX_MONTHS}")]
    TooLong { from: Month, to: Month, months: i64 },
    #[error("`{parameter}` ({month}) is after the current month ({current})")]
    Future {
        parameter: &'static str,
        month: Month,
        current: Month,
    },
}

impl PeriodError {
    /// The query parameter the problem is about.
    pub fn parameter(&self) -> &'static str {
        match self {
            PeriodError::NotAMonth(_) | PeriodError::Reversed { .. } => "from",
            PeriodError::TooLong { .. } => "from",
            PeriodError::Future { parameter, .. } => parameter,
        }
    }
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((2000..=2100).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month an instant falls in, in China Standard Time.
    pub fn of_millis(millis: i64) -> Month {
        let date = chrono::DateTime::from_timestamp_millis(millis)
            .map(|t| t.with_timezone(&clock::cst()).date_naive())
            .unwrap_or_default();
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The month a day falls in, the day numbered from 1970-01-01 in the report's zone.
    pub fn of_day(day: i64) -> Month {
        let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .map(|t| t.date_naive())
            .unwrap_or_default();
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    fn from_index(index: i64) -> Month {
        Month {
            year: index.div_euclid(12) as i32,
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// The month `n` months after this one (before, when negative).
    pub fn plus(self, n: i64) -> Month {
        Month::from_index(self.index() + n)
    }

    /// Its first instant: 00:00 CST on its first day, in epoch milliseconds.
    pub fn start_millis(self) -> i64 {
        clock::cst()
            .with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .map_or(0, |t| t.timestamp_millis())
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = PeriodError;

    /// Exactly `YYYY-MM`.
    fn from_str(text: &str) -> Result<Month, PeriodError> {
        let bad = || PeriodError::NotAMonth(text.chars().take(16).collect());
        let b = text.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let year = text[..4].parse().map_err(|_| bad())?;
        let month = text[5..].parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

/// The months a report covers, and the instants they span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from: Month,
    pub to: Month,
    /// Its first instant, and the first instant after it (epoch milliseconds).
    pub start: i64,
    pub end: i64,
    /// It reaches the month `now` is in, which is counted so far.
    pub includes_current_month: bool,
}

impl Period {
    /// Every month, first first.
    pub fn months(&self) -> Vec<Month> {
        (self.from.index()..=self.to.index())
            .map(Month::from_index)
            .collect()
    }

    pub fn month_count(&self) -> i64 {
        self.to.index() - self.from.index() + 1
    }
}

/// The period asked for (see the module's description for the defaults), or every problem
/// with it.
pub fn period(
    from: Option<Month>,
    to: Option<Month>,
    now: i64,
) -> Result<Period, Vec<PeriodError>> {
    let current = Month::of_millis(now);
    let last_full = current.plus(-1);
    let to_given = to.is_some();
    let to = to.unwrap_or_else(|| from.map_or(last_full, |f| f.max(last_full)));
    let from = from.unwrap_or_else(|| to.plus(-11));
    let mut problems = Vec::new();
    if from > to {
        problems.push(PeriodError::Reversed {
            from,
            to,
            note: if to_given { "" } else { ", the default" },
        });
    } else if to.index() - from.index() + 1 > MAX_MONTHS {
        problems.push(PeriodError::TooLong {
            from,
            to,
            months: to.index() - from.index() + 1,
        });
    }
    if to > current {
        problems.push(PeriodError::Future {
            parameter: if to_given { "to" } else { "from" },
            month: to,
            current,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Period {
        from,
        to,
        start: from.start_millis(),
        end: to.plus(1).start_millis(),
        includes_current_month: to == current,
    })
}

/// A system the report is about, as the configuration has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemEntry {
    pub id: String,
    /// From the inventory, else from its adapter.
    pub name: Option<String>,
    pub department_uscc: String,
    pub department_name: Option<String>,
    pub connected: bool,
    /// On the inventory: to integrate or to be retired.
    pub plan: Option<Plan>,
    /// The items it handles: on the inventory and claimed by its adapter.
    pub items: BTreeSet<String>,
}

/// What a report is made from.
pub struct Inputs<'a> {
    pub period: &'a Period,
    pub systems: Vec<SystemEntry>,
    /// Applications accepted in the period, per system, item and day.
    pub applications: &'a [DailyApplications],
    /// The days in the period on which each system's case events came.
    pub event_days: &'a [EventDay],
    pub thresholds: &'a UsageConfig,
    pub generated_at: i64,
}

/// One system's usage over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    pub system: SystemEntry,
    pub applications: i64,
    /// Every month of the period, with its applications.
    pub per_month: Vec<(Month, i64)>,
    /// The items its applications were for.
    pub items_handled: BTreeSet<String>,
    pub active_days: i64,
    /// Its applications over the province's; `None` when the province had none.
    pub share: Option<f64>,
    pub little_used: bool,
    /// Why it is little used (empty when it is not).
    pub little_used_reasons: Vec<String>,
    pub replaceable: bool,
    /// Each item it handles, with the other systems (not to be retired) that handle it too.
    pub alternatives: Vec<(String, Vec<String>)>,
}

/// The province's figures over the period: every application, to any system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    pub applications: i64,
    pub per_month: Vec<(Month, i64)>,
    pub items_handled: usize,
    /// Days with an application or a case event anywhere.
    pub active_days: i64,
    pub systems: usize,
    pub little_used_systems: usize,
    pub replaceable_systems: usize,
    /// Applications to systems that are neither on the inventory nor connected now.
    pub applications_to_unlisted_systems: i64,
}

/// The usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    pub period: Period,
    pub generated_at: i64,
    pub thresholds: UsageConfig,
    pub lines: Vec<UsageLine>,
    pub totals: UsageTotals,
}

/// The report from its inputs.
pub fn report(inputs: &Inputs<'_>) -> UsageReport {
    let period = inputs.period;
    let months = period.months();
    let month_count = period.month_count();
    let t = inputs.thresholds;
    let province: i64 = inputs.applications.iter().map(|a| a.applications).sum();

    // Each item, and the systems that handle it and are not to be retired.
    let mut handlers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &inputs.systems {
        if s.plan == Some(Plan::Retire) {
            continue;
        }
        for item in &s.items {
            handlers.entry(item).or_default().push(&s.id);
        }
    }

    let mut lines = Vec::new();
    for system in &inputs.systems {
        let mine = inputs
            .applications
            .iter()
            .filter(|a| a.system_id == system.id);
        let mut per_month: BTreeMap<Month, i64> = months.iter().map(|m| (*m, 0)).collect();
        let mut items_handled = BTreeSet::new();
        let mut days = BTreeSet::new();
        let mut applications = 0;
        for a in mine {
            applications += a.applications;
            *per_month.entry(Month::of_day(a.day)).or_default() += a.applications;
            items_handled.insert(a.item_code.clone());
            days.insert(a.day);
        }
        days.extend(
            inputs
                .event_days
                .iter()
                .filter(|e| e.system_id == system.id)
                .map(|e| e.day),
        );
        let active_days = days.len() as i64;

        let mut little_used_reasons = Vec::new();
        let per_month_min = i64::from(t.little_used_per_month);
        if per_month_min > 0 && applications < per_month_min * month_count {
            little_used_reasons.push(format!(
                "{applications} application(s) in {month_count} month(s), {} a month on average: fewer than little_used_per_month ({per_month_min})",
                average(applications, month_count)
            ));
        }
        let days_min = i64::from(t.little_used_active_days_per_month);
        if days_min > 0 && active_days < days_min * month_count {
            little_used_reasons.push(format!(
                "active on {active_days} day(s) in {month_count} month(s), {} a month on average: fewer than little_used_active_days_per_month ({days_min})",
                average(active_days, month_count)
            ));
        }

        let alternatives: Vec<(String, Vec<String>)> = system
            .items
            .iter()
            .map(|item| {
                let others = handlers
                    .get(item.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|id| **id != system.id)
                    .map(|id| id.to_string())
                    .collect();
                (item.clone(), others)
            })
            .collect();
        let replaceable =
            !alternatives.is_empty() && alternatives.iter().all(|(_, others)| !others.is_empty());

        lines.push(UsageLine {
            system: system.clone(),
            applications,
            per_month: per_month.into_iter().collect(),
            items_handled,
            active_days,
            share: (province > 0).then(|| applications as f64 / province as f64),
            little_used: !little_used_reasons.is_empty(),
            little_used_reasons,
            replaceable,
            alternatives,
        });
    }

    let mut per_month: BTreeMap<Month, i64> = months.iter().map(|m| (*m, 0)).collect();
    for a in inputs.applications {
        *per_month.entry(Month::of_day(a.day)).or_default() += a.applications;
    }
    let items: BTreeSet<&str> = inputs
        .applications
        .iter()
        .map(|a| a.item_code.as_str())
        .collect();
    let days: BTreeSet<i64> = inputs
        .applications
        .iter()
        .map(|a| a.day)
        .chain(inputs.event_days.iter().map(|e| e.day))
        .collect();
    let listed: i64 = lines.iter().map(|l| l.applications).sum();
    let totals = UsageTotals {
        applications: province,
        per_month: per_month.into_iter().collect(),
        items_handled: items.len(),
        active_days: days.len() as i64,
        systems: lines.len(),
        little_used_systems: lines.iter().filter(|l| l.little_used).count(),
        replaceable_systems: lines.iter().filter(|l| l.replaceable).count(),
        applications_to_unlisted_systems: province - listed,
    };
    UsageReport {
        period: period.clone(),
        generated_at: inputs.generated_at,
        thresholds: t.clone(),
        lines,
        totals,
    }
}

/// `n / months` to two decimals, as words show it.
fn average(n: i64, months: i64) -> String {
    let hundredths = (n * 100 + months / 2) / months.max(1);
    if hundredths % 100 == 0 {
        format!("{}", hundredths / 100)
    } else {
        format!("{}.{:02}", hundredths / 100, hundredths % 100)
            .trim_end_matches('0')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(text: &str) -> Month {
        text.parse().unwrap()
    }

    /// 2026-03-15T12:00+08:00.
    const MID_MARCH_2026: i64 = 1_773_547_200_000;

    #[test]
    fn months_read_exactly_and_start_at_midnight_in_china() {
        assert_eq!(month("2026-03").to_string(), "2026-03");
        for bad in [
            "2026-3",
            "2026-13",
            "2026-00",
            "26-03",
            "2026/03",
            "1999-12",
            "２０２６-03",
            "",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        // 2026-03-01T00:00+08:00 is 2026-02-28T16:00Z.
        assert_eq!(month("2026-03").start_millis(), 1_772_294_400_000);
        assert_eq!(Month::of_millis(1_772_294_400_000), month("2026-03"));
        assert_eq!(Month::of_millis(1_772_294_399_999), month("2026-02"));
        assert_eq!(month("2026-01").plus(-1), month("2025-12"));
        assert_eq!(month("2025-12").plus(1), month("2026-01"));
        assert_eq!(Month::of_millis(MID_MARCH_2026), month("2026-03"));
    }

    #[test]
    fn the_default_period_is_the_last_twelve_full_months() {
        let p = period(None, None, MID_MARCH_2026).unwrap();
        assert_eq!((p.from, p.to), (month("2025-03"), month("2026-02")));
        assert_eq!(p.months().len(), 12);
        assert_eq!(p.start, month("2025-03").start_millis());
        assert_eq!(p.end, month("2026-03").start_millis());
        assert!(!p.includes_current_month);
        let p = period(Some(month("2026-03")), None, MID_MARCH_2026).unwrap();
        assert_eq!((p.from, p.to), (month("2026-03"), month("2026-03")));
        assert!(p.includes_current_month);
        let p = period(None, Some(month("2025-06")), MID_MARCH_2026).unwrap();
        assert_eq!(p.from, month("2024-07"));
    }

    #[test]
    fn every_problem_with_a_period_is_named() {
        let e = period(
            Some(month("2026-02")),
            Some(month("2025-02")),
            MID_MARCH_2026,
        )
        .unwrap_err();
        assert!(matches!(e[..], [PeriodError::Reversed { .. }]), "{e:?}");
        let e = period(
            Some(month("2020-01")),
            Some(month("2026-05")),
            MID_MARCH_2026,
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(matches!(e[0], PeriodError::TooLong { months: 77, .. }));
        assert_eq!(e[1].parameter(), "to");
        assert!(e[1].to_string().contains("2026-03"), "{}", e[1]);
        assert!(
            period(
                Some(month("2023-03")),
                Some(month("2026-02")),
                MID_MARCH_2026
            )
            .is_ok()
        );
        assert!(
            period(
                Some(month("2023-02")),
                Some(month("2026-02")),
                MID_MARCH_2026
            )
            .is_err()
        );
    }

    fn system(id: &str, items: &[&str], plan: Option<Plan>) -> SystemEntry {
        SystemEntry {
            id: id.into(),
            name: None,
            department_uscc: "11210000001756420G".into(),
            department_name: None,
            connected: true,
            plan,
            items: items.iter().map(|i| i.to_string()).collect(),
        }
    }

    fn day(date: &str) -> i64 {
        let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        d.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()
    }

    fn applications(system: &str, item: &str, date: &str, n: i64) -> DailyApplications {
        DailyApplications {
            system_id: system.into(),
            item_code: item.into(),
            day: day(date),
            applications: n,
        }
    }

    #[test]
    fn figures_and_flags_per_system() {
        let p = period(
            Some(month("2026-01")),
            Some(month("2026-02")),
            MID_MARCH_2026,
        )
        .unwrap();
        let apps = [
            applications("a", "X", "2026-01-05", 20),
            applications("a", "Y", "2026-01-05", 5),
            applications("a", "X", "2026-02-10", 15),
            applications("b", "X", "2026-02-11", 1),
            applications("gone", "Z", "2026-02-11", 9),
        ];
        let events = [
            EventDay {
                system_id: "b".into(),
                day: day("2026-02-12"),
            },
            EventDay {
                system_id: "b".into(),
                day: day("2026-02-11"),
            },
        ];
        let thresholds = UsageConfig {
            little_used_per_month: 10,
            little_used_active_days_per_month: 1,
        };
        let r = report(&Inputs {
            period: &p,
            systems: vec![
                system("a", &["X", "Y"], Some(Plan::Integrate)),
                system("b", &["X"], None),
                system("c", &["Y"], Some(Plan::Retire)),
                system("d", &[], None),
            ],
            applications: &apps,
            event_days: &events,
            thresholds: &thresholds,
            generated_at: MID_MARCH_2026,
        });
        let a = &r.lines[0];
        assert_eq!(a.applications, 40);
        assert_eq!(
            a.per_month,
            vec![(month("2026-01"), 25), (month("2026-02"), 15)]
        );
        assert_eq!(a.items_handled.len(), 2);
        assert_eq!(a.active_days, 2);
        assert_eq!(a.share, Some(40.0 / 50.0));
        assert!(!a.little_used, "{:?}", a.little_used_reasons);
        // Y is handled also by c only, which is to be retired.
        assert!(!a.replaceable);
        assert_eq!(
            a.alternatives,
            vec![("X".into(), vec!["b".into()]), ("Y".into(), vec![])]
        );
        let b = &r.lines[1];
        assert_eq!((b.applications, b.active_days), (1, 2));
        assert!(b.little_used);
        assert_eq!(
            b.little_used_reasons.len(),
            1,
            "{:?}",
            b.little_used_reasons
        );
        assert!(
            b.little_used_reasons[0].contains("0.5 a month"),
            "{:?}",
            b.little_used_reasons
        );
        assert!(b.replaceable);
        let c = &r.lines[2];
        assert!(
            c.replaceable,
            "a retiring system is replaced by one that stays"
        );
        assert_eq!(c.little_used_reasons.len(), 2);
        let d = &r.lines[3];
        assert!(!d.replaceable && d.little_used);
        assert_eq!(r.totals.applications, 50);
        assert_eq!(r.totals.applications_to_unlisted_systems, 9);
        assert_eq!(r.totals.items_handled, 3);
        assert_eq!(r.totals.active_days, 4);
        assert_eq!(
            r.totals.per_month,
            vec![(month("2026-01"), 25), (month("2026-02"), 25)]
        );
        assert_eq!(
            (r.totals.little_used_systems, r.totals.replaceable_systems),
            (3, 2)
        );
    }

    #[test]
    fn no_traffic_has_no_share() {
        let p = period(None, None, MID_MARCH_2026).unwrap();
        let r = report(&Inputs {
            period: &p,
            systems: vec![system("a", &["X"], None)],
            applications: &[],
            event_days: &[],
            thresholds: &UsageConfig::default(),
            generated_at: MID_MARCH_2026,
        });
        assert_eq!(r.lines[0].share, None);
        assert_eq!(r.lines[0].per_month.len(), 12);
        assert!(r.lines[0].little_used);
    }

    #[test]
    fn averages_read_short() {
        assert_eq!(average(1, 2), "0.5");
        assert_eq!(average(24, 12), "2");
        assert_eq!(average(10, 3), "3.33");
    }
}
