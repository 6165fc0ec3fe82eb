//! The console's pages and forms, one handler each: read the session, call the API as its user,
//! render the answer (or say why not).

use super::{
    Answer, Console, foreign_origin, seconds_left, see_other, session_cookie, sign_in_refusal,
};
use crate::auth::AuthenticateError;
use crate::auth::sessions::Session;
use axum::Router;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(home))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/static/{file}", get(asset))
        .route("/console/alerts", get(alerts))
        .route("/console/alerts/stream", get(alert_stream))
        .route("/console/alerts/{alert_id}", get(alert))
        .route("/console/alerts/{alert_id}/follow-up", post(follow_up))
        .route("/console/cases", get(cases))
        .route("/console/cases/{application_id}", get(case))
        .route("/console/onboarding", get(onboarding_queue))
        .route("/console/onboarding/{id}", get(onboarding_request))
        .route("/console/onboarding/{id}/decision", post(decide))
        .route("/console/ledger", get(ledger))
        .route("/console/funding", get(funding))
        .route("/console/usage", get(usage))
        .route("/console/supervision", get(supervision_report))
        .route("/console/reports/{report}/export", get(report_export))
        .route("/console/system", get(own_system))
        .route(
            "/console/system/alerts/{alert_id}/follow-up",
            post(answer_alert),
        )
        .route(
            "/console/system/dead-letters/{id}/replay",
            post(replay_dead_letter),
        )
        .route("/console/keys", get(keys))
        .route("/console/keys/{id}/revocation", post(revoke_key))
        .route("/console/audit", get(audit))
}

/// The signed-in user, or the answer to give instead: to the sign-in page when there is none.
macro_rules! signed_in {
    ($console:expr, $headers:expr) => {
        match $console.session(&$headers).await {
            Ok(Some((_, session))) => session,
            Ok(None) => return see_other("/console"),
            Err(response) => return response,
        }
    };
}

/// What the API answers a GET as the signed-in user, or (from the handler) the page saying why
/// not.
macro_rules! read {
    ($console:expr, $session:expr, $uri:expr) => {
        match $console.read($session, $uri).await {
            Ok(answer) => answer,
            Err(refused) => return refused,
        }
    };
}

/// The query string as given, for passing on to the API.
fn passed_on(raw: &Option<String>) -> String {
    raw.as_deref()
        .filter(|q| !q.is_empty())
        .map(|q| format!("?{q}"))
        .unwrap_or_default()
}

/// The query's parameters, for filling the filter forms back in.
fn parameters(raw: &Option<String>) -> Value {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).unwrap_or_default();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>(),
    )
}

/// A form's fields: every non-empty one but the CSRF token.
fn fields(form: &BTreeMap<String, String>) -> Map<String, Value> {
    form.iter()
        .filter(|(k, v)| k.as_str() != "csrf" && !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// Whether a form carries its session's CSRF token and comes from the hub's own pages.
fn genuine(session: &Session, headers: &HeaderMap, form: &BTreeMap<String, String>) -> bool {
    let token = form.get("csrf").map(String::as_str).unwrap_or_default();
    !foreign_origin(headers)
        && token.len() == session.csrf.len()
        && token
            .bytes()
            .zip(session.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

// ---- signing in and out ----

async fn home(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.session(&headers).await {
        Ok(Some((_, session))) => c.page(Some(&session), StatusCode::OK, "home.html", json!({})),
        Ok(None) => c.page(None, StatusCode::OK, "sign_in.html", json!({})),
        Err(response) => response,
    }
}

async fn sign_in(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    const ACTION: &str = "POST /console/sign-in";
    if foreign_origin(&headers) {
        c.audit(
            "anonymous",
            ACTION,
            "refused 403",
            "a sign-in posted from another site",
        )
        .await;
        return c.page(
            None,
            StatusCode::FORBIDDEN,
            "sign_in.html",
            json!({ "problem": "登录表单来自其他站点，已拒绝。" }),
        );
    }
    let credential = form
        .get("credential")
        .map(String::as_str)
        .unwrap_or_default();
    // Keys and tokens are printable ASCII: anything else is no credential, and goes no further.
    if credential.trim().chars().any(|ch| !ch.is_ascii_graphic()) {
        c.audit(
            "anonymous",
            ACTION,
            "refused 401",
            "a credential with characters no key or token has",
        )
        .await;
        return c.page(
            None,
            StatusCode::UNAUTHORIZED,
            "sign_in.html",
            json!({ "problem": "凭证无效：含有密钥或令牌不会有的字符。" }),
        );
    }
    if credential.trim().is_empty() {
        return c.page(
            None,
            StatusCode::BAD_REQUEST,
            "sign_in.html",
            json!({ "problem": "请填写 API 密钥或统一身份认证的工作人员令牌。" }),
        );
    }
    // A sign-in replaces whatever session this browser held.
    if let Ok(Some((previous, _))) = c.session(&headers).await
        && let Err(e) = c.sessions.close(&previous).await
    {
        tracing::warn!(cause = %e, "cannot end the session a sign-in replaces");
    }
    match c.sessions.open(credential).await {
        Ok((secret, session)) if session.principal.roles.is_empty() => {
            if let Err(e) = c.sessions.close(&secret).await {
                tracing::warn!(cause = %e, "cannot end a session without roles");
            }
            c.audit(
                &session.principal.actor,
                ACTION,
                "refused 403",
                "a staff token granting no role",
            )
            .await;
            c.page(
                None,
                StatusCode::FORBIDDEN,
                "sign_in.html",
                json!({ "problem": "该令牌未授予任何工作人员角色（审核、财政、监察、管理员），无法使用控制台。" }),
            )
        }
        Ok((secret, session)) => {
            c.audit(
                &session.principal.actor,
                ACTION,
                "ok 303",
                "signed in to the console",
            )
            .await;
            let mut response = see_other("/console");
            if let Ok(value) =
                HeaderValue::from_str(&session_cookie(&headers, &secret, seconds_left(&session)))
            {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            let (status, why) = sign_in_refusal(&e);
            // The store's own words stay in the log; the audit says what kind of failure it was.
            let detail = match &e {
                AuthenticateError::Store(cause) => {
                    tracing::warn!(cause = %cause, "a console sign-in cannot reach the store");
                    "the store could not be read".to_string()
                }
                other => other.to_string(),
            };
            let outcome = if status.is_server_error() {
                "failed"
            } else {
                "refused"
            };
            c.audit(
                "anonymous",
                ACTION,
                &format!("{outcome} {}", status.as_u16()),
                &detail,
            )
            .await;
            c.page(None, status, "sign_in.html", json!({ "problem": why }))
        }
    }
}

async fn sign_out(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let (secret, session) = match c.session(&headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other("/console"),
        Err(response) => return response,
    };
    if !genuine(&session, &headers, &form) {
        return c.forged(&session, "POST /console/sign-out").await;
    }
    if let Err(e) = c.sessions.close(&secret).await {
        tracing::warn!(cause = %e, "cannot end a console session");
    }
    c.audit(
        &session.principal.actor,
        "POST /console/sign-out",
        "ok 303",
        "signed out of the console",
    )
    .await;
    let mut response = see_other("/console");
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&headers, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (super::views::CSS, "text/css; charset=utf-8"),
        "console.js" => (super::views::SCRIPT, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

// ---- supervisors: alerts, their follow-up, cases ----

async fn alerts(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/supervision/alerts{}", passed_on(&raw))
    );
    c.page(
        Some(&session),
        StatusCode::OK,
        "alerts.html",
        json!({ "page": answer.body, "query": parameters(&raw) }),
    )
}

/// The alert stream for the live list: the supervision stream's alerts and follow-up steps,
/// read as the user (the browser's EventSource sends the cookie, not a bearer token).
async fn alert_stream(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = signed_in!(c, headers);
    // The list's own filters that the stream knows too: new rows match what the page lists.
    let query = parameters(&raw);
    let filters: Vec<(&str, &str)> = ["system", "department", "level"]
        .into_iter()
        .filter_map(|name| Some((name, query[name].as_str().filter(|v| !v.is_empty())?)))
        .collect();
    // Only what happens from now on: the page shows what was there when it was loaded.
    let head = c
        .json(
            &session,
            Method::GET,
            "/api/v1/supervision/alerts?limit=1",
            None,
        )
        .await;
    if !head.status.is_success() {
        return head.status.into_response();
    }
    let last = headers
        .get("last-event-id")
        .cloned()
        .map(|v| vec![(header::HeaderName::from_static("last-event-id"), v)])
        .unwrap_or_default();
    let after = if last.is_empty() {
        match c.state.store.feed_head().await {
            Ok(head) => head,
            Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    } else {
        0
    };
    let stream = c
        .call(
            &session,
            Method::GET,
            &format!(
                "/api/v1/supervision/stream?kind=alert&after={after}{}",
                filters
                    .iter()
                    .map(|(k, v)| format!("&{k}={}", encode(v)))
                    .collect::<String>()
            ),
            None,
            &last,
        )
        .await;
    if !stream.status().is_success() {
        return stream;
    }
    // The stream lives as long as its session: looked at again at every check, ended when it
    // expired, was signed out of, or its key was revoked (the page stays, its live list stops).
    let secret = match c.session(&headers).await {
        Ok(Some((secret, _))) => secret,
        _ => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let (parts, mut body) = stream.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let sessions = c.sessions.clone();
    tokio::spawn(async move {
        let mut check = tokio::time::interval(SESSION_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Ok(bytes) = frame.into_data()
                            && tx.send(bytes).await.is_err()
                        {
                            return;
                        }
                    }
                    _ => return,
                },
                _ = check.tick() => {
                    if !matches!(sessions.find(&secret).await, Ok(Some(_))) {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    Response::from_parts(
        parts,
        axum::body::Body::new(crate::api::supervision::EventStream { rx }),
    )
}

/// How often a live stream looks whether its session still holds.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

async fn alert(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
) -> Response {
    let session = signed_in!(c, headers);
    alert_page(&c, &session, &alert_id, StatusCode::OK, None).await
}

/// An alert with its follow-up and the forms for the next steps; `problem` is what the last
/// form was refused for.
async fn alert_page(
    c: &Console,
    session: &Session,
    alert_id: &str,
    status: StatusCode,
    problem: Option<&Answer>,
) -> Response {
    let answer = read!(
        c,
        session,
        &format!("/api/v1/supervision/alerts/{}", encode(alert_id))
    );
    let application = answer.body["application_id"].as_str().map(str::to_owned);
    c.page(
        Some(session),
        status,
        "alert.html",
        json!({
            "alert": answer.body,
            "application": application,
            "problem": problem.map(|p| &p.body),
        }),
    )
}

async fn follow_up(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let session = signed_in!(c, headers);
    if !genuine(&session, &headers, &form) {
        return c
            .forged(&session, "POST /console/alerts/{alert_id}/follow-up")
            .await;
    }
    let answer = c
        .json(
            &session,
            Method::POST,
            &format!("/api/v1/supervision/alerts/{}/follow-up", encode(&alert_id)),
            Some(Value::Object(fields(&form))),
        )
        .await;
    if answer.status.is_success() {
        return see_other(&format!("/console/alerts/{}", encode(&alert_id)));
    }
    alert_page(&c, &session, &alert_id, answer.status, Some(&answer)).await
}

async fn cases(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/supervision/cases{}", passed_on(&raw))
    );
    c.page(
        Some(&session),
        StatusCode::OK,
        "cases.html",
        json!({ "page": answer.body, "query": parameters(&raw) }),
    )
}

async fn case(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(application_id): Path<String>,
) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/applications/{}", encode(&application_id))
    );
    c.page(
        Some(&session),
        StatusCode::OK,
        "case.html",
        json!({ "case": answer.body }),
    )
}

// ---- reviewers: onboarding ----

async fn onboarding_queue(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/onboarding/requests{}", passed_on(&raw))
    );
    c.page(
        Some(&session),
        StatusCode::OK,
        "onboarding.html",
        json!({ "page": answer.body, "query": parameters(&raw) }),
    )
}

async fn onboarding_request(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in!(c, headers);
    request_page(&c, &session, &id, StatusCode::OK, None).await
}

async fn request_page(
    c: &Console,
    session: &Session,
    id: &str,
    status: StatusCode,
    problem: Option<&Answer>,
) -> Response {
    let answer = read!(
        c,
        session,
        &format!("/api/v1/onboarding/requests/{}", encode(id))
    );
    let decides = c.may(
        &session.principal.roles,
        &Method::POST,
        "/api/v1/onboarding/requests/{id}/decision",
    );
    let mut request = answer.body;
    // The bundle's files are long; the page shows their names and the probe evidence.
    if let Some(files) = request.get_mut("files") {
        *files = Value::Null;
    }
    c.page(
        Some(session),
        status,
        "onboarding_request.html",
        json!({ "request": request, "decides": decides, "problem": problem.map(|p| &p.body) }),
    )
}

/// The decision form: `decision`, a reason per probe (`reason_<probe>`), a note.
async fn decide(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let session = signed_in!(c, headers);
    if !genuine(&session, &headers, &form) {
        return c
            .forged(&session, "POST /console/onboarding/{id}/decision")
            .await;
    }
    let reasons: Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let probe = k.strip_prefix("reason_")?;
            (!v.trim().is_empty()).then(|| (probe.to_owned(), Value::String(v.trim().to_owned())))
        })
        .collect();
    let mut body = json!({ "decision": form.get("decision").cloned().unwrap_or_default() });
    if !reasons.is_empty() {
        body["reasons"] = Value::Object(reasons);
    }
    if let Some(note) = form.get("note").filter(|n| !n.trim().is_empty()) {
        body["note"] = Value::String(note.clone());
    }
    let answer = c
        .json(
            &session,
            Method::POST,
            &format!("/api/v1/onboarding/requests/{}/decision", encode(&id)),
            Some(body),
        )
        .await;
    if answer.status.is_success() {
        return see_other(&format!("/console/onboarding/{}", encode(&id)));
    }
    request_page(&c, &session, &id, answer.status, Some(&answer)).await
}

// ---- finance: the ledger and the funding report ----

async fn ledger(State(c): State<Console>, headers: HeaderMap) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(c, &session, "/api/v1/ledger");
    c.page(
        Some(&session),
        StatusCode::OK,
        "ledger.html",
        json!({ "ledger": answer.body }),
    )
}

async fn funding(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = signed_in!(c, headers);
    let query = parameters(&raw);
    let year = query["year"].as_str().unwrap_or_default().to_owned();
    let uri = if year.is_empty() {
        "/api/v1/reports/funding".to_owned()
    } else {
        format!("/api/v1/reports/funding?year={}", encode(&year))
    };
    let answer = read!(c, &session, &uri);
    let digest = answer
        .headers
        .get("tongban-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    c.page(
        Some(&session),
        StatusCode::OK,
        "funding.html",
        json!({ "report": answer.body, "year": year, "digest": digest }),
    )
}

/// A report as a file (`format=csv|json` and the report's own parameters, passed on): the API's
/// bytes, digest header and audit record as they are, to save.
async fn report_export(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(report): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = signed_in!(c, headers);
    if !["funding", "usage", "supervision"].contains(&report.as_str()) {
        return c.error_page(
            Some(&session),
            StatusCode::NOT_FOUND,
            "未找到",
            "没有这份报告。",
            &[],
        );
    }
    let query = parameters(&raw);
    let format = match query["format"].as_str() {
        Some("json") => "json",
        _ => "csv",
    };
    let mut pairs: Vec<(String, String)> = vec![("format".into(), format.into())];
    if let Value::Object(given) = &query {
        for (k, v) in given {
            if let (false, Some(v)) = (k == "format", v.as_str().filter(|v| !v.is_empty())) {
                pairs.push((k.clone(), v.to_owned()));
            }
        }
    }
    let uri = format!(
        "/api/v1/reports/{report}?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    );
    let mut response = c.call(&session, Method::GET, &uri, None, &[]).await;
    if response.status().is_success() {
        let name = format!("attachment; filename=\"{report}.{format}\"");
        if let Ok(value) = HeaderValue::from_str(&name) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// The usage report (第十条) for the months asked (`from`, `to`), with the province's monthly
/// applications as a chart.
async fn usage(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/reports/usage{}", passed_on(&raw))
    );
    let per_month = answer.body["province"]["applications_per_month"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let digest = answer
        .headers
        .get("tongban-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    c.page(
        Some(&session),
        StatusCode::OK,
        "usage.html",
        json!({
            "report": answer.body,
            "query": parameters(&raw),
            "digest": digest,
            "months": per_month.keys().collect::<Vec<_>>(),
            "volumes": per_month.values().collect::<Vec<_>>(),
        }),
    )
}

/// The supervision report (第二十八–二十九条) for the months, grouping and filters asked, with the
/// province's months as charts: volume, the on-time rate, alerts by level.
async fn supervision_report(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(
        c,
        &session,
        &format!("/api/v1/reports/supervision{}", passed_on(&raw))
    );
    let months = answer.body["province"]["months"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let figure = |path: &[&str]| -> Vec<Value> {
        months
            .iter()
            .map(|m| path.iter().fold(m, |v, key| &v[*key]).clone())
            .collect()
    };
    let rates: Vec<Value> = figure(&["cases", "on_time_rate"])
        .into_iter()
        .map(|r| {
            r.as_f64()
                .map_or(Value::Null, |r| json!((r * 1000.0).round() / 10.0))
        })
        .collect();
    let digest = answer
        .headers
        .get("tongban-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    c.page(
        Some(&session),
        StatusCode::OK,
        "supervision.html",
        json!({
            "report": answer.body,
            "query": parameters(&raw),
            "digest": digest,
            "labels": figure(&["month"]),
            "begun": figure(&["cases", "begun"]),
            "completed": figure(&["cases", "completed"]),
            "rates": rates,
            "warning": figure(&["alerts", "by_level", "warning"]),
            "yellow": figure(&["alerts", "by_level", "yellow"]),
            "red": figure(&["alerts", "by_level", "red"]),
        }),
    )
}

// ---- department IT teams: their system ----

async fn own_system(State(c): State<Console>, headers: HeaderMap) -> Response {
    let session = signed_in!(c, headers);
    system_page(&c, &session, StatusCode::OK, None).await
}

async fn system_page(
    c: &Console,
    session: &Session,
    status: StatusCode,
    problem: Option<&Answer>,
) -> Response {
    let Some(system) = session.principal.system.clone() else {
        return c.error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "无权访问",
            "本页面供部门系统的密钥登录后查看本系统的情况。",
            &[],
        );
    };
    let id = encode(&system);
    // A system not connected yet has no alerts to answer, but its onboarding requests to follow.
    let alerts = c
        .json(
            session,
            Method::GET,
            &format!("/api/v1/systems/{id}/alerts"),
            None,
        )
        .await;
    let letters = c
        .json(session, Method::GET, "/api/v1/dead-letters", None)
        .await;
    let requests = c
        .json(
            session,
            Method::GET,
            &format!("/api/v1/onboarding/requests?system={id}"),
            None,
        )
        .await;
    c.page(
        Some(session),
        status,
        "system.html",
        json!({
            "system": system,
            "alerts": alerts.status.is_success().then_some(alerts.body),
            "dead_letters": letters.status.is_success().then_some(letters.body),
            "requests": requests.status.is_success().then_some(requests.body),
            "problem": problem.map(|p| &p.body),
        }),
    )
}

async fn answer_alert(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(alert_id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let session = signed_in!(c, headers);
    if !genuine(&session, &headers, &form) {
        return c
            .forged(&session, "POST /console/system/alerts/{alert_id}/follow-up")
            .await;
    }
    let Some(system) = session.principal.system.clone() else {
        return system_page(&c, &session, StatusCode::FORBIDDEN, None).await;
    };
    let answer = c
        .json(
            &session,
            Method::POST,
            &format!(
                "/api/v1/systems/{}/alerts/{}/follow-up",
                encode(&system),
                encode(&alert_id)
            ),
            Some(Value::Object(fields(&form))),
        )
        .await;
    if answer.status.is_success() {
        return see_other("/console/system");
    }
    system_page(&c, &session, answer.status, Some(&answer)).await
}

/// The department puts one of its system's dead letters back in the outbox (once the system is
/// fixed).
async fn replay_dead_letter(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let session = signed_in!(c, headers);
    if !genuine(&session, &headers, &form) {
        return c
            .forged(&session, "POST /console/system/dead-letters/{id}/replay")
            .await;
    }
    let answer = c
        .json(
            &session,
            Method::POST,
            &format!("/api/v1/dead-letters/{}/replay", encode(&id)),
            None,
        )
        .await;
    if answer.status.is_success() {
        return see_other("/console/system");
    }
    system_page(&c, &session, answer.status, Some(&answer)).await
}

// ---- administrators: keys and the audit log ----

async fn keys(State(c): State<Console>, headers: HeaderMap) -> Response {
    let session = signed_in!(c, headers);
    let answer = read!(c, &session, "/api/v1/keys");
    c.page(
        Some(&session),
        StatusCode::OK,
        "keys.html",
        json!({ "keys": answer.body }),
    )
}

async fn revoke_key(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let session = signed_in!(c, headers);
    if !genuine(&session, &headers, &form) {
        return c
            .forged(&session, "POST /console/keys/{id}/revocation")
            .await;
    }
    let answer = c
        .json(
            &session,
            Method::DELETE,
            &format!("/api/v1/keys/{}", encode(&id)),
            None,
        )
        .await;
    if answer.status.is_success() {
        return see_other("/console/keys");
    }
    c.refused(&session, &answer)
}

async fn audit(State(c): State<Console>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let session = signed_in!(c, headers);
    let records = read!(c, &session, &format!("/api/v1/audit{}", passed_on(&raw)));
    let verification = read!(c, &session, "/api/v1/audit/verification");
    c.page(
        Some(&session),
        StatusCode::OK,
        "audit.html",
        json!({
            "records": records.body,
            "verification": verification.body,
            "query": parameters(&raw),
        }),
    )
}

/// A path segment or query value, percent-encoded.
fn encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').replace('+', "%20"))
        .unwrap_or_default()
}
