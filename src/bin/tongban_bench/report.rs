//! The figures of a run: per target and phase, printed as a table with the hub/relay ratios,
//! as `RESULT` lines (one per target and phase, `key=value`, for scripts and the quick test),
//! and optionally as JSON.

use super::load::Kind;
use super::pgserver;
use super::procstat::{CpuSpent, Group};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// Which kind of phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseKind {
    /// Closed loop with this many connections.
    Saturation { connections: usize },
    /// Open loop at this offered rate per second.
    Rate { offered: f64 },
}

/// How a phase's case steps reached a supervisor (hub, when steps are posted back).
pub struct Supervision {
    /// Step posted by the mock → its `event` entry received by the SSE subscriber, µs.
    pub latency: Histogram<u64>,
    /// Step posted → the hub's answer (stored, its feed entry committed), µs: the part of the
    /// latency before the feed can show it.
    pub answered: Histogram<u64>,
    /// Steps of this phase the hub took (2xx) whose entry the subscriber had not received by
    /// the end of the target's run.
    pub never_seen: u64,
}

/// What the hubs of their own (`--hubs`) and their PostgreSQL server spent over a phase (or
/// over the idle time before the phases).
pub struct HubsSpent {
    /// Each hub process's CPU, in the order they started.
    pub hubs: Vec<Duration>,
    /// The store's server, when it is PostgreSQL: CPU to the end of the drain, its counters
    /// to a while after it (see `pgserver`).
    pub postgres: Option<pgserver::Spent>,
    /// From the start to the end of the drain: the time the phase's work was done in.
    pub window: Duration,
    /// How long after that the server's counters were read.
    pub counters_after: Duration,
}

impl HubsSpent {
    pub fn hubs_total(&self) -> Duration {
        self.hubs.iter().sum()
    }
}

/// The hubs and their server with no load, before the phases (`--hubs`).
pub struct Idle {
    pub spent: HubsSpent,
}

/// One phase of load against one target, measured.
pub struct Phase {
    pub kind: PhaseKind,
    /// The load phase's planned length.
    pub planned: Duration,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Answered 503 because the system's outbox was full (admission control).
    pub overloaded: u64,
    pub unfinished: u64,
    pub first_error: Option<String>,
    /// Acceptance (hub) or relay latency, µs: from the intended send time in open loop.
    pub latency: Histogram<u64>,
    /// From the actual send, µs (open loop only; equal to `latency` in closed loop).
    pub service: Histogram<u64>,
    /// Deliveries the mocks received while the load ran (hub only).
    pub delivered_in_window: Option<u64>,
    /// 202 → mock received, µs (hub only).
    pub delivery: Option<Histogram<u64>>,
    /// Accepted but not delivered when the drain wait ended (hub only).
    pub undelivered: u64,
    /// Deliveries still owed from earlier phases when this one started (hub only).
    pub backlog_at_start: u64,
    /// Peak resident memory of the process during this phase (load and drain), KiB.
    pub peak_rss_kib: Option<u64>,
    /// How long after the load the outbox took to empty (hub only; `None` if it did not).
    pub drained_after: Option<Duration>,
    /// CPU spent from the start of the load to the end of the drain, in the bench's process.
    pub cpu: CpuSpent,
    /// With hubs of their own (`--hubs`): what they and their PostgreSQL spent.
    pub hubs: Option<HubsSpent>,
    /// Case events the mock posted back, and how many the hub refused or that failed.
    pub events_posted: u64,
    pub events_failed: u64,
    /// The way of this phase's case steps to the supervision feed (`None` for the relay, which
    /// has no feed, and without case steps).
    pub supervision: Option<Supervision>,
}

impl Phase {
    pub fn ok_per_second(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }

    pub fn delivered_per_second(&self) -> Option<f64> {
        self.delivered_in_window
            .map(|d| per_second(d, self.elapsed))
    }

    /// Applications accepted and delivered per second, end to end: those accepted in the
    /// phase over the time from the first request until the outbox was empty (hub, when it
    /// emptied in time).
    pub fn end_to_end_per_second(&self) -> Option<f64> {
        self.drained_after
            .map(|d| per_second(self.ok, self.elapsed + d))
    }

    /// Whether the target kept up with the offered rate (open loop): everything answered, no
    /// failures, and at 95 % of the rate or more.
    pub fn kept_up(&self) -> bool {
        match self.kind {
            PhaseKind::Saturation { .. } => true,
            PhaseKind::Rate { offered } => {
                self.unfinished == 0 && self.failed == 0 && self.ok_per_second() >= 0.95 * offered
            }
        }
    }

    /// CPU seconds per 10,000 applications, over the whole process and over the target's
    /// own threads. With hubs of their own, "the whole process" is the bench's (load and
    /// mocks) and the hubs' processes together, and the target's own is the hubs'; a
    /// PostgreSQL server's is in neither (see [`HubsSpent`]).
    pub fn cpu_per_10k(&self, target: Kind) -> (f64, f64) {
        let (whole, own) = match (&self.hubs, target) {
            (Some(hubs), _) => (self.cpu.process + hubs.hubs_total(), hubs.hubs_total()),
            (None, Kind::Hub) => (self.cpu.process, self.cpu.group(Group::Hub)),
            (None, Kind::Relay) => (self.cpu.process, self.cpu.group(Group::Relay)),
        };
        (per_10k(whole, self.ok), per_10k(own, self.ok))
    }

    fn label(&self) -> String {
        match self.kind {
            PhaseKind::Saturation { .. } => "saturation".into(),
            PhaseKind::Rate { offered } => format!("rate-{offered:.0}"),
        }
    }
}

/// Seconds of `d` per 10,000 of `n`.
fn per_10k(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() / n.max(1) as f64 * 10_000.0
}

fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// Milliseconds at quantile `q`, or NaN when nothing was recorded.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.max() as f64 / 1000.0
    }
}

/// Everything measured against one target.
pub struct TargetResult {
    pub kind: Kind,
    /// What serves: the store for the hub, the forwarding for the relay.
    pub description: String,
    pub rss_before_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub peak_is_own: bool,
    pub phases: Vec<Phase>,
    /// With hubs of their own (`--hubs`): what they and their server spent with no load.
    pub idle: Option<Idle>,
}

impl TargetResult {
    fn phase(&self, kind: PhaseKind) -> Option<&Phase> {
        self.phases.iter().find(|p| p.kind == kind)
    }
}

fn sat_of(t: &TargetResult) -> Option<&Phase> {
    t.phases
        .iter()
        .find(|p| matches!(p.kind, PhaseKind::Saturation { .. }))
}

fn num(x: f64, width: usize, decimals: usize) -> String {
    if x.is_nan() {
        format!("{:>width$}", "—")
    } else {
        format!("{x:>width$.decimals$}")
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 || a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a / b
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// The table, the notes and the `RESULT` lines.
pub fn render(header: &[String], targets: &[TargetResult], rss_start_kib: Option<u64>) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "{line}");
    }
    let hub = targets.iter().find(|t| t.kind == Kind::Hub);
    let relay = targets.iter().find(|t| t.kind == Kind::Relay);
    let col =
        |t: Option<&TargetResult>, f: &dyn Fn(&TargetResult) -> f64| t.map(f).unwrap_or(f64::NAN);

    // Saturation.
    if let Some(any) = hub.and_then(sat_of).or_else(|| relay.and_then(sat_of)) {
        let PhaseKind::Saturation { connections } = any.kind else {
            unreachable!()
        };
        let _ = writeln!(
            out,
            "\nsaturation: closed loop, {connections} connections, {:.1} s per target",
            any.planned.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  {:<44}{:>12}{:>12}{:>11}",
            "", "hub", "relay", "hub/relay"
        );
        let sat = sat_of;
        let row =
            |out: &mut String, name: &str, h: f64, r: f64, decimals: usize, show_ratio: bool| {
                let _ = writeln!(
                    out,
                    "  {:<44}{}{}{}",
                    name,
                    num(h, 12, decimals),
                    num(r, 12, decimals),
                    if show_ratio {
                        num(ratio(h, r), 11, 2)
                    } else {
                        format!("{:>11}", "")
                    }
                );
            };
        let h_ok = col(hub, &|t| sat(t).map_or(f64::NAN, |p| p.ok_per_second()));
        let r_ok = col(relay, &|t| sat(t).map_or(f64::NAN, |p| p.ok_per_second()));
        let h_del = col(hub, &|t| {
            sat(t)
                .and_then(|p| p.delivered_per_second())
                .unwrap_or(f64::NAN)
        });
        row(
            &mut out,
            "accepted/s (hub 202) | forwarded/s (relay 200)",
            h_ok,
            r_ok,
            1,
            true,
        );
        row(
            &mut out,
            "delivered/s (mock received, same window)",
            h_del,
            r_ok,
            1,
            true,
        );
        let h_e2e = col(hub, &|t| {
            sat(t)
                .and_then(|p| p.end_to_end_per_second())
                .unwrap_or(f64::NAN)
        });
        row(
            &mut out,
            "end to end/s (accepted ÷ time until all delivered)",
            h_e2e,
            r_ok,
            1,
            true,
        );
        for (name, q) in [
            ("request latency p50 (ms)", 0.5),
            ("request latency p99 (ms)", 0.99),
        ] {
            let h = col(hub, &|t| sat(t).map_or(f64::NAN, |p| ms(&p.latency, q)));
            let r = col(relay, &|t| sat(t).map_or(f64::NAN, |p| ms(&p.latency, q)));
            row(&mut out, name, h, r, 2, true);
        }
        let h_err = col(hub, &|t| sat(t).map_or(f64::NAN, |p| p.failed as f64));
        let r_err = col(relay, &|t| sat(t).map_or(f64::NAN, |p| p.failed as f64));
        row(&mut out, "failed requests", h_err, r_err, 0, false);
        for (name, q) in [
            ("delivery latency p50 (ms, 202 → mock)", 0.5),
            ("delivery latency p99 (ms)", 0.99),
        ] {
            let h = col(hub, &|t| {
                sat(t)
                    .and_then(|p| p.delivery.as_ref())
                    .map_or(f64::NAN, |d| ms(d, q))
            });
            row(&mut out, name, h, f64::NAN, 2, false);
        }
        for (name, q) in [
            ("supervision latency p50 (ms, step → SSE)", 0.5),
            ("supervision latency p99 (ms)", 0.99),
        ] {
            let h = col(hub, &|t| {
                sat(t)
                    .and_then(|p| p.supervision.as_ref())
                    .map_or(f64::NAN, |s| ms(&s.latency, q))
            });
            // The relay has no feed: "n/a" rather than a dash that reads as "nothing came".
            let _ = writeln!(
                out,
                "  {:<44}{}{:>12}",
                name,
                num(h, 12, 2),
                if relay.is_some() { "n/a" } else { "" }
            );
        }
        let drained = col(hub, &|t| {
            sat(t)
                .and_then(|p| p.drained_after)
                .map_or(f64::NAN, |d| d.as_secs_f64())
        });
        row(
            &mut out,
            "outbox drained after the load (s)",
            drained,
            f64::NAN,
            1,
            false,
        );
        let h_cpu = hub.and_then(|t| sat(t).map(|p| p.cpu_per_10k(Kind::Hub)));
        let r_cpu = relay.and_then(|t| sat(t).map(|p| p.cpu_per_10k(Kind::Relay)));
        row(
            &mut out,
            "CPU s / 10,000 apps, whole process",
            h_cpu.map_or(f64::NAN, |c| c.0),
            r_cpu.map_or(f64::NAN, |c| c.0),
            2,
            true,
        );
        row(
            &mut out,
            "CPU s / 10,000 apps, server's own threads",
            h_cpu.map_or(f64::NAN, |c| c.1),
            r_cpu.map_or(f64::NAN, |c| c.1),
            2,
            true,
        );
    }

    // Fixed rates.
    let mut rates: Vec<f64> = Vec::new();
    for t in targets {
        for p in &t.phases {
            if let PhaseKind::Rate { offered } = p.kind
                && !rates.contains(&offered)
            {
                rates.push(offered);
            }
        }
    }
    if !rates.is_empty() {
        let planned = targets
            .iter()
            .flat_map(|t| &t.phases)
            .find(|p| matches!(p.kind, PhaseKind::Rate { .. }))
            .map_or(0.0, |p| p.planned.as_secs_f64());
        let _ = writeln!(
            out,
            "\nacceptance latency: open loop, {planned:.1} s per rate, ms from the INTENDED send time"
        );
        let _ = writeln!(
            out,
            "  {:>7} {:<9}{:>10}{:>8}{:>7}{:>7}{:>9}{:>9}{:>9}{:>9} |{:>9} |{:>9}{:>9} |{:>8}",
            "rate/s",
            "target",
            "done/s",
            "ok",
            "fail",
            "unfin",
            "p50",
            "p99",
            "p99.9",
            "max",
            "svc p99",
            "dlv p50",
            "dlv p99",
            "CPU/10k"
        );
        for &rate in &rates {
            let kind = PhaseKind::Rate { offered: rate };
            for t in targets {
                let Some(p) = t.phase(kind) else { continue };
                let (cpu, _) = p.cpu_per_10k(t.kind);
                let (d50, d99) = p
                    .delivery
                    .as_ref()
                    .map_or((f64::NAN, f64::NAN), |d| (ms(d, 0.5), ms(d, 0.99)));
                let _ = writeln!(
                    out,
                    "  {:>7.0} {:<9}{}{:>8}{:>7}{:>7}{}{}{}{} |{} |{}{} |{}{}",
                    rate,
                    t.kind.name(),
                    num(p.ok_per_second(), 10, 1),
                    p.ok,
                    p.failed,
                    p.unfinished,
                    num(ms(&p.latency, 0.5), 9, 2),
                    num(ms(&p.latency, 0.99), 9, 2),
                    num(ms(&p.latency, 0.999), 9, 2),
                    num(max_ms(&p.latency), 9, 1),
                    num(ms(&p.service, 0.99), 9, 2),
                    num(d50, 9, 2),
                    num(d99, 9, 2),
                    num(cpu, 8, 2),
                    match (p.kept_up(), p.unfinished) {
                        (true, _) => "",
                        (false, 0) => "  OVERLOADED",
                        (false, _) =>
                            "  OVERLOADED (unfinished counted at the cut-off: lower bounds)",
                    },
                );
            }
            if let (Some(h), Some(r)) = (
                hub.and_then(|t| t.phase(kind)),
                relay.and_then(|t| t.phase(kind)),
            ) {
                let _ = writeln!(
                    out,
                    "  {:>7} {:<9}{}{:>8}{:>7}{:>7}{}{}{}",
                    "",
                    "hub/relay",
                    num(ratio(h.ok_per_second(), r.ok_per_second()), 10, 2),
                    "",
                    "",
                    "",
                    num(ratio(ms(&h.latency, 0.5), ms(&r.latency, 0.5)), 9, 1),
                    num(ratio(ms(&h.latency, 0.99), ms(&r.latency, 0.99)), 9, 1),
                    num(ratio(ms(&h.latency, 0.999), ms(&r.latency, 0.999)), 9, 1),
                );
            }
        }
        let _ = writeln!(
            out,
            "  (svc = from the actual send, hiding the generator's queueing; dlv = delivery, 202 → mock received;\n   CPU/10k = whole-process CPU seconds per 10,000 applications, load to drained)"
        );
    }

    // Case steps and what the outbox had left.
    if let Some(h) = hub {
        for p in &h.phases {
            let _ = writeln!(
                out,
                "  hub {}: outbox backlog at start {}; refused 503 with the outbox full {}; case steps posted back and stored {}, failed {}; accepted but not yet delivered when the drain wait ended {}",
                p.label(),
                p.backlog_at_start,
                p.overloaded,
                p.events_posted,
                p.events_failed,
                p.undelivered
            );
        }
    }

    // Supervision latency.
    if let Some(h) = hub {
        if h.phases.iter().any(|p| p.supervision.is_some()) {
            let _ = writeln!(
                out,
                "\nsupervision latency: case step posted by the SOAP mock → its entry received by an SSE subscriber of /api/v1/supervision/stream, ms"
            );
            let _ = writeln!(
                out,
                "  {:<12}{:<7}{:>8}{:>12}{:>10}{:>10}{:>10}{:>10} |{:>9}{:>9}",
                "phase",
                "target",
                "seen",
                "never seen",
                "p50",
                "p99",
                "p99.9",
                "max",
                "ans p50",
                "ans p99"
            );
            for p in &h.phases {
                let Some(s) = &p.supervision else { continue };
                let _ = writeln!(
                    out,
                    "  {:<12}{:<7}{:>8}{:>12}{}{}{}{} |{}{}",
                    p.label(),
                    "hub",
                    s.latency.len(),
                    s.never_seen,
                    num(ms(&s.latency, 0.5), 10, 2),
                    num(ms(&s.latency, 0.99), 10, 2),
                    num(ms(&s.latency, 0.999), 10, 2),
                    num(max_ms(&s.latency), 10, 1),
                    num(ms(&s.answered, 0.5), 9, 2),
                    num(ms(&s.answered, 0.99), 9, 2),
                );
            }
            if relay.is_some() {
                let _ = writeln!(out, "  {:<12}{:<7}{:>8}", "all phases", "relay", "n/a");
            }
            let _ = writeln!(
                out,
                "  (seen = steps whose entry arrived; never seen = steps the hub took (2xx) whose entry had not arrived by the end of the hub's run;\n   ans = step posted → the hub's answer, the part before the feed can show it)"
            );
        } else {
            let _ = writeln!(
                out,
                "\nsupervision latency: not measured (no case steps posted back)"
            );
        }
    }

    // Hubs of their own and their PostgreSQL.
    if let Some(h) = hub {
        render_hubs(&mut out, h);
    }

    // Memory.
    let _ = writeln!(
        out,
        "\nmemory (VmHWM of this one process: load generator, mocks and the target; peak reset per target)"
    );
    let _ = writeln!(
        out,
        "  at start (mocks and load generator only): {}",
        mib(rss_start_kib)
    );
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<6} peak {} (resident before its phases: {}; peak per phase: {}){}",
            t.kind.name(),
            mib(t.peak_rss_kib),
            mib(t.rss_before_kib),
            t.phases
                .iter()
                .map(|p| format!("{} {}", p.label(), mib(p.peak_rss_kib)))
                .collect::<Vec<_>>()
                .join(", "),
            if t.peak_is_own {
                ""
            } else {
                " [peak could not be reset: it is the run's]"
            }
        );
    }

    // Errors, if any.
    for t in targets {
        for p in &t.phases {
            if let Some(e) = &p.first_error {
                let _ = writeln!(out, "  {} {}: first failure: {e}", t.kind.name(), p.label());
            }
        }
    }

    let _ = writeln!(out);
    for t in targets {
        for p in &t.phases {
            let _ = writeln!(out, "{}", result_line(t, p));
        }
        if let Some(idle) = &t.idle {
            let _ = writeln!(
                out,
                "RESULT target={} phase=idle {}",
                t.kind.name(),
                spent_fields(&idle.spent, None)
            );
        }
        let _ = writeln!(
            out,
            "RESULT target={} phase=memory peak_rss_mib={:.1}",
            t.kind.name(),
            t.peak_rss_kib.unwrap_or(0) as f64 / 1024.0
        );
    }
    out
}

fn result_line(t: &TargetResult, p: &Phase) -> String {
    let (cpu, own) = p.cpu_per_10k(t.kind);
    let mut line = format!(
        "RESULT target={} phase={} ok={} failed={} overloaded={} unfinished={} ok_per_s={:.1} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} cpu_s_per_10k={:.3} own_cpu_s_per_10k={:.3}",
        t.kind.name(),
        p.label(),
        p.ok,
        p.failed,
        p.overloaded,
        p.unfinished,
        p.ok_per_second(),
        ms(&p.latency, 0.5),
        ms(&p.latency, 0.99),
        ms(&p.latency, 0.999),
        cpu,
        own
    );
    if let Some(d) = p.delivered_per_second() {
        let _ = write!(line, " delivered_per_s={d:.1}");
    }
    if let Some(d) = p.end_to_end_per_second() {
        let _ = write!(line, " end_to_end_per_s={d:.1}");
    }
    if t.kind == Kind::Hub {
        let _ = write!(line, " undelivered={}", p.undelivered);
    }
    if let Some(d) = &p.delivery {
        let _ = write!(
            line,
            " delivery_p50_ms={:.3} delivery_p99_ms={:.3}",
            ms(d, 0.5),
            ms(d, 0.99)
        );
    }
    if let Some(hubs) = &p.hubs {
        let _ = write!(line, " {}", spent_fields(hubs, Some(p)));
    }
    match (&p.supervision, t.kind) {
        (Some(s), _) => {
            let _ = write!(
                line,
                " supervision_seen={} supervision_never_seen={} supervision_p50_ms={:.3} supervision_p99_ms={:.3} supervision_p999_ms={:.3} supervision_max_ms={:.3} supervision_answered_p50_ms={:.3} supervision_answered_p99_ms={:.3}",
                s.latency.len(),
                s.never_seen,
                ms(&s.latency, 0.5),
                ms(&s.latency, 0.99),
                ms(&s.latency, 0.999),
                max_ms(&s.latency),
                ms(&s.answered, 0.5),
                ms(&s.answered, 0.99)
            );
        }
        (None, Kind::Relay) => line.push_str(" supervision=n/a"),
        (None, Kind::Hub) => {}
    }
    line
}

/// Cores kept busy: `cpu` over `window`.
fn cores(cpu: Duration, window: Duration) -> f64 {
    if window.is_zero() {
        f64::NAN
    } else {
        cpu.as_secs_f64() / window.as_secs_f64()
    }
}

/// The table of what hubs of their own and their PostgreSQL spent per phase, and with no load.
fn render_hubs(out: &mut String, t: &TargetResult) {
    let Some(count) = t
        .phases
        .iter()
        .find_map(|p| p.hubs.as_ref())
        .map(|h| h.hubs.len())
    else {
        return;
    };
    let _ = writeln!(
        out,
        "\n{count} hub process(es) (`tongban serve`, load round-robin): CPU in s per 10,000 applications (load to drained); cores = CPU ÷ that time"
    );
    let _ = writeln!(
        out,
        "  {:<12}{:>9}{:>9}{:>9} |{:>9}{:>7} {:<20}|{:>9}{:>7}{:>9}{:>9} |{:>9}",
        "phase",
        "done/s",
        "p50",
        "p99",
        "hubs",
        "cores",
        "(each hub, s)",
        "PG",
        "cores",
        "backends",
        "server",
        "bench"
    );
    for p in &t.phases {
        let Some(h) = &p.hubs else { continue };
        let (pg, pg_backends, pg_server, pg_cores) =
            h.postgres
                .map_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN), |pg| {
                    (
                        per_10k(pg.cpu.total(), p.ok),
                        per_10k(pg.cpu.backends, p.ok),
                        per_10k(pg.cpu.server, p.ok),
                        cores(pg.cpu.total(), h.window),
                    )
                });
        let _ = writeln!(
            out,
            "  {:<12}{}{}{} |{}{} {:<20}|{}{}{}{} |{}",
            p.label(),
            num(p.ok_per_second(), 9, 1),
            num(ms(&p.latency, 0.5), 9, 2),
            num(ms(&p.latency, 0.99), 9, 2),
            num(per_10k(h.hubs_total(), p.ok), 9, 2),
            num(cores(h.hubs_total(), h.window), 7, 2),
            format!(
                "({})",
                h.hubs
                    .iter()
                    .map(|d| format!("{:.1}", d.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            num(pg, 9, 2),
            num(pg_cores, 7, 2),
            num(pg_backends, 9, 2),
            num(pg_server, 9, 2),
            num(per_10k(p.cpu.process, p.ok), 9, 2),
        );
    }
    if let Some(h) = t
        .phases
        .iter()
        .filter_map(|p| p.hubs.as_ref())
        .find(|h| h.postgres.is_some())
    {
        let _ = writeln!(
            out,
            "\nPostgreSQL per phase: transactions committed (reads too) and rolled back in the run's database (read {:.0} s after the drain, once the backends have reported them{}), per second of load and drain and per application; the server's write transactions (transaction ids) and WAL (bytes written, syncs to disk); the database's growth",
            h.counters_after.as_secs_f64(),
            if h.counters_after < pgserver::STATS_SETTLE {
                ": too soon for all of them"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  {:<12}{:>9}{:>10}{:>10}{:>10} |{:>10}{:>10}{:>10} |{:>10}{:>11}{:>11} |{:>12}",
            "phase",
            "commits",
            "commits/s",
            "per app",
            "rollbacks",
            "writes/s",
            "per app",
            "syncs/s",
            "WAL B/app",
            "WAL MB/s",
            "DB B/app",
            "other dbs"
        );
        for p in &t.phases {
            let Some(pg) = p.hubs.as_ref().and_then(|h| h.postgres.map(|pg| (h, pg))) else {
                continue;
            };
            let (h, pg) = pg;
            let apps = p.ok.max(1) as f64;
            let secs = h.window.as_secs_f64().max(1e-9);
            let _ = writeln!(
                out,
                "  {:<12}{:>9}{}{}{:>10} |{}{}{} |{}{}{} |{:>12}",
                p.label(),
                pg.commits,
                num(pg.commits as f64 / secs, 10, 0),
                num(pg.commits as f64 / apps, 10, 2),
                pg.rollbacks,
                num(pg.writes as f64 / secs, 10, 0),
                num(pg.writes as f64 / apps, 10, 2),
                num(pg.wal_syncs as f64 / secs, 10, 0),
                num(pg.wal_bytes as f64 / apps, 10, 0),
                num(pg.wal_bytes as f64 / secs / 1e6, 11, 2),
                num(pg.database_bytes as f64 / apps, 11, 0),
                pg.other_commits,
            );
        }
        let _ = writeln!(
            out,
            "  (other dbs = commits in the server's other databases meanwhile: writes, WAL and syncs are the server's, so they are the run's only when that is small)"
        );
    }
    if let Some(idle) = &t.idle {
        let h = &idle.spent;
        let mut line = format!(
            "  idle before the load ({:.1} s): hubs {:.3} cores ({}), ",
            h.window.as_secs_f64(),
            cores(h.hubs_total(), h.window),
            h.hubs
                .iter()
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match h.postgres {
            Some(pg) => {
                let secs = h.window.as_secs_f64().max(1e-9);
                let _ = write!(
                    line,
                    "PostgreSQL {:.3} cores, {:.1} commits/s, {:.1} writes/s, {:.1} WAL syncs/s",
                    cores(pg.cpu.total(), h.window),
                    pg.commits as f64 / secs,
                    pg.writes as f64 / secs,
                    pg.wal_syncs as f64 / secs
                );
            }
            None => line.push_str("no PostgreSQL"),
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The `key=value` fields of what hubs of their own and their server spent: per application
/// when `phase` is given, per second (idle) otherwise.
fn spent_fields(h: &HubsSpent, phase: Option<&Phase>) -> String {
    let secs = h.window.as_secs_f64().max(1e-9);
    let mut line = format!(
        "hubs={} window_s={:.3} hub_cpu_s={:.3} hub_cpu_s_each={} hub_cores={:.3}",
        h.hubs.len(),
        h.window.as_secs_f64(),
        h.hubs_total().as_secs_f64(),
        h.hubs
            .iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(","),
        cores(h.hubs_total(), h.window),
    );
    if let Some(p) = phase {
        let _ = write!(
            line,
            " hub_cpu_s_per_10k={:.3} bench_cpu_s_per_10k={:.3}",
            per_10k(h.hubs_total(), p.ok),
            per_10k(p.cpu.process, p.ok)
        );
    }
    if let Some(pg) = h.postgres {
        let _ = write!(
            line,
            " pg_cpu_s={:.3} pg_backends_cpu_s={:.3} pg_server_cpu_s={:.3} pg_cores={:.3} commits={} rollbacks={} commits_per_s={:.1} writes={} writes_per_s={:.1} wal_syncs={} wal_syncs_per_s={:.1} wal_bytes={} db_bytes={} other_db_commits={}",
            pg.cpu.total().as_secs_f64(),
            pg.cpu.backends.as_secs_f64(),
            pg.cpu.server.as_secs_f64(),
            cores(pg.cpu.total(), h.window),
            pg.commits,
            pg.rollbacks,
            pg.commits as f64 / secs,
            pg.writes,
            pg.writes as f64 / secs,
            pg.wal_syncs,
            pg.wal_syncs as f64 / secs,
            pg.wal_bytes,
            pg.database_bytes,
            pg.other_commits
        );
        if let Some(p) = phase {
            let apps = p.ok.max(1) as f64;
            let _ = write!(
                line,
                " pg_cpu_s_per_10k={:.3} commits_per_app={:.3} writes_per_app={:.3} wal_bytes_per_app={:.0} db_bytes_per_app={:.0}",
                per_10k(pg.cpu.total(), p.ok),
                pg.commits as f64 / apps,
                pg.writes as f64 / apps,
                pg.wal_bytes as f64 / apps,
                pg.database_bytes as f64 / apps
            );
        }
    }
    line
}

fn spent_json(h: &HubsSpent) -> Value {
    json!({
        "window_s": h.window.as_secs_f64(),
        "hub_cpu_s": h.hubs.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
        "postgres": h.postgres.map(|pg| json!({
            "backends_cpu_s": pg.cpu.backends.as_secs_f64(),
            "server_cpu_s": pg.cpu.server.as_secs_f64(),
            "commits": pg.commits,
            "rollbacks": pg.rollbacks,
            "other_db_commits": pg.other_commits,
            "writes": pg.writes,
            "wal_bytes": pg.wal_bytes,
            "wal_syncs": pg.wal_syncs,
            "database_bytes": pg.database_bytes,
        })),
    })
}

fn hist_json(h: &Histogram<u64>) -> Value {
    let f = |x: f64| if x.is_nan() { Value::Null } else { json!(x) };
    json!({
        "count": h.len(),
        "p50_ms": f(ms(h, 0.5)),
        "p99_ms": f(ms(h, 0.99)),
        "p999_ms": f(ms(h, 0.999)),
        "max_ms": f(max_ms(h)),
    })
}

/// The same figures as JSON.
pub fn to_json(header: &[String], targets: &[TargetResult], rss_start_kib: Option<u64>) -> Value {
    json!({
        "header": header,
        "rss_start_kib": rss_start_kib,
        "targets": targets.iter().map(|t| json!({
            "target": t.kind.name(),
            "description": t.description,
            "rss_before_kib": t.rss_before_kib,
            "peak_rss_kib": t.peak_rss_kib,
            "idle": t.idle.as_ref().map(|i| spent_json(&i.spent)),
            "phases": t.phases.iter().map(|p| {
                let (cpu, own) = p.cpu_per_10k(t.kind);
                json!({
                    "phase": p.label(),
                    "offered_per_s": match p.kind { PhaseKind::Rate { offered } => json!(offered), _ => Value::Null },
                    "connections": match p.kind { PhaseKind::Saturation { connections } => json!(connections), _ => Value::Null },
                    "elapsed_s": p.elapsed.as_secs_f64(),
                    "sent": p.sent,
                    "ok": p.ok,
                    "failed": p.failed,
                    "overloaded": p.overloaded,
                    "unfinished": p.unfinished,
                    "ok_per_s": p.ok_per_second(),
                    "delivered_per_s": p.delivered_per_second(),
                    "end_to_end_per_s": p.end_to_end_per_second(),
                    "latency": hist_json(&p.latency),
                    "service": hist_json(&p.service),
                    "delivery": p.delivery.as_ref().map(hist_json),
                    "undelivered": p.undelivered,
                    "backlog_at_start": p.backlog_at_start,
                    "peak_rss_kib": p.peak_rss_kib,
                    "drained_after_s": p.drained_after.map(|d| d.as_secs_f64()),
                    "cpu_s": p.cpu.process.as_secs_f64(),
                    "cpu_by_threads_s": p.cpu.groups.iter().map(|(g, d)| (g.name().to_string(), json!(d.as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
                    "cpu_s_per_10k": cpu,
                    "own_cpu_s_per_10k": own,
                    "hubs": p.hubs.as_ref().map(spent_json),
                    "events_posted": p.events_posted,
                    "events_failed": p.events_failed,
                    "supervision": p.supervision.as_ref().map(|s| {
                        let mut v = hist_json(&s.latency);
                        v["never_seen"] = json!(s.never_seen);
                        v["answered"] = hist_json(&s.answered);
                        v
                    }),
                    "first_error": p.first_error,
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
