//! `/api/v1/reports`: the funding report (第十一条), for finance to decide which self-built
//! systems may be funded, and the usage report (第十条), for finding the systems that are little
//! used or whose function another system has, each as JSON or CSV. Each export carries its
//! period and when it was made, and the SHA-256 of exactly the bytes sent goes into the audit
//! log (and the `Tongban-Content-SHA256` header), so that its reader can later prove what they
//! saw.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::ApiError;
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::service::usage::{self, Month, UsageLine, UsageReport};
use crate::workers::ledger::{FundingLine, FundingReport};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Who reads the reports: finance, the 营商局 (which reviews systems and clears them up),
/// administrators.
const READERS: Access = Access::Roles(&[Role::Finance, Role::Reviewer, Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/api/v1/reports/funding", READERS, funding),
        Route::new(Method::GET, "/api/v1/reports/usage", READERS, usage),
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

async fn usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let from = month(&mut q, "from");
    let to = month(&mut q, "to");
    let csv = csv_asked(&mut q);
    // The period is judged once both months read (a default standing in for a month that did
    // not would be judged in its place).
    let period = match (from, to) {
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
    };
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

fn usage_json(report: &UsageReport) -> String {
    let p = &report.period;
    let t = &report.totals;
    json!({
        "period": {
            "from": p.from.to_string(),
            "to": p.to.to_string(),
            "months": p.month_count(),
            "start": clock::format_millis(p.start),
            "end": clock::format_millis(p.end),
            "includes_current_month": p.includes_current_month,
        },
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
