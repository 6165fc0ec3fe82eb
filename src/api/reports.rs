//! `/api/v1/reports`: the funding report (第十一条) as JSON or CSV, for finance to decide which
//! self-built systems may be funded. Each export carries its period and when it was made, and
//! the SHA-256 of exactly the bytes sent goes into the audit log (and the
//! `Tongban-Content-SHA256` header), so that finance can later prove what it saw.

use super::guard::AuditNote;
use super::input::QueryParams;
use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState, Route};
use crate::auth::Role;
use crate::clock;
use crate::workers::ledger::{FundingLine, FundingReport};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Who reads the funding report: finance, the 营商局, administrators.
const READERS: Access = Access::Roles(&[Role::Finance, Role::Reviewer, Role::Admin]);

pub fn routes() -> Vec<Route> {
    vec![Route::new(
        Method::GET,
        "/api/v1/reports/funding",
        READERS,
        funding,
    )]
}

async fn funding(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = QueryParams::parse(raw.as_deref());
    let year = q.integer("year", 2000..=2100).map(|y| y as u16);
    let format = q.text("format");
    q.finish()?;
    let csv = match format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::Invalid(vec![ProblemEntry::parameter(
                "format",
                "must be `json` (the default) or `csv`",
            )]));
        }
    };
    let report = state.ledger.funding(year).await?;
    let (body, content_type) = if csv {
        (csv_text(&report), "text/csv; charset=utf-8")
    } else {
        (json_text(&report), "application/json")
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
            "funding report, period {}, {} system(s), {}, sha256 {digest}",
            period(&report),
            report.lines.len(),
            if csv { "csv" } else { "json" },
        ))
        .export(),
    );
    Ok(response)
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
