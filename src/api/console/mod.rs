//! The console (`/console`): server-rendered pages in Chinese for supervisors, 营商局 reviewers,
//! finance, department IT teams and administrators, served by the hub itself.
//!
//! # How a page is made
//! A signed-in user's session holds the principal their credential proved at sign-in. Every
//! page reads, and every form writes, through the API itself: the console sends the API router
//! an in-process request carrying that principal ([`Delegated`]), and renders the JSON answer.
//! So the console admits exactly the roles the API admits, masks exactly what the API masks,
//! audits exactly what the API audits (as the same actor), and has no queries of its own. What
//! the console adds: sessions (a cookie, HttpOnly, SameSite=Strict, Secure behind TLS), a CSRF
//! token on every form, HTML (autoescaped templates) and SVG, and a live alert list over the
//! supervision stream (the one script; every page works without it).
//!
//! # Sessions
//! `POST /console/sign-in` takes an API key or a staff token of the unified identity system
//! (proven as the API proves an `Authorization` header) and answers with the session cookie; the
//! store keeps only the SHA-256 of its secret. A session lasts [`SESSION_HOURS`] at most, never
//! beyond its staff token's expiry, and ends at once when the API key it was opened with is
//! revoked. Sign-ins, failed ones included, and sign-outs are audited.

mod pages;
mod views;

use super::guard::{Delegated, append};
use super::{Access, AppState};
use crate::auth::sessions::{SESSION_HOURS, Session, Sessions};
use crate::auth::{AuthenticateError, Role};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use minijinja::Environment;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

/// The session cookie's name.
const COOKIE: &str = "tongban_console";

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    state: AppState,
    /// The API router, called in-process on the signed-in user's behalf.
    api: Router,
    sessions: Sessions,
    templates: Arc<Environment<'static>>,
    /// Every API route's method, path and access, to know what a user may call.
    access: Arc<Vec<(Method, &'static str, Access)>>,
}

/// The console's routes, over the API router they call.
pub fn router(state: AppState, api: Router) -> Router<AppState> {
    let console = Console {
        sessions: Sessions::new(state.auth.clone(), state.store.clone()),
        templates: Arc::new(views::templates()),
        access: Arc::new(
            super::routes()
                .into_iter()
                .map(|r| (r.method, r.path, r.access))
                .collect(),
        ),
        state,
        api,
    };
    pages::routes().with_state(console)
}

/// A page of the console's menu: shown to whoever may call the API route it reads.
struct MenuEntry {
    path: &'static str,
    label: &'static str,
    reads: &'static str,
}

const MENU: &[MenuEntry] = &[
    MenuEntry {
        path: "/console/alerts",
        label: "告警与督办",
        reads: "/api/v1/supervision/alerts",
    },
    MenuEntry {
        path: "/console/cases",
        label: "在办件",
        reads: "/api/v1/supervision/cases",
    },
    MenuEntry {
        path: "/console/onboarding",
        label: "接入审核",
        reads: "/api/v1/onboarding/requests",
    },
    MenuEntry {
        path: "/console/ledger",
        label: "四统一台账",
        reads: "/api/v1/ledger",
    },
    MenuEntry {
        path: "/console/funding",
        label: "运维经费报告",
        reads: "/api/v1/reports/funding",
    },
    MenuEntry {
        path: "/console/usage",
        label: "系统使用情况",
        reads: "/api/v1/reports/usage",
    },
    MenuEntry {
        path: "/console/supervision",
        label: "监察报告",
        reads: "/api/v1/reports/supervision",
    },
    MenuEntry {
        path: "/console/system",
        label: "本系统",
        reads: "/api/v1/systems/{id}/alerts",
    },
    MenuEntry {
        path: "/console/keys",
        label: "密钥",
        reads: "/api/v1/keys",
    },
    MenuEntry {
        path: "/console/audit",
        label: "审计日志",
        reads: "/api/v1/audit",
    },
];

impl Console {
    /// Whether `roles` may call the API route `method path`.
    fn may(&self, roles: &[Role], method: &Method, path: &str) -> bool {
        self.access
            .iter()
            .any(|(m, p, access)| m == method && *p == path && access.admits(roles))
    }

    /// The menu entries `roles` may open: those whose API route admits one of them.
    fn menu(&self, roles: &[Role]) -> Vec<Value> {
        MENU.iter()
            .filter(|entry| self.may(roles, &Method::GET, entry.reads))
            .map(|entry| json!({ "path": entry.path, "label": entry.label }))
            .collect()
    }
}

/// What the API answered a console request.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Console {
    /// The session the request's cookie holds, if it is current.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<(String, Session)>, Response> {
        let Some(secret) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        match self.sessions.find(&secret).await {
            Ok(found) => Ok(found.map(|s| (secret, s))),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read a console session");
                Err(self.error_page(
                    None,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "暂时无法服务",
                    "会话存储暂时不可用，请稍后再试。",
                    &[],
                ))
            }
        }
    }

    /// Calls the API as `session`'s user: the answer, whatever its status.
    async fn call(
        &self,
        session: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(header::HeaderName, HeaderValue)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .extension(Delegated(session.principal.clone()))
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())));
        let request = match request {
            Ok(request) => request,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Calls the API as `session`'s user and reads the answer as JSON.
    async fn json(
        &self,
        session: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let response = self.call(session, method, uri, body, &[]).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// What the API answers a GET as `session`'s user, or the page saying why it did not.
    async fn read(&self, session: &Session, uri: &str) -> Result<Answer, Response> {
        let answer = self.json(session, Method::GET, uri, None).await;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(self.refused(session, &answer))
        }
    }

    /// Renders page `name` for `session` with `context` (the menu, the user and the CSRF token
    /// added), with `status`.
    fn page(
        &self,
        session: Option<&Session>,
        status: StatusCode,
        name: &str,
        mut context: Value,
    ) -> Response {
        if let Some(s) = session {
            context["me"] = json!({
                "actor": s.principal.actor,
                "roles": s.principal.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "role_labels": s.principal.roles.iter().map(|r| views::role_label(*r)).collect::<Vec<_>>(),
                "system": s.principal.system,
            });
            context["menu"] = Value::Array(self.menu(&s.principal.roles));
            context["csrf"] = Value::String(s.csrf.clone());
            // Cases link to their page only for those who may read an application.
            context["reads_cases"] = Value::Bool(self.may(
                &s.principal.roles,
                &Method::GET,
                "/api/v1/applications/{id}",
            ));
        }
        let rendered = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(minijinja::value::Serde(&context)));
        match rendered {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(template = name, cause = %e, "a console page cannot be rendered");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><meta charset=utf-8><title>错误</title><p>页面无法显示。</p>"
                        .into(),
                )
            }
        }
    }

    /// A page saying what went wrong, with every problem listed.
    fn error_page(
        &self,
        session: Option<&Session>,
        status: StatusCode,
        title: &str,
        detail: &str,
        errors: &[Value],
    ) -> Response {
        self.page(
            session,
            status,
            "error.html",
            json!({ "status": status.as_u16(), "title": title, "detail": detail, "errors": errors }),
        )
    }

    /// The page for an API answer that is not a success: its status, title, detail and every
    /// problem, as the API said them.
    fn refused(&self, session: &Session, answer: &Answer) -> Response {
        let title = match answer.status {
            StatusCode::FORBIDDEN => "无权访问",
            StatusCode::NOT_FOUND => "未找到",
            StatusCode::CONFLICT => "状态已变化",
            s if s.is_client_error() => "请求有误",
            _ => "暂时无法服务",
        };
        let detail = answer.body["detail"]
            .as_str()
            .or(answer.body["title"].as_str())
            .unwrap_or_default()
            .to_string();
        let errors = answer.body["errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        self.error_page(Some(session), answer.status, title, &detail, &errors)
    }

    /// The page for a form refused for lacking its session's CSRF token or coming from another
    /// site, audited like any refused call.
    async fn forged(&self, session: &Session, action: &str) -> Response {
        self.audit(
            &session.principal.actor,
            action,
            "refused 403",
            "a form without the session's CSRF token, or from another site",
        )
        .await;
        self.error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "表单已失效",
            "表单缺少本次登录的校验码（或来自其他站点），未执行任何操作。请返回页面重新提交。",
            &[],
        )
    }

    /// Audits a console call that the API does not see (signing in and out).
    async fn audit(&self, actor: &str, action: &str, outcome: &str, detail: &str) {
        append(
            &self.state,
            actor,
            action,
            action_target(action),
            outcome,
            detail,
        )
        .await;
    }
}

/// The path an audited console action is about.
fn action_target(action: &str) -> &str {
    action.split_once(' ').map_or(action, |(_, path)| path)
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    response
}

/// What every console answer carries: no caching of pages with case data, no framing, scripts
/// and styles from the hub only, forms posting to the hub only.
fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// The value of cookie `name`, if the request has it once.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string());
    let first = found.next();
    // Two cookies of the name (one planted by a sibling domain, say): trust neither.
    if found.next().is_some() { None } else { first }
}

/// The session cookie for `secret`: Secure when the request came over TLS (as the front end
/// that terminates it says with `X-Forwarded-Proto`).
fn session_cookie(headers: &HeaderMap, secret: &str, max_age_seconds: i64) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!(
        "{COOKIE}={secret}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a form was posted from somewhere other than the hub's own pages: its `Origin` is
/// missing (every browser sends one with a POST; `Sec-Fetch-Site: same-origin` stands in for it)
/// or names another host than the one the request was made to (`X-Forwarded-Host` behind a
/// front end that rewrites `Host`, else `Host`).
fn foreign_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(origin) = text("origin") else {
        return text("sec-fetch-site") != Some("same-origin");
    };
    let host = text("x-forwarded-host")
        .and_then(|h| h.split(',').next())
        .or_else(|| text("host"))
        .unwrap_or_default()
        .trim();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    origin == "null" || host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure_headers(response.headers_mut());
    response
}

/// Why a credential could not sign in, in the user's words.
fn sign_in_refusal(e: &AuthenticateError) -> (StatusCode, String) {
    match e {
        AuthenticateError::Unauthenticated(why) => {
            (StatusCode::UNAUTHORIZED, format!("凭证无效：{why}"))
        }
        AuthenticateError::IdentityUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "统一身份认证系统的密钥暂不可用，无法核验令牌，请稍后再试。".into(),
        ),
        AuthenticateError::Store(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法登录，请稍后再试。".into(),
        ),
    }
}

/// The session's longest remaining life, in seconds, for the cookie's `Max-Age`.
fn seconds_left(session: &Session) -> i64 {
    ((session.expires_at - crate::clock::now_millis()) / 1000).clamp(0, SESSION_HOURS * 3600)
}
