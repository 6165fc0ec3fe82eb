//! `/api/v1/reports`: the funding report (第十一条), for finance to decide which self-built
//! systems may be funded, the usage report (第十条), for finding the systems that are little
//! used or whose function another system has, and the supervision report (第二十八–二十九条),
//! how departments, systems or items handled their cases and answered for their alerts, each
//! as JSON or CSV. Each export carries its
//! period and when it was made, and the SHA-256 of exactly the bytes sent goes into the audit
//! log (and the `Tongban-Content-SHA256` header), so that its reader can later prove what they
//! saw.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::ApiError;
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::service::supervision_report::{self, Figures, GroupBy, Line, SupervisionReport};
use crate::service::usage::{self, Month, Period, UsageLine, UsageReport};
use crate::store::ReportWindow;
use crate::workers::ledger::{FundingLine, FundingReport};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Who reads the reports: finance, the 营商局 (which reviews systems and clears them up),
/// administrators.
const READERS: Access = Access::Roles(&[Role::Finance, Role::Reviewer, Role::Admin]);

/// Who reads the supervision report: the 电子监察 supervisors it is for, and finance, which
/// reads the handling statistics it is made of (`STATS_READERS` in `api::supervision`: handling
/// figures serve funding decisions too), and administrators. Not reviewers: they judge systems'
/// onboarding, not how departments handle cases, and read no supervision figures elsewhere.
const SUPERVISION_READERS: Access = Access::Roles(&[Role::Supervisor, Role::Finance, Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/reports/funding", READERS, funding),
        Route::new(Method::GET, "/api/v1/reports/usage", READERS, usage),
        Route::new(
            Method::GET,
            "/api/v1/reports/supervision",
            SUPERVISION_READERS,
            supervision,
        ),
    ]
}

/// `format`: CSV or (the default) JSON.
fn csv_asked(q: &mut QueryParams) -> bool {
    q.one_of("format", &["json", "csv"]).as_deref() == Some("csv")
}

/// An export as sent: `body` with its content type, the SHA-256 of its bytes in
/// `Tongban-Content-SHA256`, and an audit record (even for a GET) saying `what` was exported,
/// in which format, with that digest.
fn export(body: String, csv: bool, what: String) -> Response {
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    let digest: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&digest) {
        headers.insert("tongban-content-sha256", value);
    }
    response.extensions_mut().insert(
        AuditNote::new(format!(
            "{what}, {}, sha256 {digest}",
            if csv { "csv" } else { "json" },
        ))
        .export(),
    );
    response
}

async fn funding(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let year = q.integer("year", 2000..=2100).map(|y| y as u16);
    let csv = csv_asked(&mut q);
    q.finish()?;
    let report = state.ledger.funding(year).await?;
    let body = if csv {
        csv_text(&report)
    } else {
        json_text(&report)
    };
    Ok(export(
        body,
        csv,
        format!(
            "funding report, period {}, {} system(s)",
            period(&report),
            report.lines.len()
        ),
    ))
}

fn period(report: &FundingReport) -> String {
    report
        .year
        .map_or_else(|| "all years".to_string(), |y| y.to_string())
}

fn line_json(line: &FundingLine) -> Value {
    let s = &line.standing;
    let record = s.record.as_ref();
    let integrations: serde_json::Map<String, Value> = s
        .integrations
        .iter()
        .map(|r| {
            (
                r.integration.as_str().to_string(),
                json!({ "status": r.status, "since": clock::format_millis(r.since) }),
            )
        })
        .collect();
    json!({
        "system": s.id,
        "name": record.map(|r| r.name.clone()),
        "department": { "name": record.map(|r| r.department_name.clone()), "uscc": s.department_uscc },
        "plan": record.map(|r| r.plan.as_str()),
        "funding": record.map(|r| json!({ "year": r.funding_year, "yuan": r.funding_yuan })),
        "connected": s.connected,
        "integrations": integrations,
        "verdict": if line.fundable { "fundable" } else { "not_fundable" },
        "reasons": line.reasons,
    })
}

fn json_text(report: &FundingReport) -> String {
    json!({
        "period": period(report),
        "generated_at": clock::format_millis(report.generated_at),
        "systems": report.lines.iter().map(line_json).collect::<Vec<_>>(),
        "departments": report.departments.iter().map(|d| json!({
            "uscc": d.uscc,
            "name": d.name,
            "systems": d.systems,
            "fundable_systems": d.fundable_systems,
            "requested_yuan": d.requested_yuan,
            "not_fundable_yuan": d.not_fundable_yuan,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// One CSV field, quoted when it needs to be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The report as CSV: a line saying its period and when it was made, then a header and a line
/// per system; the department totals are in the JSON form.
fn csv_text(report: &FundingReport) -> String {
    let mut out = format!(
        "# funding report,period {},generated {}\r\n",
        period(report),
        clock::format_millis(report.generated_at)
    );
    out.push_str(
        "system,name,department,department_uscc,plan,funding_year,funding_yuan,connected,same_source,identity,simulated_transaction,result_sharing,verdict,reasons\r\n",
    );
    for line in &report.lines {
        let s = &line.standing;
        let Some(r) = &s.record else { continue };
        let status = |i: crate::model::Probe| {
            s.integrations
                .iter()
                .find(|x| x.integration == i)
                .map_or("", |x| x.status.as_str())
        };
        let cells = [
            s.id.clone(),
            r.name.clone(),
            r.department_name.clone(),
            r.department_uscc.clone(),
            r.plan.as_str().to_string(),
            r.funding_year.to_string(),
            r.funding_yuan.to_string(),
            s.connected.to_string(),
            status(crate::model::Probe::SameSource).into(),
            status(crate::model::Probe::Identity).into(),
            status(crate::model::Probe::SimulatedTransaction).into(),
            status(crate::model::Probe::ResultSharing).into(),
            if line.fundable {
                "fundable"
            } else {
                "not_fundable"
            }
            .into(),
            line.reasons.join("; "),
        ];
        let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A month parameter: `Ok(None)` when absent, `Err` (reported) when not `YYYY-MM`.
fn month(q: &mut QueryParams, name: &'static str) -> Result<Option<Month>, ()> {
    match q.text(name).map(|text| text.parse::<Month>()) {
        None => Ok(None),
        Some(Ok(month)) => Ok(Some(month)),
        Some(Err(e)) => {
            q.problem(name, e.to_string());
            Err(())
        }
    }
}

/// The period of whole months `from` and `to` ask for (`None`: a problem with them is
/// reported). It is judged once both months read (a default standing in for a month that did
/// not would be judged in its place).
fn months_period(q: &mut QueryParams) -> Option<Period> {
    let from = month(q, "from");
    let to = month(q, "to");
    match (from, to) {
        (Ok(from), Ok(to)) => match usage::period(from, to, clock::now_millis()) {
            Ok(period) => Some(period),
            Err(problems) => {
                for p in problems {
                    q.problem(p.parameter(), p.to_string());
                }
                None
            }
        },
        _ => None,
    }
}

async fn usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let period = months_period(&mut q);
    let csv = csv_asked(&mut q);
    q.finish()?;
    let Some(period) = period else {
        // finish() has reported the problem that left no period.
        return Err(ApiError::Invalid(Vec::new()));
    };
    let report = state.ledger.usage(&period).await?;
    let body = if csv {
        usage_csv(&report)
    } else {
        usage_json(&report)
    };
    Ok(export(
        body,
        csv,
        format!(
            "usage report, period {}, {} system(s)",
            usage_period(&report),
            report.lines.len()
        ),
    ))
}

fn usage_period(report: &UsageReport) -> String {
    format!("{}..{}", report.period.from, report.period.to)
}

fn months_json(per_month: &[(Month, i64)]) -> Value {
    Value::Object(
        per_month
            .iter()
            .map(|(m, n)| (m.to_string(), json!(n)))
            .collect(),
    )
}

fn usage_line_json(line: &UsageLine, months: i64) -> Value {
    let s = &line.system;
    json!({
        "system": s.id,
        "name": s.name,
        "department": { "name": s.department_name, "uscc": s.department_uscc },
        "connected": s.connected,
        "plan": s.plan.map(|p| p.as_str()),
        "applications": line.applications,
        "applications_per_month": months_json(&line.per_month),
        "average_per_month": line.applications as f64 / months as f64,
        "items_handled": line.items_handled.len(),
        "item_codes": line.items_handled,
        "active_days": line.active_days,
        "share": line.share,
        "little_used": line.little_used,
        "little_used_reasons": line.little_used_reasons,
        "replaceable": line.replaceable,
        "alternatives": line.alternatives.iter().map(|(item, systems)| json!({
            "item": item,
            "systems": systems,
        })).collect::<Vec<_>>(),
    })
}

/// A report's period of whole months, as both month reports give it.
fn period_json(p: &Period) -> Value {
    json!({
        "from": p.from.to_string(),
        "to": p.to.to_string(),
        "months": p.month_count(),
        "start": clock::format_millis(p.start),
        "end": clock::format_millis(p.end),
        "includes_current_month": p.includes_current_month,
    })
}

fn usage_json(report: &UsageReport) -> String {
    let p = &report.period;
    let t = &report.totals;
    json!({
        "period": period_json(p),
        "generated_at": clock::format_millis(report.generated_at),
        "thresholds": {
            "little_used_per_month": report.thresholds.little_used_per_month,
            "little_used_active_days_per_month": report.thresholds.little_used_active_days_per_month,
        },
        "systems": report.lines.iter().map(|l| usage_line_json(l, p.month_count())).collect::<Vec<_>>(),
        "province": {
            "applications": t.applications,
            "applications_per_month": months_json(&t.per_month),
            "items_handled": t.items_handled,
            "active_days": t.active_days,
            "systems": t.systems,
            "little_used_systems": t.little_used_systems,
            "replaceable_systems": t.replaceable_systems,
            "applications_to_unlisted_systems": t.applications_to_unlisted_systems,
        },
    })
    .to_string()
}

/// The usage report as CSV: a line saying its period and when it was made, then a header and
/// a line per system (a column per month); the province's totals are in the JSON form.
fn usage_csv(report: &UsageReport) -> String {
    let mut out = format!(
        "# usage report,period {},generated {}\r\n",
        usage_period(report),
        clock::format_millis(report.generated_at)
    );
    let mut header: Vec<String> = [
        "system",
        "name",
        "department",
        "department_uscc",
        "connected",
        "plan",
        "applications",
    ]
    .map(String::from)
    .to_vec();
    header.extend(report.period.months().iter().map(Month::to_string));
    header.extend(
        [
            "items_handled",
            "active_days",
            "share",
            "little_used",
            "replaceable",
            "alternatives",
            "little_used_reasons",
        ]
        .map(String::from),
    );
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for line in &report.lines {
        let s = &line.system;
        let mut cells = vec![
            s.id.clone(),
            s.name.clone().unwrap_or_default(),
            s.department_name.clone().unwrap_or_default(),
            s.department_uscc.clone(),
            s.connected.to_string(),
            s.plan.map(|p| p.as_str()).unwrap_or_default().to_string(),
            line.applications.to_string(),
        ];
        cells.extend(line.per_month.iter().map(|(_, n)| n.to_string()));
        cells.extend([
            line.items_handled.len().to_string(),
            line.active_days.to_string(),
            line.share.map(|f| f.to_string()).unwrap_or_default(),
            line.little_used.to_string(),
            line.replaceable.to_string(),
            line.alternatives
                .iter()
                .map(|(item, systems)| format!("{item}: {}", systems.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
            line.little_used_reasons.join("; "),
        ]);
        let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `GET /api/v1/reports/supervision`: `from`, `to` (months, as the usage report), `by`
/// (`department`, the default, `system` or `item`), `department` (USCC) and `system` to narrow
/// to, `format`. See `service::supervision_report` for what each figure counts.
async fn supervision(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let period = months_period(&mut q);
    let by = q
        .one_of("by", &GroupBy::ALL.map(GroupBy::as_str))
        .and_then(|b| GroupBy::parse(&b))
        .unwrap_or_default();
    let department = q.text("department");
    let system = q.text("system");
    let csv = csv_asked(&mut q);
    q.finish()?;
    let Some(period) = period else {
        // finish() has reported the problem that left no period.
        return Err(ApiError::Invalid(Vec::new()));
    };
    let config = state.live.config();
    // Each system's department: the inventory's, else its adapter's.
    let mut system_departments: BTreeMap<String, String> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for s in config.systems.iter().flatten() {
        system_departments.insert(s.id.clone(), s.department_uscc.clone());
        names.insert(s.id.clone(), s.name.clone());
        names.insert(s.department_uscc.clone(), s.department_name.clone());
    }
    for a in config.adapters.values() {
        system_departments
            .entry(a.id.clone())
            .or_insert_with(|| a.department_uscc.clone());
        names.entry(a.id.clone()).or_insert_with(|| a.name.clone());
        names
            .entry(a.department_uscc.clone())
            .or_insert_with(|| a.department_name.clone());
    }
    let now = clock::now_millis();
    // Read first: the figures include at least what the engine had handled by then.
    let up_to = state.store.cursor(crate::workers::engine::CURSOR).await?;
    let facts = state
        .store
        .supervision_facts(&ReportWindow {
            since: period.start,
            until: period.end,
            // Days start at midnight in the calendar's zone, China Standard Time.
            utc_offset_ms: i64::from(clock::cst().local_minus_utc()) * 1000,
            now,
            system: system.as_deref(),
            department: department.as_deref(),
        })
        .await?;
    let report = supervision_report::report(&supervision_report::Inputs {
        period: &period,
        by,
        system: system.as_deref(),
        department: department.as_deref(),
        facts: &facts,
        system_departments: &system_departments,
        generated_at: now,
    });
    if by == GroupBy::Item {
        for g in &report.groups {
            if let Some(item) = state.catalog.get(&state.store, &g.key).await? {
                names.insert(g.key.clone(), item.name.clone());
            }
        }
    }
    let name = |key: &str| names.get(key).cloned();
    let body = if csv {
        supervision_csv(&report, &name)
    } else {
        supervision_json(&report, &name, up_to)
    };
    Ok(export(
        body,
        csv,
        format!(
            "supervision report, period {}..{}, by {}{}{}, {} group(s)",
            report.period.from,
            report.period.to,
            by.as_str(),
            report
                .department
                .as_ref()
                .map_or_else(String::new, |d| format!(", department {d}")),
            report
                .system
                .as_ref()
                .map_or_else(String::new, |s| format!(", system {s}")),
            report.groups.len()
        ),
    ))
}

fn figures_json(f: &Figures) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "cases".into(),
        json!({
            "begun": f.cases_begun,
            "completed": f.completed,
            "on_time": f.on_time,
            "late": f.late,
            "on_time_rate": f.on_time_rate,
            "open": f.open,
            "overdue_now": f.overdue_now,
            "refused": f.refused,
        }),
    );
    let counts = |pairs: Vec<(&str, i64)>| -> Value {
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, n)| (k.to_string(), json!(n)))
                .collect(),
        )
    };
    out.insert(
        "alerts".into(),
        json!({
            "raised": f.alerts_raised,
            "by_level": counts(f.alerts_by_level.iter().map(|(l, n)| (l.as_str(), *n)).collect()),
            "by_rule": counts(f.alerts_by_rule.iter().map(|(r, n)| (r.as_str(), *n)).collect()),
            "followed_up": f.alerts_followed_up,
            "closed": f.alerts_closed,
        }),
    );
    out.insert("inbound_refusals".into(), json!(f.inbound_refusals));
    out.insert(
        "reporting_lag".into(),
        json!({ "events": f.lag_events, "p95_ms": f.lag_p95_ms }),
    );
    out.insert(
        "supplements".into(),
        json!({
            "requests": f.supplement_requests,
            "cases": f.cases_with_supplements,
            "repeated_cases": f.cases_with_repeated_supplements,
        }),
    );
    out.insert("disputes_opened".into(), json!(f.disputes_opened));
    out
}

fn supervision_line_json(line: &Line) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("total".into(), Value::Object(figures_json(&line.total)));
    out.insert(
        "months".into(),
        Value::Array(
            line.months
                .iter()
                .map(|(m, f)| {
                    let mut month = serde_json::Map::new();
                    month.insert("month".into(), json!(m.to_string()));
                    month.extend(figures_json(f));
                    Value::Object(month)
                })
                .collect(),
        ),
    );
    out
}

fn supervision_json(
    report: &SupervisionReport,
    name: &dyn Fn(&str) -> Option<String>,
    up_to_seq: i64,
) -> String {
    let p = &report.period;
    json!({
        "period": period_json(p),
        "generated_at": clock::format_millis(report.generated_at),
        "up_to_seq": up_to_seq,
        "by": report.by.as_str(),
        "filters": { "department": report.department, "system": report.system },
        "months": p.months().iter().map(Month::to_string).collect::<Vec<_>>(),
        "groups": report.groups.iter().map(|g| {
            let mut group = serde_json::Map::new();
            group.insert("key".into(), json!(g.key));
            group.insert("name".into(), json!(name(&g.key)));
            group.extend(supervision_line_json(&g.line));
            Value::Object(group)
        }).collect::<Vec<_>>(),
        "province": Value::Object(supervision_line_json(&report.province)),
    })
    .to_string()
}

/// The supervision report's CSV columns after `scope,key,name,month`.
fn supervision_columns() -> Vec<String> {
    let mut columns: Vec<String> = [
        "cases_begun",
        "completed",
        "on_time",
        "late",
        "on_time_rate",
        "open",
        "overdue_now",
        "refused",
        "alerts_raised",
    ]
    .map(String::from)
    .to_vec();
    columns.extend(
        crate::model::Level::ALL
            .iter()
            .map(|l| format!("alerts_{}", l.as_str())),
    );
    columns.extend(
        crate::model::Rule::ALL
            .iter()
            .map(|r| format!("alerts_rule_{}", r.as_str())),
    );
    columns.extend(
        [
            "alerts_followed_up",
            "alerts_closed",
            "inbound_refusals",
            "reporting_lag_events",
            "reporting_lag_p95_ms",
            "supplement_requests",
            "cases_with_supplements",
            "cases_with_repeated_supplements",
            "disputes_opened",
        ]
        .map(String::from),
    );
    columns
}

fn figures_cells(f: &Figures) -> Vec<String> {
    let mut cells = vec![
        f.cases_begun.to_string(),
        f.completed.to_string(),
        f.on_time.to_string(),
        f.late.to_string(),
        f.on_time_rate.map(|r| r.to_string()).unwrap_or_default(),
        f.open.to_string(),
        f.overdue_now.to_string(),
        f.refused.to_string(),
        f.alerts_raised.to_string(),
    ];
    cells.extend(f.alerts_by_level.iter().map(|(_, n)| n.to_string()));
    cells.extend(f.alerts_by_rule.iter().map(|(_, n)| n.to_string()));
    cells.extend([
        f.alerts_followed_up.to_string(),
        f.alerts_closed.to_string(),
        f.inbound_refusals
            .map(|n| n.to_string())
            .unwrap_or_default(),
        f.lag_events.to_string(),
        f.lag_p95_ms.map(|n| n.to_string()).unwrap_or_default(),
        f.supplement_requests.to_string(),
        f.cases_with_supplements.to_string(),
        f.cases_with_repeated_supplements.to_string(),
        f.disputes_opened.to_string(),
    ]);
    cells
}

/// The supervision report as CSV: a line saying its period, grouping, filters and when it was
/// made, then a header and, per group and then for the province (`scope` `province`), a line
/// per month and one for the whole period (`month` `total`).
fn supervision_csv(report: &SupervisionReport, name: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = format!(
        "# supervision report,period {}..{},by {},department {},system {},generated {}\r\n",
        report.period.from,
        report.period.to,
        report.by.as_str(),
        field(report.department.as_deref().unwrap_or("all")),
        field(report.system.as_deref().unwrap_or("all")),
        clock::format_millis(report.generated_at)
    );
    let mut header: Vec<String> = ["scope", "key", "name", "month"].map(String::from).to_vec();
    header.extend(supervision_columns());
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    let lines = report
        .groups
        .iter()
        .map(|g| (report.by.as_str(), g.key.as_str(), name(&g.key), &g.line))
        .chain(std::iter::once(("province", "", None, &report.province)));
    for (scope, key, name, line) in lines {
        let rows = line
            .months
            .iter()
            .map(|(m, f)| (m.to_string(), f))
            .chain(std::iter::once(("total".to_string(), &line.total)));
        for (month, figures) in rows {
            let mut cells = vec![
                scope.to_string(),
                key.to_string(),
                name.clone().unwrap_or_default(),
                month,
            ];
            cells.extend(figures_cells(figures));
            let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    out
}
