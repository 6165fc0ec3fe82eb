//! The working-day calendar and case clocks (办理时限): which days are worked, and when a case's
//! promised or statutory limit runs out, with time in special procedures left out.
//!
//! Everything here is pure. The calendar is built from the text of holiday files (reading them
//! is the caller's business); the clock turns an acceptance time, a [`TimeLimit`] and the case's
//! suspensions into a due time, and says how much of the limit is used and how much is left.
//!
//! # Days and times
//!
//! Instants are epoch milliseconds, as the store keeps them. Days are calendar days in China
//! Standard Time (+08:00, no daylight saving, so every day is 24 hours): a day runs from 00:00
//! to 24:00 CST, and "24:00 of D" is the same instant as 00:00 of the next day. A due time is
//! the first instant *past* the limit: a step at or after it is late, a step before it is on
//! time.
//!
//! # The calendar
//!
//! Saturdays and Sundays are rest days and every other day is a working day, unless a holiday
//! file says otherwise: its `off` dates are rest days (法定节假日 and the days around them), its
//! `work` dates are weekend days that are worked instead (调休上班). A year without a file
//! follows the weekend rule and takes the statutory holidays that are fixed by date
//! ([`FIXED_HOLIDAYS`]: 元旦 1 January, 劳动节 1–2 May, 国庆节 1–3 October, as 全国年节及纪念日放假办法
//! sets them since 2025) as rest days; the holidays that move with the lunar calendar or the solar
//! terms (春节, 清明节, 端午节, 中秋节) and the swapped working days cannot be known without the
//! year's notice, so such a year is only approximately right. [`Calendar::years`] says which
//! years have a file and [`Calendar::years_without_file`] which ones a span of time reaches
//! without one, so that the hub warns before a due time can fall there ([`horizon_warning`]).
//! The file format is described in `examples/calendar/README.md`.
//!
//! # The clock
//!
//! Every limit is one clock: an instant it starts at, the kind of time it counts, and a budget
//! of that time. A limit is due at the first instant at which the time counted since the start,
//! less the time counted inside suspensions, reaches the budget.
//!
//! | unit          | the clock starts at    | it counts                  | budget                   |
//! |---------------|------------------------|----------------------------|--------------------------|
//! | 1 working day | 24:00 of day D         | working days, all 24 hours | N × 24 h                 |
//! | 2 natural day | 24:00 of day D         | all time                   | N × 24 h                 |
//! | 5 month       | 24:00 of day D         | all time                   | to 24:00 of D + N months |
//! | 3 hour        | the acceptance instant | all time                   | N h                      |
//! | 4 minute      | the acceptance instant | all time                   | N min                    |
//!
//! where D is the acceptance day and N the limit's value.
//!
//! Without suspensions this gives the rules a service centre states (examples in CST, on the
//! 2026 calendar):
//!
//! - **Working days.** N working days from an acceptance at any time of day D end at 24:00 of
//!   the N-th working day after D. The acceptance day is not counted (as 民法典 第二百零一条
//!   counts periods), whether or not it is itself a working day, so an application accepted
//!   online on a Saturday or a holiday gets its full limit from the next working day. Swapped
//!   working days count like any working day. Accepted Friday 2026-02-13 at 10:00 with 2
//!   working days: Saturday 02-14 is worked (调休) and is day 1, 02-15 to 02-23 are 春节, and
//!   Tuesday 02-24 is day 2, so the case is due at 24:00 on 2026-02-24.
//! - **Natural days.** N natural days from day D end at 24:00 of day D + N, through weekends
//!   and holidays. Accepted 2026-01-29 at 15:00 with 5 natural days: due at 24:00 on
//!   2026-02-03.
//! - **Months.** N months from day D end at 24:00 of the day with the same number N months
//!   later, or of that month's last day when it has no such day (民法典 第二百零二条). Accepted
//!   2026-01-31 with 1 month: due at 24:00 on 2026-02-28.
//! - **Hours and minutes** are elapsed time from the acceptance instant, round the clock and
//!   through rest days. These units serve short limits (即办 within two hours, an urgent reply
//!   within 24 hours), which run on the clock; a limit meant to skip rest days is written in
//!   working days. Accepted Friday 2026-03-06 at 16:30 with 24 hours: due Saturday 2026-03-07
//!   at 16:30.
//! - **A limit of 0** is due when its clock starts: at 24:00 of the acceptance day for day and
//!   month units (当日办结), at the acceptance instant for hours and minutes.
//!
//! A natural-day or month limit whose last day is a rest day is *not* extended to the next
//! working day (the rule of 民法典 第二百零三条 for periods in litigation): it runs through
//! holidays and ends where it ends. That keeps one clock per unit and makes "80% of the limit
//! used" mean the same thing in every unit.
//!
//! # Suspension (特别程序)
//!
//! Suspensions are half-open intervals `[from, to)` of epoch milliseconds, in any order, possibly
//! overlapping; `to == i64::MAX` means the case is still suspended. Time inside them counts for
//! nothing, so the due time moves by the suspended time *as the limit's clock counts it*:
//! working time (the hours of working days) for working-day limits, elapsed time for the
//! others. Suspended time before the clock starts (on the acceptance day, or a pre-acceptance
//! supplement) or after the due time changes nothing. Nothing is rounded. For example, accepted
//! Monday 2026-03-02 at 10:00 with 5 working days, the case is due at 24:00 on Monday 03-09.
//! Suspended for a supplement (补正) from Wednesday 03-04 09:00 to Thursday 03-05 15:00, the
//! clock stops for 15 + 15 = 30 working hours, so the case is due 30 working hours after 24:00
//! on 03-09: all of Tuesday 03-10 and 6 hours of Wednesday, i.e. at 06:00 on 2026-03-11. A
//! suspension from Friday 16:00 to Monday 10:00 stops a working-day clock for 8 + 10 hours only,
//! since the weekend was not counted anyway.
//!
//! A case suspended with no end before its limit ran out has no due time yet
//! ([`Calendar::deadline`] is `None`); one suspended only after its due time keeps that due
//! time. A clock never runs out while it is stopped: a limit of 0 whose case is suspended when
//! the clock starts is due when the suspension ends.
//!
//! # Progress
//!
//! [`Calendar::elapsed_fraction`] is the counted time used so far over the budget: it reaches
//! exactly 1.0 at the due time and stays still while the case is suspended, so rules can ask
//! for "80% of the limit used" in any unit. [`Calendar::when_used`] is the instant a fraction is
//! reached, for timers: 10 working days from Monday 2026-03-02 are due at 24:00 on 03-16, and
//! 80% of them are used at 24:00 on 03-12, the end of the 8th working day.
//!
//! [`Calendar::remaining`] expresses the time left as milliseconds and as working days, the
//! latter counted like a limit: the working days after today, up to and including the day the
//! limit ends on. For a case due at 24:00 on Monday 2026-03-09, on Friday 03-06 one working day
//! is left (the Monday); on Monday itself none is, though hours are; on Tuesday 03-10 the case
//! is overdue by one working day (−1).

use crate::catalog::{TimeLimit, TimeUnit};
use chrono::{Datelike, Months, NaiveDate, Weekday};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// China Standard Time is eight hours ahead of UTC, all year.
const CST_MS: i64 = 8 * HOUR_MS;
/// The largest day number whose start still fits in epoch milliseconds.
const LAST_DAY: i64 = i64::MAX / DAY_MS - 1;

/// The statutory holidays fixed by date (全国年节及纪念日放假办法, as revised in 2024 and in force
/// from 2025): the days a year without a holiday file still takes as rest days, as (month, day,
/// name). 春节, 清明节, 端午节 and 中秋节 move with the lunar calendar or the solar terms and are
/// not here.
pub const FIXED_HOLIDAYS: [(u32, u32, &str); 6] = [
    (1, 1, "元旦"),
    (5, 1, "劳动节"),
    (5, 2, "劳动节"),
    (10, 1, "国庆节"),
    (10, 2, "国庆节"),
    (10, 3, "国庆节"),
];

/// The Gregorian calendar repeats its weekdays every 400 years (146 097 days, 20 871 weeks).
const CYCLE_YEARS: i64 = 400;

/// Which days are worked: weekends off, plus each year's holidays and swapped working days.
///
/// [`Calendar::default`] has no file: the weekend rule and [`FIXED_HOLIDAYS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    /// The days a holiday file lists, by day number (days since 1970-01-01 in CST), and whether
    /// each is worked.
    listed: BTreeMap<i64, bool>,
    /// The years a holiday file was given for.
    years: BTreeSet<i32>,
}

/// One problem in a holiday file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarError {
    /// The file as the caller named it; empty for [`Calendar::parse`].
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The entry the problem is about, as a TOML path such as `holiday[1].off[2]`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = self.file.display().to_string();
        if let Some(line) = self.line {
            if !place.is_empty() {
                place.push(':');
            }
            place.push_str(&line.to_string());
            if let Some(column) = self.column {
                place.push_str(&format!(":{column}"));
            }
        }
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for CalendarError {}

/// Time left until a due time, for lists of open cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// `due − now`: zero or negative once the case is overdue.
    pub ms: i64,
    /// Before the due time, the working days after today up to and including the day the limit
    /// ends on (today itself is not counted, as on acceptance). From the due time on, minus the
    /// working days after that day up to and including today.
    pub working_days: i64,
}

impl Remaining {
    /// Whether the due time has come: the due time is the first instant past the limit.
    pub fn is_overdue(&self) -> bool {
        self.ms <= 0
    }
}

impl Calendar {
    /// The calendar one holiday file describes (see [`Calendar::from_files`]); errors carry no
    /// file name.
    pub fn parse(text: &str) -> Result<Calendar, Vec<CalendarError>> {
        Calendar::from_files(&[("", text)])
    }

    /// The calendar of several holiday files, given as (name, text), typically one per year.
    /// Every problem in every file is reported, each with its file, line and entry: a date
    /// that is not a date, a date outside the file's year, a date listed twice, a date that is
    /// both off and worked, a swapped working day that is not a weekend day, a year given by
    /// two files. A file that is not valid TOML, or has a wrong type or unknown key, gets one
    /// error and no further checks.
    pub fn from_files<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
    ) -> Result<Calendar, Vec<CalendarError>> {
        let mut errors = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut years: BTreeMap<i32, String> = BTreeMap::new();
        for (path, text) in files {
            let source = Source {
                path: path.as_ref(),
                text: text.as_ref(),
            };
            let file: HolidayFile = match toml::from_str(source.text) {
                Ok(file) => file,
                Err(e) => {
                    errors.push(source.error(e.span(), None, e.message().trim()));
                    continue;
                }
            };
            source.check(&file, &mut years, &mut entries, &mut errors);
        }

        let mut first_listing: BTreeMap<i64, usize> = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let Some(&first) = first_listing.get(&entry.day) else {
                first_listing.insert(entry.day, i);
                continue;
            };
            let earlier = &entries[first];
            let kind = |e: &Entry| if e.working { "worked" } else { "off" };
            let message = if earlier.working == entry.working {
                format!(
                    "{}: {} is listed twice; it is also at {} ({})",
                    entry.holiday, entry.date, earlier.place, earlier.holiday
                )
            } else {
                format!(
                    "{}: {} is listed as {} here and as {} at {} ({}); a day is one or the other",
                    entry.holiday,
                    entry.date,
                    kind(entry),
                    kind(earlier),
                    earlier.place,
                    earlier.holiday
                )
            };
            errors.push(CalendarError {
                message,
                ..entry.error.clone()
            });
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Calendar {
            listed: entries.iter().map(|e| (e.day, e.working)).collect(),
            years: years.into_keys().collect(),
        })
    }

    /// The years a holiday file was given for, in order.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    /// The years without a holiday file that the span from `from_ms` to `until_ms` (both
    /// included) touches, in order: on those days only the weekends and [`FIXED_HOLIDAYS`] are
    /// known to be off.
    pub fn years_without_file(&self, from_ms: i64, until_ms: i64) -> Vec<i32> {
        let first = year_of(day_of(from_ms));
        let last = year_of(day_of(until_ms.max(from_ms)));
        (first..=last)
            .filter_map(|y| i32::try_from(y).ok())
            .filter(|y| !self.years.contains(y))
            .collect()
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.working(i64::from(date.to_epoch_days()))
    }

    /// The due time of `limit` for a case accepted at `start_ms`, with the time inside
    /// `suspended` not counted (see the module documentation). `None` while an open-ended
    /// suspension (`to == i64::MAX`) began before the limit ran out, and for a due time too far
    /// away to be represented.
    pub fn deadline(
        &self,
        start_ms: i64,
        limit: &TimeLimit,
        suspended: &[(i64, i64)],
    ) -> Option<i64> {
        let clock = self.clock(start_ms, limit);
        self.reached(&clock, clock.budget, suspended)
    }

    /// The instant at which `fraction` of `limit` is used (0.8 for "80% used", 1.0 for the due
    /// time, more than 1 for points past it). `None` in the same cases as [`Calendar::deadline`].
    pub fn when_used(
        &self,
        start_ms: i64,
        limit: &TimeLimit,
        suspended: &[(i64, i64)],
        fraction: f64,
    ) -> Option<i64> {
        let clock = self.clock(start_ms, limit);
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.max(0.0)
        };
        // The cast saturates, and a target past what fits is simply never reached.
        let target = (clock.budget as f64 * fraction).ceil() as i64;
        self.reached(&clock, target, suspended)
    }

    /// How much of `limit` is used at `now_ms`: the counted time since the clock started, less
    /// suspended time, over the budget. 0 before the clock starts, exactly 1.0 at the due time,
    /// more after it, and still while the case is suspended. A limit of 0 has used nothing
    /// before its due time and 1.0 from it.
    pub fn elapsed_fraction(
        &self,
        start_ms: i64,
        limit: &TimeLimit,
        suspended: &[(i64, i64)],
        now_ms: i64,
    ) -> f64 {
        let clock = self.clock(start_ms, limit);
        if clock.budget == 0 {
            return match self.reached(&clock, 0, suspended) {
                Some(due) if now_ms >= due => 1.0,
                _ => 0.0,
            };
        }
        if now_ms <= clock.start {
            return 0.0;
        }
        let mut used = self.counted(clock.measure, clock.start, now_ms);
        for (from, to) in merged(suspended) {
            used -= self.counted(clock.measure, from.max(clock.start), to.min(now_ms));
        }
        used as f64 / clock.budget as f64
    }

    /// The time left at `now_ms` until `due_ms`, in milliseconds and in working days.
    pub fn remaining(&self, now_ms: i64, due_ms: i64) -> Remaining {
        let today = day_of(now_ms);
        let last_day = day_of(due_ms.saturating_sub(1));
        let working_days = if now_ms < due_ms {
            self.working_days_in(today + 1, last_day + 1)
        } else {
            -self.working_days_in(last_day + 1, today + 1)
        };
        Remaining {
            ms: due_ms.saturating_sub(now_ms),
            working_days,
        }
    }

    fn working(&self, day: i64) -> bool {
        match self.listed.get(&day) {
            Some(&working) => working,
            None => !is_weekend(day) && !self.fixed_holiday(day),
        }
    }

    /// Whether `day` is one of [`FIXED_HOLIDAYS`] in a year without a holiday file.
    fn fixed_holiday(&self, day: i64) -> bool {
        let (year, month, date) = civil(day);
        FIXED_HOLIDAYS
            .iter()
            .any(|&(m, d, _)| (m, d) == (month, date))
            && i32::try_from(year).is_ok_and(|y| !self.years.contains(&y))
    }

    /// The working days among days `from..to`.
    fn working_days_in(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let weeks = (to - from) / 7;
        let mut count = weeks * 5;
        for day in from + weeks * 7..to {
            count += i64::from(!is_weekend(day));
        }
        // A listed day is in a year with a file (or in the December before one, which holds no
        // fixed holiday), so it is never a fixed holiday as well.
        for (&day, &working) in self.listed.range(from..to) {
            count += i64::from(working) - i64::from(!is_weekend(day));
        }
        count - (self.fixed_weekdays_before(to) - self.fixed_weekdays_before(from))
    }

    /// How many of the [`FIXED_HOLIDAYS`] of years without a file fall on a weekday before day
    /// `day`, counted from an arbitrary origin (only differences mean anything). Whole years come
    /// from the 400-year cycle, so a span of any length costs the same.
    fn fixed_weekdays_before(&self, day: i64) -> i64 {
        let year = year_of(day);
        let mut count = fixed_weekdays_in_years_before(year);
        for &file_year in &self.years {
            if i64::from(file_year) < year {
                count -= fixed_weekdays_of(i64::from(file_year));
            }
        }
        if i32::try_from(year).is_ok_and(|y| !self.years.contains(&y)) {
            count += FIXED_HOLIDAYS
                .iter()
                .map(|&(m, d, _)| days_from_civil(year, m, d))
                .filter(|&h| h < day && !is_weekend(h))
                .count() as i64;
        }
        count
    }

    /// The `k`-th working day (k ≥ 1) on or after day `from`.
    fn nth_working_day(&self, from: i64, k: i64) -> Option<i64> {
        // A week holds five weekdays, so twice k days plus a week is enough unless holidays
        // crowd the span; widen until it holds k working days, then bisect.
        let mut span = k.checked_mul(2)?.checked_add(7)?;
        loop {
            let end = from.checked_add(span).filter(|&end| end <= LAST_DAY)?;
            if self.working_days_in(from, end) >= k {
                break;
            }
            span = span.checked_mul(2)?;
        }
        // Invariant: fewer than k working days in from..lo, at least k in from..hi.
        let (mut lo, mut hi) = (from, from + span);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.working_days_in(from, mid) >= k {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi - 1)
    }

    /// The time `measure` counts in `[a, b)`.
    fn counted(&self, measure: Measure, a: i64, b: i64) -> i64 {
        if b <= a {
            return 0;
        }
        match measure {
            Measure::Natural => b.saturating_sub(a),
            Measure::Working => {
                let (first, last) = (day_of(a), day_of(b - 1));
                let on = |day: i64, ms: i64| if self.working(day) { ms } else { 0 };
                if first == last {
                    return on(first, b - a);
                }
                let whole = self.working_days_in(first + 1, last);
                on(first, day_start(first + 1) - a)
                    .saturating_add(whole.saturating_mul(DAY_MS))
                    .saturating_add(on(last, b - day_start(last)))
            }
        }
    }

    /// The first instant `t' ≥ t` with `amount` of time counted in `[t, t')`.
    fn advance(&self, measure: Measure, t: i64, amount: i64) -> Option<i64> {
        match measure {
            Measure::Natural => t.checked_add(amount),
            Measure::Working => {
                if amount == 0 {
                    return Some(t);
                }
                let day = day_of(t);
                let mut amount = amount;
                if self.working(day) {
                    let rest_of_day = day_start(day + 1) - t;
                    if amount <= rest_of_day {
                        return Some(t + amount);
                    }
                    amount -= rest_of_day;
                }
                // `whole` working days pass entirely; the last millisecond falls `part` into
                // the next one, so a whole number of days ends at 24:00, not on the next
                // working morning.
                let whole = (amount - 1) / DAY_MS;
                let part = amount - whole * DAY_MS;
                let last = self.nth_working_day(day + 1, whole + 1)?;
                day_start(last).checked_add(part)
            }
        }
    }

    fn clock(&self, start_ms: i64, limit: &TimeLimit) -> Clock {
        let n = i64::from(limit.value);
        let acceptance_day = day_of(start_ms);
        let after_acceptance_day = day_start(acceptance_day + 1);
        let (start, measure, budget) = match limit.unit {
            TimeUnit::WorkingDay => (after_acceptance_day, Measure::Working, n * DAY_MS),
            TimeUnit::NaturalDay => (after_acceptance_day, Measure::Natural, n * DAY_MS),
            TimeUnit::Hour => (start_ms, Measure::Natural, n * HOUR_MS),
            TimeUnit::Minute => (start_ms, Measure::Natural, n * MINUTE_MS),
            TimeUnit::Month => {
                // A month count too large for the calendar never comes due.
                let budget = i32::try_from(acceptance_day)
                    .ok()
                    .and_then(NaiveDate::from_epoch_days)
                    .and_then(|d| d.checked_add_months(Months::new(limit.value)))
                    .map(|last| day_start(i64::from(last.to_epoch_days()) + 1))
                    .map_or(i64::MAX, |end| end.saturating_sub(after_acceptance_day));
                (after_acceptance_day, Measure::Natural, budget)
            }
        };
        Clock {
            start,
            measure,
            budget,
        }
    }

    /// The first instant at which `target` of the clock's counted time has run outside
    /// suspensions; never an instant inside a suspension.
    fn reached(&self, clock: &Clock, target: i64, suspended: &[(i64, i64)]) -> Option<i64> {
        let mut t = clock.start;
        let mut left = target;
        for (from, to) in merged(suspended) {
            if to <= t {
                continue;
            }
            let from = from.max(t);
            let run = self.counted(clock.measure, t, from);
            // The clock runs in [t, from): the target falls there if that run covers it. When
            // the suspension starts right at t, even a target of 0 waits for its end.
            if from > t && run >= left {
                break;
            }
            left -= run;
            if to == i64::MAX {
                return None;
            }
            t = to;
        }
        self.advance(clock.measure, t, left)
    }
}

/// What a limit's clock counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Every millisecond.
    Natural,
    /// Only the milliseconds of working days.
    Working,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    start: i64,
    measure: Measure,
    budget: i64,
}

/// The suspensions sorted, with empty ones dropped and overlapping or touching ones joined.
fn merged(suspended: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut intervals: Vec<(i64, i64)> = suspended
        .iter()
        .copied()
        .filter(|(from, to)| from < to)
        .collect();
    intervals.sort_unstable();
    let mut joined: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
    for (from, to) in intervals {
        match joined.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => joined.push((from, to)),
        }
    }
    joined
}

/// The CST day (days since 1970-01-01) that instant `ms` falls on.
fn day_of(ms: i64) -> i64 {
    ms.saturating_add(CST_MS).div_euclid(DAY_MS)
}

/// 00:00 CST of day number `day`.
fn day_start(day: i64) -> i64 {
    day.clamp(-LAST_DAY, LAST_DAY) * DAY_MS - CST_MS
}

fn is_weekend(day: i64) -> bool {
    // Day 0, 1970-01-01, was a Thursday: counting from Monday = 0, Saturday and Sunday are 5, 6.
    (day + 3).rem_euclid(7) >= 5
}

/// The day number of a Gregorian date, for any year (the days-from-civil algorithm: years
/// start in March, so the leap day ends them).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The Gregorian (year, month, day) of a day number, for any day (the inverse of
/// [`days_from_civil`]).
fn civil(day: i64) -> (i64, u32, u32) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let d = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn year_of(day: i64) -> i64 {
    civil(day).0
}

/// How many of the [`FIXED_HOLIDAYS`] fall on a weekday in `year`.
fn fixed_weekdays_of(year: i64) -> i64 {
    FIXED_HOLIDAYS
        .iter()
        .filter(|&&(m, d, _)| !is_weekend(days_from_civil(year, m, d)))
        .count() as i64
}

/// How many of the [`FIXED_HOLIDAYS`] fall on a weekday in the years from 0 up to `year`
/// (negative for years before 0), file or no file.
fn fixed_weekdays_in_years_before(year: i64) -> i64 {
    static CYCLE: std::sync::OnceLock<[i64; CYCLE_YEARS as usize + 1]> = std::sync::OnceLock::new();
    let prefix = CYCLE.get_or_init(|| {
        let mut prefix = [0; CYCLE_YEARS as usize + 1];
        for y in 0..CYCLE_YEARS {
            prefix[y as usize + 1] = prefix[y as usize] + fixed_weekdays_of(y);
        }
        prefix
    });
    let cycles = year.div_euclid(CYCLE_YEARS);
    let rest = year.rem_euclid(CYCLE_YEARS) as usize;
    cycles * prefix[CYCLE_YEARS as usize] + prefix[rest]
}

/// The warning the hub gives while serving (at start, then daily) and `tongban check` prints
/// when a case accepted at `now_ms` with one of `limits` can come due in a year without a
/// holiday file; `None` when the calendar covers every such due time. With no limits at hand
/// (no catalog), `fallback` stands for them.
pub fn horizon_warning(
    calendar: &Calendar,
    now_ms: i64,
    limits: &[TimeLimit],
    fallback: TimeLimit,
) -> Option<String> {
    let latest = limits
        .iter()
        .chain(limits.is_empty().then_some(&fallback))
        .filter_map(|limit| calendar.deadline(now_ms, limit, &[]))
        .max()?;
    // The due time is the first instant past the limit: its last counted day is the one before.
    let years = calendar.years_without_file(now_ms, latest.saturating_sub(1).max(now_ms));
    if years.is_empty() {
        return None;
    }
    let years: Vec<String> = years.iter().map(|y| y.to_string()).collect();
    let fixed: Vec<String> = FIXED_HOLIDAYS
        .iter()
        .map(|(m, d, name)| format!("{name} {m}-{d}"))
        .collect();
    Some(format!(
        "the working-day calendar has no holiday file for {}, which a case accepted now can reach \
         (latest due {}): those years count weekends and the holidays fixed by date ({}) as rest \
         days, but not 春节, 清明节, 端午节, 中秋节 nor the swapped working days, so working-day dues \
         there can be off by days; add the year's file to [supervision] calendars when the State \
         Council's notice appears",
        years.join(", "),
        crate::clock::format_millis(latest),
        fixed.join(", ")
    ))
}

/// One holiday file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    year: Spanned<i64>,
    source: Spanned<String>,
    #[serde(default)]
    holiday: Vec<Holiday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Holiday {
    name: Spanned<String>,
    /// Dates are read as any value so that each bad one is reported on its own.
    off: Spanned<Vec<Spanned<toml::Value>>>,
    #[serde(default)]
    work: Vec<Spanned<toml::Value>>,
}

/// A date a file lists, kept until every file is read so that repeats across files are found.
struct Entry {
    day: i64,
    date: NaiveDate,
    working: bool,
    holiday: String,
    /// `file:line:column`, to point from a later listing back to this one.
    place: String,
    /// An error located at this entry, to fill in with a message.
    error: CalendarError,
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: &str,
    ) -> CalendarError {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = self.line_column(span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        CalendarError {
            file: self.path.to_path_buf(),
            line,
            column,
            key,
            message: message.to_string(),
        }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        crate::source::line_column(self.text, offset)
    }

    /// Checks one parsed file, collecting its dates into `entries` and its problems into
    /// `errors`.
    fn check(
        &self,
        file: &HolidayFile,
        years: &mut BTreeMap<i32, String>,
        entries: &mut Vec<Entry>,
        errors: &mut Vec<CalendarError>,
    ) {
        let here = |span: Range<usize>, key: &str, message: &str| {
            self.error(Some(span), Some(key.to_string()), message)
        };
        let year = match i32::try_from(*file.year.get_ref()) {
            Ok(year) if (1..=9999).contains(&year) => Some(year),
            _ => {
                errors.push(here(
                    file.year.span(),
                    "year",
                    "the year must be between 1 and 9999",
                ));
                None
            }
        };
        if let Some(year) = year {
            let place = self.place(file.year.span().start);
            match years.get(&year) {
                Some(other) => errors.push(here(
                    file.year.span(),
                    "year",
                    &format!("{year} is already described at {other}; give each year one file"),
                )),
                None => {
                    years.insert(year, place);
                }
            }
        }
        if file.source.get_ref().trim().is_empty() {
            errors.push(here(
                file.source.span(),
                "source",
                "say which notice the schedule comes from",
            ));
        }
        if file.holiday.is_empty() {
            errors.push(here(
                file.year.span(),
                "holiday",
                "the file lists no [[holiday]]",
            ));
        }
        for (i, holiday) in file.holiday.iter().enumerate() {
            let name = holiday.name.get_ref().trim();
            if name.is_empty() {
                errors.push(here(
                    holiday.name.span(),
                    &format!("holiday[{i}].name"),
                    "a holiday needs a name",
                ));
            }
            if holiday.off.get_ref().is_empty() {
                errors.push(here(
                    holiday.off.span(),
                    &format!("holiday[{i}].off"),
                    &format!("{name}: a holiday needs at least one day off"),
                ));
            }
            let lists = [
                ("off", holiday.off.get_ref(), false),
                ("work", &holiday.work, true),
            ];
            for (list, values, working) in lists {
                for (j, value) in values.iter().enumerate() {
                    let key = format!("holiday[{i}].{list}[{j}]");
                    let fail = |message: String| here(value.span(), &key, &message);
                    let date = match read_date(value.get_ref()) {
                        Ok(date) => date,
                        Err(message) => {
                            errors.push(fail(format!("{name}: {message}")));
                            continue;
                        }
                    };
                    if let Some(year) = year {
                        // A year's notice may arrange 元旦 from the last days of the December
                        // before (the 2019 notice: 2018-12-30 to 2019-01-01 off, 2018-12-29
                        // worked), so that December belongs to the file too.
                        let in_year =
                            date.year() == year || (date.year() == year - 1 && date.month() == 12);
                        if !in_year {
                            errors.push(fail(format!(
                                "{name}: {date} is not in {year} (a {year} file lists dates \
                                 of {year}, and of December {} for a 元旦 that starts then)",
                                year - 1
                            )));
                            continue;
                        }
                    }
                    let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
                    if working && !weekend {
                        errors.push(fail(format!(
                            "{name}: {date} is a {}, a working day anyway; `work` lists the \
                             weekend days that are worked (调休上班)",
                            weekday_name(date.weekday())
                        )));
                        continue;
                    }
                    entries.push(Entry {
                        day: i64::from(date.to_epoch_days()),
                        date,
                        working,
                        holiday: name.to_string(),
                        place: self.place(value.span().start),
                        error: fail(String::new()),
                    });
                }
            }
        }
    }

    /// `file:line:column` of an offset, for messages that point at another entry.
    fn place(&self, offset: usize) -> String {
        let (line, column) = self.line_column(offset);
        let file = self.path.display().to_string();
        if file.is_empty() {
            format!("{line}:{column}")
        } else {
            format!("{file}:{line}:{column}")
        }
    }
}

/// A date written as `"YYYY-MM-DD"`, or as a bare TOML date.
fn read_date(value: &toml::Value) -> Result<NaiveDate, String> {
    match value {
        toml::Value::String(text) => {
            let bytes = text.as_bytes();
            let shaped = bytes.len() == 10
                && bytes.iter().enumerate().all(|(i, b)| match i {
                    4 | 7 => *b == b'-',
                    _ => b.is_ascii_digit(),
                });
            shaped
                .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .flatten()
                .ok_or_else(|| format!("\"{text}\" is not a date written YYYY-MM-DD"))
        }
        toml::Value::Datetime(datetime) => match (datetime.date, datetime.time, datetime.offset) {
            (Some(date), None, None) => NaiveDate::from_ymd_opt(
                i32::from(date.year),
                u32::from(date.month),
                u32::from(date.day),
            )
            .ok_or_else(|| format!("{datetime} is not a date")),
            _ => Err(format!(
                "{datetime} is not a date (a date has no time of day)"
            )),
        },
        other => {
            let kind = other.type_str();
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            Err(format!(
                "expected a date written \"YYYY-MM-DD\", found {article} {kind}"
            ))
        }
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, TimeZone};
    use proptest::prelude::*;

    const CN_2026: &str = include_str!("../../examples/calendar/cn-2026.toml");

    fn cn() -> Calendar {
        Calendar::from_files(&[("cn-2026.toml", CN_2026)]).expect("the example calendar parses")
    }

    /// An instant written `YYYY-MM-DD HH:MM` in CST.
    fn at(text: &str) -> i64 {
        let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect(text);
        crate::clock::cst()
            .from_local_datetime(&local)
            .single()
            .expect("CST has no gaps")
            .timestamp_millis()
    }

    /// An instant as `YYYY-MM-DD HH:MM` in CST, with 24:00 for the end of a day so that due
    /// times read as a service centre writes them.
    fn show(ms: i64) -> String {
        let time = crate::clock::cst()
            .timestamp_millis_opt(ms)
            .single()
            .unwrap();
        if time.format("%H:%M:%S%.3f").to_string() == "00:00:00.000" {
            let day = time.date_naive().pred_opt().unwrap();
            format!("{day} 24:00")
        } else {
            time.format("%Y-%m-%d %H:%M").to_string()
        }
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn limit(value: u32, unit: TimeUnit) -> TimeLimit {
        TimeLimit { value, unit }
    }

    fn due(cal: &Calendar, start: &str, value: u32, unit: TimeUnit) -> String {
        show(cal.deadline(at(start), &limit(value, unit), &[]).unwrap())
    }

    fn due_suspended(
        cal: &Calendar,
        start: &str,
        l: TimeLimit,
        suspended: &[(&str, &str)],
    ) -> String {
        let intervals: Vec<(i64, i64)> = suspended.iter().map(|(a, b)| (at(a), at(b))).collect();
        show(cal.deadline(at(start), &l, &intervals).unwrap())
    }

    #[test]
    fn the_example_file_holds_the_2026_notice() {
        let cal = cn();
        assert_eq!(cal.years().collect::<Vec<_>>(), vec![2026]);
        for off in [
            "2026-01-01",
            "2026-01-02",
            "2026-02-16",
            "2026-02-20",
            "2026-02-23",
            "2026-04-06",
            "2026-05-04",
            "2026-05-05",
            "2026-06-19",
            "2026-09-25",
            "2026-10-01",
            "2026-10-07",
        ] {
            assert!(!cal.is_working_day(date(off)), "{off} is a holiday");
        }
        for work in [
            "2026-01-04",
            "2026-02-14",
            "2026-02-28",
            "2026-05-09",
            "2026-09-20",
            "2026-10-10",
        ] {
            assert!(
                cal.is_working_day(date(work)),
                "{work} is a swapped working day"
            );
        }
        assert!(
            !cal.is_working_day(date("2026-03-07")),
            "an ordinary Saturday"
        );
        assert!(
            cal.is_working_day(date("2026-02-24")),
            "the first day after 春节"
        );
        // 261 weekdays, 19 of them holidays, 6 weekend days worked.
        let year = cal.working_days_in(
            i64::from(date("2026-01-01").to_epoch_days()),
            i64::from(date("2027-01-01").to_epoch_days()),
        );
        assert_eq!(year, 248);
        assert!(
            !Calendar::default().is_working_day(date("2026-10-01")),
            "without a file the fixed statutory holidays are still off"
        );
        assert!(
            Calendar::default().is_working_day(date("2026-10-05")),
            "without a file the rest of 国庆 is not known"
        );
    }

    #[test]
    fn a_year_without_a_file_takes_its_fixed_statutory_holidays_off() {
        let cal = cn();
        use TimeUnit::WorkingDay as W;
        // 2027 has no file. Friday 2027-01-01 is 元旦 all the same: two working days from
        // Wednesday 2026-12-30 are Thursday 12-31 and Monday 2027-01-04, not the Friday.
        assert!(!cal.is_working_day(date("2027-01-01")));
        assert_eq!(due(&cal, "2026-12-30 10:00", 2, W), "2027-01-04 24:00");
        // 劳动节 and 国庆节 by date, on weekdays and weekends alike; the day after is worked.
        for off in [
            "2027-05-01",
            "2027-05-02",
            "2027-10-01",
            "2027-10-02",
            "2028-05-01",
        ] {
            assert!(!cal.is_working_day(date(off)), "{off}");
        }
        for worked in ["2027-05-03", "2027-10-04", "2028-01-03"] {
            assert!(cal.is_working_day(date(worked)), "{worked}");
        }
        // Thursday 2026-10-01 to Wednesday 10-07 follow the 2026 file, not the fixed dates.
        assert_eq!(due(&cal, "2026-09-30 10:00", 1, W), "2026-10-08 24:00");
        assert_eq!(
            due(&Calendar::default(), "2026-09-30 10:00", 1, W),
            "2026-10-05 24:00",
            "without a file only 10-01 to 10-03 are known to be off"
        );
    }

    #[test]
    fn counting_working_days_agrees_with_asking_day_by_day_across_years() {
        let with_2026 = cn();
        let two_files = Calendar::from_files(&[
            ("a", include_str!("../../examples/calendar/cn-2026.toml")),
            (
                "b",
                "year = 2028\nsource = \"test\"\n[[holiday]]\nname = \"元旦\"\noff = [\"2028-01-03\"]\n",
            ),
        ])
        .unwrap();
        let start = i64::from(date("2023-11-20").to_epoch_days());
        for cal in [Calendar::default(), with_2026, two_files] {
            for (from, len) in [(0, 2000), (37, 400), (400, 3), (770, 370), (1130, 9)] {
                let (a, b) = (start + from, start + from + len);
                let naive = (a..b).filter(|&d| cal.working(d)).count() as i64;
                assert_eq!(cal.working_days_in(a, b), naive, "{from}+{len}");
            }
        }
        // 2028's file says only 01-03 is off: its fixed dates are not taken as well.
        let cal = Calendar::from_files(&[(
            "b",
            "year = 2028\nsource = \"test\"\n[[holiday]]\nname = \"元旦\"\noff = [\"2028-01-03\"]\n",
        )])
        .unwrap();
        assert!(cal.is_working_day(date("2028-05-01")));
        assert!(!cal.is_working_day(date("2029-05-01")));
        // Day numbers and dates agree far from today too.
        for text in [
            "1600-03-01",
            "1970-01-01",
            "2000-02-29",
            "2026-12-31",
            "9999-12-31",
        ] {
            let d = date(text);
            let n = i64::from(d.to_epoch_days());
            assert_eq!(
                civil(n),
                (i64::from(d.year()), d.month(), d.day()),
                "{text}"
            );
            assert_eq!(days_from_civil(i64::from(d.year()), d.month(), d.day()), n);
        }
    }

    #[test]
    fn the_hub_warns_when_a_due_can_reach_a_year_without_a_file() {
        let cal = cn();
        let sixty = limit(60, TimeUnit::NaturalDay);
        let fallback = limit(3, TimeUnit::Month);
        let warning = horizon_warning(&cal, at("2026-12-05 10:00"), &[sixty], fallback).unwrap();
        assert_eq!(
            warning,
            "the working-day calendar has no holiday file for 2027, which a case accepted now \
             can reach (latest due 2027-02-04T00:00:00.000+08:00): those years count weekends \
             and the holidays fixed by date (元旦 1-1, 劳动节 5-1, 劳动节 5-2, 国庆节 10-1, \
             国庆节 10-2, 国庆节 10-3) as rest days, but not 春节, 清明节, 端午节, 中秋节 nor the \
             swapped working days, so working-day dues there can be off by days; add the year's \
             file to [supervision] calendars when the State Council's notice appears"
        );
        assert!(!warning.contains("  "), "{warning}");
        assert!(warning.contains("no holiday file for 2027"), "{warning}");
        assert!(warning.contains("元旦 1-1"), "{warning}");
        assert!(
            warning.contains("春节, 清明节, 端午节, 中秋节"),
            "{warning}"
        );
        // In spring 2026 no limit of the catalog reaches 2027.
        assert_eq!(
            horizon_warning(&cal, at("2026-03-01 10:00"), &[sixty], fallback),
            None
        );
        // Nor do 60 days from 2026-11-01, which end at 24:00 on 12-31; from 11-02 they do.
        assert_eq!(
            horizon_warning(&cal, at("2026-11-01 10:00"), &[sixty], fallback),
            None
        );
        assert!(horizon_warning(&cal, at("2026-11-02 10:00"), &[sixty], fallback).is_some());
        // Without the catalog's limits, the fallback stands for them.
        assert!(horizon_warning(&cal, at("2026-10-15 10:00"), &[], fallback).is_some());
        assert_eq!(
            horizon_warning(&cal, at("2026-09-15 10:00"), &[], fallback),
            None
        );
        // A calendar without any file warns about the year it is in.
        let none = horizon_warning(
            &Calendar::default(),
            at("2026-03-01 10:00"),
            &[sixty],
            fallback,
        )
        .unwrap();
        assert!(none.contains("no holiday file for 2026,"), "{none}");
    }

    #[test]
    fn working_days_skip_the_weekend() {
        let cal = cn();
        use TimeUnit::WorkingDay as W;
        assert_eq!(due(&cal, "2026-03-06 15:00", 1, W), "2026-03-09 24:00");
        assert_eq!(due(&cal, "2026-03-06 08:00", 3, W), "2026-03-11 24:00");
        assert_eq!(due(&cal, "2026-03-02 10:00", 5, W), "2026-03-09 24:00");
        assert_eq!(due(&cal, "2026-03-02 23:59", 10, W), "2026-03-16 24:00");
    }

    #[test]
    fn working_days_over_spring_festival_count_the_swapped_saturdays() {
        let cal = cn();
        use TimeUnit::WorkingDay as W;
        assert_eq!(due(&cal, "2026-02-13 10:00", 1, W), "2026-02-14 24:00");
        assert_eq!(due(&cal, "2026-02-13 10:00", 2, W), "2026-02-24 24:00");
        assert_eq!(due(&cal, "2026-02-13 10:00", 5, W), "2026-02-27 24:00");
        assert_eq!(due(&cal, "2026-02-13 10:00", 6, W), "2026-02-28 24:00");
        assert_eq!(due(&cal, "2026-02-13 10:00", 7, W), "2026-03-02 24:00");
        // Accepted on the swapped Saturday itself: that day is not counted either.
        assert_eq!(due(&cal, "2026-02-14 09:00", 1, W), "2026-02-24 24:00");
        // The same limit without a file does not know the holiday.
        let plain = Calendar::default();
        assert_eq!(due(&plain, "2026-02-13 10:00", 2, W), "2026-02-17 24:00");
    }

    #[test]
    fn working_days_over_national_day_count_september_20_and_october_10() {
        let cal = cn();
        use TimeUnit::WorkingDay as W;
        assert_eq!(due(&cal, "2026-09-18 10:00", 1, W), "2026-09-20 24:00");
        assert_eq!(due(&cal, "2026-09-18 10:00", 2, W), "2026-09-21 24:00");
        assert_eq!(due(&cal, "2026-09-24 10:00", 1, W), "2026-09-28 24:00");
        assert_eq!(due(&cal, "2026-09-30 14:00", 1, W), "2026-10-08 24:00");
        assert_eq!(due(&cal, "2026-09-30 14:00", 2, W), "2026-10-09 24:00");
        assert_eq!(due(&cal, "2026-09-30 14:00", 3, W), "2026-10-10 24:00");
        assert_eq!(due(&cal, "2026-09-30 14:00", 4, W), "2026-10-12 24:00");
    }

    #[test]
    fn acceptance_on_a_rest_day_starts_from_the_next_working_day() {
        let cal = cn();
        use TimeUnit::WorkingDay as W;
        assert_eq!(due(&cal, "2026-03-07 11:00", 1, W), "2026-03-09 24:00");
        assert_eq!(due(&cal, "2026-03-08 23:30", 1, W), "2026-03-09 24:00");
        assert_eq!(due(&cal, "2026-10-03 10:00", 1, W), "2026-10-08 24:00");
        assert_eq!(due(&cal, "2026-02-16 10:00", 1, W), "2026-02-24 24:00");
    }

    #[test]
    fn a_limit_of_zero_ends_with_the_acceptance_day_or_instant() {
        let cal = cn();
        assert_eq!(
            due(&cal, "2026-03-04 10:00", 0, TimeUnit::WorkingDay),
            "2026-03-04 24:00"
        );
        assert_eq!(
            due(&cal, "2026-03-07 10:00", 0, TimeUnit::WorkingDay),
            "2026-03-07 24:00"
        );
        assert_eq!(
            due(&cal, "2026-03-04 10:00", 0, TimeUnit::NaturalDay),
            "2026-03-04 24:00"
        );
        assert_eq!(
            due(&cal, "2026-03-04 10:00", 0, TimeUnit::Month),
            "2026-03-04 24:00"
        );
        assert_eq!(
            due(&cal, "2026-03-04 10:07", 0, TimeUnit::Hour),
            "2026-03-04 10:07"
        );
    }

    #[test]
    fn natural_days_run_across_month_ends_and_holidays() {
        let cal = cn();
        use TimeUnit::NaturalDay as N;
        assert_eq!(due(&cal, "2026-01-29 15:00", 5, N), "2026-02-03 24:00");
        assert_eq!(due(&cal, "2026-02-27 09:00", 2, N), "2026-03-01 24:00");
        assert_eq!(due(&cal, "2026-12-15 09:00", 30, N), "2027-01-14 24:00");
        assert_eq!(due(&cal, "2026-09-30 09:00", 3, N), "2026-10-03 24:00");
    }

    #[test]
    fn hours_and_minutes_are_elapsed_time() {
        let cal = cn();
        assert_eq!(
            due(&cal, "2026-03-06 16:30", 2, TimeUnit::Hour),
            "2026-03-06 18:30"
        );
        assert_eq!(
            due(&cal, "2026-03-06 16:30", 24, TimeUnit::Hour),
            "2026-03-07 16:30"
        );
        assert_eq!(
            due(&cal, "2026-09-30 22:00", 4, TimeUnit::Hour),
            "2026-10-01 02:00"
        );
        assert_eq!(
            due(&cal, "2026-03-04 09:50", 30, TimeUnit::Minute),
            "2026-03-04 10:20"
        );
        assert_eq!(
            due(&cal, "2026-03-04 23:15", 90, TimeUnit::Minute),
            "2026-03-05 00:45"
        );
    }

    #[test]
    fn months_keep_the_day_number_or_take_the_last_day() {
        let cal = cn();
        use TimeUnit::Month as M;
        assert_eq!(due(&cal, "2026-01-31 10:00", 1, M), "2026-02-28 24:00");
        assert_eq!(due(&cal, "2026-01-31 10:00", 2, M), "2026-03-31 24:00");
        assert_eq!(due(&cal, "2028-01-31 10:00", 1, M), "2028-02-29 24:00");
        assert_eq!(due(&cal, "2026-01-15 10:00", 1, M), "2026-02-15 24:00");
        assert_eq!(due(&cal, "2026-03-31 10:00", 1, M), "2026-04-30 24:00");
        assert_eq!(due(&cal, "2026-01-15 10:00", 12, M), "2027-01-15 24:00");
    }

    #[test]
    fn a_suspension_moves_a_working_day_limit_by_its_working_time() {
        let cal = cn();
        let five = limit(5, TimeUnit::WorkingDay);
        let start = "2026-03-02 10:00";
        assert_eq!(due_suspended(&cal, start, five, &[]), "2026-03-09 24:00");
        // Wednesday 09:00 to Thursday 15:00: 30 working hours.
        let mid_week = [("2026-03-04 09:00", "2026-03-05 15:00")];
        assert_eq!(
            due_suspended(&cal, start, five, &mid_week),
            "2026-03-11 06:00"
        );
        // Friday 16:00 to Monday 10:00: the weekend was not counted anyway, so 18 hours.
        let over_weekend = [("2026-03-06 16:00", "2026-03-09 10:00")];
        assert_eq!(
            due_suspended(&cal, start, five, &over_weekend),
            "2026-03-10 18:00"
        );
        // Whole working days move the due time by whole days.
        let two_days = [("2026-03-03 00:00", "2026-03-05 00:00")];
        assert_eq!(
            due_suspended(&cal, start, five, &two_days),
            "2026-03-11 24:00"
        );
        // Only on the weekend, or on the acceptance day before the clock starts, or after the
        // due time: nothing moves.
        for nothing in [
            ("2026-03-07 09:00", "2026-03-08 18:00"),
            ("2026-03-02 11:00", "2026-03-02 16:00"),
            ("2026-03-10 09:00", "2026-03-12 09:00"),
        ] {
            assert_eq!(
                due_suspended(&cal, start, five, &[nothing]),
                "2026-03-09 24:00"
            );
        }
        // Overlapping and unsorted intervals count once.
        let overlapping = [
            ("2026-03-05 00:00", "2026-03-05 15:00"),
            ("2026-03-04 09:00", "2026-03-05 12:00"),
        ];
        assert_eq!(
            due_suspended(&cal, start, five, &overlapping),
            "2026-03-11 06:00"
        );
        // A suspension that pushes the due time into 春节 carries it past the holiday.
        let before_festival = [("2026-02-11 00:00", "2026-02-12 00:00")];
        let two = limit(2, TimeUnit::WorkingDay);
        assert_eq!(
            due_suspended(&cal, "2026-02-12 10:00", two, &[]),
            "2026-02-14 24:00"
        );
        assert_eq!(
            due_suspended(&cal, "2026-02-10 10:00", two, &before_festival),
            "2026-02-13 24:00"
        );
    }

    #[test]
    fn a_suspension_moves_other_limits_by_elapsed_time() {
        let cal = cn();
        let pause = [("2026-03-07 10:00", "2026-03-07 11:00")];
        assert_eq!(
            due_suspended(&cal, "2026-03-06 16:30", limit(24, TimeUnit::Hour), &pause),
            "2026-03-07 17:30"
        );
        let two_days = [("2026-01-30 12:00", "2026-02-01 12:00")];
        assert_eq!(
            due_suspended(
                &cal,
                "2026-01-29 15:00",
                limit(5, TimeUnit::NaturalDay),
                &two_days
            ),
            "2026-02-05 24:00"
        );
        assert_eq!(
            due_suspended(
                &cal,
                "2026-01-31 10:00",
                limit(1, TimeUnit::Month),
                &two_days
            ),
            "2026-03-01 12:00",
            "only the 12 hours after the clock started count"
        );
        let in_february = [("2026-02-10 00:00", "2026-02-12 00:00")];
        assert_eq!(
            due_suspended(
                &cal,
                "2026-01-31 10:00",
                limit(1, TimeUnit::Month),
                &in_february
            ),
            "2026-03-02 24:00"
        );
    }

    #[test]
    fn an_open_suspension_has_no_deadline_yet() {
        let cal = cn();
        let five = limit(5, TimeUnit::WorkingDay);
        let start = at("2026-03-02 10:00");
        let open = [(at("2026-03-04 09:00"), i64::MAX)];
        assert_eq!(cal.deadline(start, &five, &open), None);
        // Suspended only once the limit had run out: the due time stands.
        let late = [(at("2026-03-10 09:00"), i64::MAX)];
        assert_eq!(
            show(cal.deadline(start, &five, &late).unwrap()),
            "2026-03-09 24:00"
        );
        // A limit of 0 does not run out while its case is suspended.
        let zero = limit(0, TimeUnit::WorkingDay);
        let from_acceptance = [(at("2026-03-02 11:00"), i64::MAX)];
        assert_eq!(cal.deadline(start, &zero, &from_acceptance), None);
        let closed = [(at("2026-03-02 11:00"), at("2026-03-03 09:30"))];
        assert_eq!(
            show(cal.deadline(start, &zero, &closed).unwrap()),
            "2026-03-03 09:30"
        );
    }

    #[test]
    fn elapsed_fraction_and_when_used_agree_with_the_deadline() {
        let cal = cn();
        let ten = limit(10, TimeUnit::WorkingDay);
        let start = at("2026-03-02 10:00");
        let due = cal.deadline(start, &ten, &[]).unwrap();
        assert_eq!(show(due), "2026-03-16 24:00");
        assert_eq!(cal.elapsed_fraction(start, &ten, &[], start), 0.0);
        assert_eq!(cal.elapsed_fraction(start, &ten, &[], due), 1.0);
        let eighty = cal.when_used(start, &ten, &[], 0.8).unwrap();
        assert_eq!(show(eighty), "2026-03-12 24:00");
        assert_eq!(cal.elapsed_fraction(start, &ten, &[], eighty), 0.8);
        assert_eq!(
            cal.elapsed_fraction(start, &ten, &[], at("2026-03-07 12:00")),
            0.4
        );
        assert_eq!(
            show(cal.when_used(start, &ten, &[], 1.5).unwrap()),
            "2026-03-23 24:00"
        );
        // Frozen while suspended, open-ended or not.
        let open = [(at("2026-03-05 00:00"), i64::MAX)];
        assert_eq!(
            cal.elapsed_fraction(start, &ten, &open, at("2026-03-20 10:00")),
            0.2
        );
        assert_eq!(cal.when_used(start, &ten, &open, 0.8), None);
        assert_eq!(
            show(cal.when_used(start, &ten, &open, 0.2).unwrap()),
            "2026-03-04 24:00"
        );
        // A limit of 0 is all used from its due time.
        let zero = limit(0, TimeUnit::WorkingDay);
        assert_eq!(
            cal.elapsed_fraction(start, &zero, &[], at("2026-03-02 23:00")),
            0.0
        );
        assert_eq!(
            cal.elapsed_fraction(start, &zero, &[], at("2026-03-03 00:00")),
            1.0
        );
    }

    #[test]
    fn remaining_counts_working_days_after_today() {
        let cal = cn();
        let due = at("2026-03-10 00:00");
        let cases = [
            ("2026-03-05 10:00", 2),
            ("2026-03-06 10:00", 1),
            ("2026-03-07 10:00", 1),
            ("2026-03-09 10:00", 0),
            ("2026-03-10 00:00", -1),
            ("2026-03-10 10:00", -1),
            ("2026-03-14 10:00", -4),
        ];
        for (now, working_days) in cases {
            let left = cal.remaining(at(now), due);
            assert_eq!(left.working_days, working_days, "at {now}");
            assert_eq!(left.ms, due - at(now));
            assert_eq!(left.is_overdue(), at(now) >= due);
        }
        // Over 国庆: accepted 09-30 with 3 working days, due 10-10 24:00.
        let left = cal.remaining(at("2026-09-30 14:00"), at("2026-10-11 00:00"));
        assert_eq!(left.working_days, 3);
    }

    #[test]
    fn holiday_file_problems_are_reported_all_at_once() {
        let first = r#"
year = 2026
source = "test"

[[holiday]]
name = "春节"
off = ["2026-02-15", "2026-02-30", "2025-02-16", "2026-02-17", "2026-02-17"]
work = ["2026-02-14", "2026-02-13", "2026-02-15", 20260228]

[[holiday]]
name = "元旦"
off = ["2025-12-31", 2026-01-01]
"#;
        let second = r#"
year = 2026
source = ""

[[holiday]]
name = "劳动节"
off = ["2026-05-01"]
work = ["2026-02-14"]
"#;
        let broken = "year = 2027\nsource = \"x\"\nholiday = 3\n";
        let errors =
            Calendar::from_files(&[("a.toml", first), ("b.toml", second), ("c.toml", broken)])
                .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let expect = [
            "a.toml:7:22: `holiday[0].off[1]`: 春节: \"2026-02-30\" is not a date written YYYY-MM-DD",
            "a.toml:7:36: `holiday[0].off[2]`: 春节: 2025-02-16 is not in 2026",
            "a.toml:8:23: `holiday[0].work[1]`: 春节: 2026-02-13 is a Friday, a working day anyway",
            "a.toml:8:51: `holiday[0].work[3]`: 春节: expected a date written \"YYYY-MM-DD\", found an integer",
            "b.toml:2:8: `year`: 2026 is already described at a.toml:2:8",
            "b.toml:3:10: `source`: say which notice the schedule comes from",
            "c.toml:3:11: invalid type: integer `3`, expected a sequence",
            "a.toml:7:64: `holiday[0].off[4]`: 春节: 2026-02-17 is listed twice; it is also at a.toml:7:50 (春节)",
            "a.toml:8:37: `holiday[0].work[2]`: 春节: 2026-02-15 is listed as worked here and as off at a.toml:7:8 (春节)",
            "b.toml:8:9: `holiday[0].work[0]`: 劳动节: 2026-02-14 is listed twice; it is also at a.toml:8:9 (春节)",
        ];
        for wanted in expect {
            assert!(
                text.iter().any(|t| t.starts_with(wanted)),
                "missing {wanted:?} in\n{}",
                text.join("\n")
            );
        }
        assert_eq!(text.len(), expect.len(), "{}", text.join("\n"));
        // December of the year before is allowed, for 元旦; a bare TOML date is a date.
        assert!(!text.iter().any(|t| t.contains("2025-12-31")));
        assert!(
            Calendar::parse(
                "year = 2026\nsource = \"x\"\n[[holiday]]\nname = \"元旦\"\noff = [2026-01-01]\n"
            )
            .is_ok()
        );
        assert!(Calendar::parse("year = 2026\nsource = \"x\"\ncolour = 1\n").is_err());
    }

    proptest! {
        /// A longer limit is due strictly later, whatever the unit, start and suspensions: a
        /// unit more always adds counted time (a whole working day, a day, an hour, a minute, a
        /// month that ends on a later day).
        #[test]
        fn deadline_is_monotonic_in_the_limit(
            start in at("2025-12-01 00:00")..at("2027-01-31 00:00"),
            unit in prop_oneof![
                Just(TimeUnit::WorkingDay),
                Just(TimeUnit::NaturalDay),
                Just(TimeUnit::Hour),
                Just(TimeUnit::Minute),
                Just(TimeUnit::Month),
            ],
            value in 0u32..400,
            pauses in proptest::collection::vec((0i64..200 * DAY_MS, 0i64..20 * DAY_MS), 0..4),
        ) {
            let cal = cn();
            let suspended: Vec<(i64, i64)> = pauses
                .iter()
                .map(|(offset, length)| (start + offset, start + offset + length))
                .collect();
            let shorter = cal.deadline(start, &limit(value, unit), &suspended).unwrap();
            let longer = cal.deadline(start, &limit(value + 1, unit), &suspended).unwrap();
            prop_assert!(longer > shorter);
            // The clock reads exactly "all used" at the due time and not a millisecond before.
            let l = limit(value + 1, unit);
            prop_assert!(cal.elapsed_fraction(start, &l, &suspended, longer) >= 1.0);
            prop_assert!(cal.elapsed_fraction(start, &l, &suspended, longer - 1) < 1.0);
            let eighty = cal.when_used(start, &l, &suspended, 0.8).unwrap();
            prop_assert!(eighty <= longer);
            prop_assert!(cal.elapsed_fraction(start, &l, &suspended, eighty) >= 0.8 - 1e-12);
        }
    }

    #[test]
    fn a_table_of_limits_is_monotonic() {
        let cal = cn();
        for unit in [TimeUnit::WorkingDay, TimeUnit::NaturalDay, TimeUnit::Month] {
            for start in ["2026-02-13 10:00", "2026-09-30 14:00", "2026-12-31 23:59"] {
                let dues: Vec<i64> = (0..60)
                    .map(|n| cal.deadline(at(start), &limit(n, unit), &[]).unwrap())
                    .collect();
                assert!(
                    dues.windows(2).all(|w| w[0] < w[1]),
                    "{unit:?} from {start}"
                );
            }
        }
    }

    #[test]
    fn absurd_limits_do_not_hang_or_overflow() {
        let cal = cn();
        let start = at("2026-03-02 10:00");
        for unit in [
            TimeUnit::WorkingDay,
            TimeUnit::NaturalDay,
            TimeUnit::Hour,
            TimeUnit::Minute,
            TimeUnit::Month,
        ] {
            let huge = limit(u32::MAX, unit);
            let due = cal.deadline(start, &huge, &[]);
            assert!(due.is_none_or(|d| d > start), "{unit:?}");
            let fraction = cal.elapsed_fraction(start, &huge, &[], start + DAY_MS);
            assert!((0.0..1.0).contains(&fraction), "{unit:?}");
        }
        assert_eq!(
            cal.deadline(i64::MAX - 1, &limit(1, TimeUnit::Hour), &[]),
            None
        );
    }
}
