//! The guard in front of every route: authenticate the caller, refuse roles the route does not
//! admit, and append what happened to the audit log.
//!
//! Audited: every call that is not a GET (whatever its outcome, refusals included) but a
//! successful heartbeat, and every GET whose handler marks the response with an [`AuditNote`]
//! because it disclosed personal data. The audit record names the route template as the action and the concrete path (or the
//! handler's target, e.g. a new application id) as the target; neither holds personal data.
//! Records go through the [`AuditWriter`](super::audit_writer::AuditWriter), which commits
//! concurrent calls' records together; a call is answered after its record is committed.

use super::problem::{ApiError, ProblemEntry};
use super::{Access, AppState};
use crate::audit::AuditEntry;
use crate::auth::{AuthenticateError, Role};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What a handler adds to the audit record of its call.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// The object acted on, when the path does not name it (a new application's id).
    pub target: Option<String>,
    /// A short, masked description of what happened.
    pub detail: String,
    /// The response disclosed personal data (masked or not): audited even for a GET.
    pub discloses_personal_data: bool,
    /// An export whose record proves what its reader was given (its SHA-256 in `detail`):
    /// audited even for a GET.
    pub export: bool,
    /// The handler already appended the record, in the transaction of the change itself.
    pub recorded: bool,
    /// A routine call that changes nothing but a liveness time (a heartbeat): not audited when
    /// it succeeds, since a record per system per minute would bury the log. Refusals are.
    pub routine: bool,
}

impl AuditNote {
    pub fn new(detail: impl Into<String>) -> AuditNote {
        AuditNote {
            target: None,
            detail: detail.into(),
            discloses_personal_data: false,
            export: false,
            recorded: false,
            routine: false,
        }
    }

    pub fn export(mut self) -> AuditNote {
        self.export = true;
        self
    }

    pub fn routine(mut self) -> AuditNote {
        self.routine = true;
        self
    }

    pub fn recorded(mut self) -> AuditNote {
        self.recorded = true;
        self
    }

    pub fn discloses(mut self) -> AuditNote {
        self.discloses_personal_data = true;
        self
    }

    pub fn on(mut self, target: impl Into<String>) -> AuditNote {
        self.target = Some(target.into());
        self
    }
}

/// A caller already proven by the console's session: the console calls the API in-process on
/// its signed-in user's behalf with this in the request's extensions (which nothing from the
/// network can set), and the guard takes it instead of an `Authorization` header, deciding
/// access and auditing exactly as for any other caller.
#[derive(Debug, Clone)]
pub struct Delegated(pub crate::auth::Principal);

/// One route's guard: its access rule and what to call it in the audit log.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let Access::Roles(roles) = g.access else {
        return next.run(req).await;
    };
    let audited = g.method != Method::GET;
    let action = format!("{} {}", g.method, g.path);
    let target = req.uri().path().to_string();
    let delegated = req.extensions_mut().remove::<Delegated>();
    let principal = match delegated {
        Some(Delegated(principal)) => principal,
        None => match authenticate(&g, req.headers(), audited, &action, &target).await {
            Ok(principal) => principal,
            Err(refused) => return refused,
        },
    };
    if !g.access.admits(&principal.roles) {
        let reason = format!(
            "{action} is for {}; this caller is {}",
            names(roles),
            if principal.roles.is_empty() {
                "without a role".to_string()
            } else {
                names(&principal.roles)
            }
        );
        if audited {
            append(
                &g.state,
                &principal.actor,
                &action,
                &target,
                "refused 403",
                &reason,
            )
            .await;
        }
        return ApiError::Forbidden(reason).into_response();
    }
    let actor = principal.actor.clone();
    req.extensions_mut().insert(principal);
    let response = next.run(req).await;
    let note = response.extensions().get::<AuditNote>().cloned();
    if note.as_ref().is_some_and(|n| n.recorded || n.routine) {
        return response;
    }
    if audited
        || note
            .as_ref()
            .is_some_and(|n| n.discloses_personal_data || n.export)
    {
        let note = note.unwrap_or_default();
        let target = note.target.as_deref().unwrap_or(&target);
        let outcome = outcome(response.status());
        append(&g.state, &actor, &action, target, &outcome, &note.detail).await;
    }
    response
}

/// The caller the request's `Authorization` header proves, or the answer refusing it (audited
/// when the call would be).
async fn authenticate(
    g: &Guard,
    headers: &HeaderMap,
    audited: bool,
    action: &str,
    target: &str,
) -> Result<crate::auth::Principal, Response> {
    let authorization = match single_header(headers, "Authorization") {
        Ok(value) => value,
        Err(problem) => {
            if audited {
                let detail = "Authorization is given more than once";
                append(
                    &g.state,
                    "anonymous",
                    action,
                    target,
                    "rejected 400",
                    detail,
                )
                .await;
            }
            return Err(problem.into_response());
        }
    };
    let principal = match g.state.auth.authenticate(authorization).await {
        Ok(p) => p,
        Err(AuthenticateError::IdentityUnavailable) => {
            let problem = ApiError::IdentityUnavailable(
                "a staff token cannot be checked: the identity system's keys are not available"
                    .into(),
            );
            if audited {
                let detail = problem.to_string();
                append(&g.state, "anonymous", action, target, "failed 503", &detail).await;
            }
            return Err(problem.into_response());
        }
        Err(AuthenticateError::Unauthenticated(why)) => {
            let reason = why.to_string();
            if audited {
                append(
                    &g.state,
                    "anonymous",
                    action,
                    target,
                    "refused 401",
                    &reason,
                )
                .await;
            }
            return Err(ApiError::Unauthorized(reason).into_response());
        }
        Err(AuthenticateError::Store(e)) => return Err(ApiError::from(e).into_response()),
    };
    Ok(principal)
}

/// The one value of header `name`, if given. Given twice it is ambiguous (which one holds?),
/// so 400 rather than the first winning. A value that is not ASCII becomes `""`, which no
/// credential is.
pub(super) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::Invalid(vec![ProblemEntry::header(
            name,
            "is given more than once; send it once",
        )]));
    }
    Ok(first.map(|v| v.to_str().unwrap_or_default()))
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `ok 202`, `refused 403`, `rejected 400`, `failed 503`.
fn outcome(status: StatusCode) -> String {
    let class = match status.as_u16() {
        200..=399 => "ok",
        401 | 403 => "refused",
        400..=499 => "rejected",
        _ => "failed",
    };
    format!("{class} {}", status.as_u16())
}

pub(super) async fn append(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
) {
    let entry = AuditEntry {
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        detail: detail.to_string(),
    };
    if let Err(e) = state.audit.append(entry).await {
        // The call itself has happened (or been refused); the gap is loud in the log and in
        // `tongban audit verify`'s count against the request metrics.
        tracing::error!(action = %action, cause = %e, "cannot append to the audit log");
    }
}
