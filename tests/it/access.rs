//! The access table in README.md, walked in full: every endpoint with every role (and no
//! credential at all), asserting allowed or refused, 401 versus 403, and for `own` cells that a
//! system is refused for another system's resources. The table and the routes' declared access
//! must also agree in both directions, so neither can change without the other.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tongban::api;
use tongban::auth::Role;

const OWN_SYSTEM: &str = "sy-scjg-food";
const OTHER_SYSTEM: &str = "ln-rst-card";

/// What a cell of the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Yes,
    No,
    /// Allowed for the caller's own system only.
    Own,
}

/// `(method, path) → [anonymous, platform, system, reviewer, finance, supervisor, admin]`.
fn readme_table() -> BTreeMap<(String, String), Vec<Cell>> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let header = "| method | path | anonymous | platform | system | reviewer | finance | supervisor | admin |";
    let start = readme
        .find(header)
        .expect("README.md has the access table with its header");
    let mut table = BTreeMap::new();
    for line in readme[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        assert_eq!(cells.len(), 9, "a row of the access table: {line}");
        let access = cells[2..]
            .iter()
            .map(|c| match *c {
                "yes" => Cell::Yes,
                "no" => Cell::No,
                "own" => Cell::Own,
                other => panic!("unknown cell `{other}` in {line}"),
            })
            .collect();
        let previous = table.insert((cells[0].to_string(), cells[1].to_string()), access);
        assert!(previous.is_none(), "a route is listed twice: {line}");
    }
    table
}

const ROLES: [Option<Role>; 7] = [
    None,
    Some(Role::Platform),
    Some(Role::System),
    Some(Role::Reviewer),
    Some(Role::Finance),
    Some(Role::Supervisor),
    Some(Role::Admin),
];

#[test]
fn the_readme_table_and_the_routes_declared_access_agree() {
    let table = readme_table();
    let routes = api::routes();
    let mut declared = BTreeMap::new();
    for route in &routes {
        let key = (route.method.to_string(), route.path.to_string());
        let row = table
            .get(&key)
            .unwrap_or_else(|| panic!("README's access table lacks {} {}", key.0, key.1));
        for (role, cell) in ROLES.iter().zip(row) {
            let admits = match role {
                None => route.access == api::Access::Public,
                Some(role) => route.access.admits(&[*role]),
            };
            // `own` rows are admitted by the route and narrowed by the handler.
            assert_eq!(
                admits,
                *cell != Cell::No,
                "{} {} for {role:?}: README says {cell:?}, the route declares {:?}",
                key.0,
                key.1,
                route.access
            );
        }
        declared.insert(key, ());
    }
    for key in table.keys() {
        assert!(
            declared.contains_key(key),
            "README's access table lists {} {}, which the hub does not serve",
            key.0,
            key.1
        );
    }
}

struct World {
    served: TestApi,
    issuer: Issuer,
    /// A credential per role (the system one belongs to OWN_SYSTEM).
    credentials: BTreeMap<Role, String>,
    /// A key of OTHER_SYSTEM, for `own` cells.
    other_system: String,
    application: Value,
    /// An application delivered to OWN_SYSTEM.
    application_id: String,
}

async fn world() -> World {
    let issuer = Issuer::new();
    let served = TestApi::new(&issuer).await;
    let store = &served.store;
    let mut credentials = BTreeMap::new();
    for role in [Role::Platform, Role::System, Role::Admin] {
        let system = (role == Role::System).then_some(OWN_SYSTEM);
        credentials.insert(role, common::api_key(store, role, system).await);
    }
    // Staff roles by staff token, as the identity system issues them.
    for role in [Role::Reviewer, Role::Finance, Role::Supervisor] {
        credentials.insert(
            role,
            issuer.staff_token(&format!("staff-{}", role.as_str()), &[role.as_str()]),
        );
    }
    let other_system = common::api_key(store, Role::System, Some(OTHER_SYSTEM)).await;
    let mut w = World {
        served,
        issuer,
        credentials,
        other_system,
        application: common::scjg_application(),
        application_id: String::new(),
    };
    let platform = w.credentials[&Role::Platform].clone();
    let (status, body) = w
        .call(Method::POST, "/api/v1/applications", Some(&platform))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    assert_eq!(body["system"], OWN_SYSTEM);
    w.application_id = body["id"].as_str().unwrap().to_string();
    // A result OWN_SYSTEM shared, for the routes about one.
    w.served
        .store
        .record_result(&tongban::store::ResultToRecord {
            system_id: OWN_SYSTEM,
            license_id: LICENSE_ID,
            license_key: "1.2.156.3005.2.11100000000013338W024.11210100MB1529370K.JY22101020001234",
            version: 1,
            application_id: &w.application_id,
            body: "{}",
            supersedes: None,
            state: tongban::model::ResultState::Valid,
            seal: None,
            holder_key: None,
            license_type: None,
            feed: None,
        })
        .await
        .unwrap();
    w
}

/// The e-license id of the result OWN_SYSTEM shared.
const LICENSE_ID: &str =
    "1.2.156.3005.2.11100000000013338W024.11210100MB1529370K.JY22101020001234.001.B";

impl World {
    /// A concrete path for a route template.
    async fn path(&self, template: &str) -> String {
        let item = self.application["item"]["code"].as_str().unwrap();
        let mut path = template
            .replace("{code}", item)
            .replace("/systems/{id}", &format!("/systems/{OWN_SYSTEM}"));
        path = path.replace("{license_id}", LICENSE_ID);
        if template.starts_with("/api/v1/applications/") {
            path = path.replace("{id}", &self.application_id);
        }
        if template == "/api/v1/dead-letters" || template == "/api/v1/onboarding/requests" {
            // Naming the system makes the scope visible: another system asking for it is refused.
            path = format!("{path}?system={OWN_SYSTEM}");
        }
        if template == "/api/v1/supervision/stream" || template == "/api/v1/results/stream" {
            // A stream that ends after the backlog, so that the call returns.
            path = format!("{path}?follow=false");
        }
        if template.starts_with("/api/v1/dead-letters/") {
            path = path.replace("{id}", &format!("{}~1", self.application_id));
        }
        if template.starts_with("/api/v1/onboarding/requests/") {
            // A request of OWN_SYSTEM's, refused at submission (so no decision can apply).
            let id = format!("OB-walk-{}", tongban::clock::now_millis());
            let record = tongban::store::OnboardingRecord {
                id: id.clone(),
                system_id: OWN_SYSTEM.into(),
                department_uscc: String::new(),
                submitted_by: "test".into(),
                submitted_at: tongban::clock::now_millis(),
                bundle: "{}".into(),
                state: tongban::model::OnboardingState::Refused,
                checks: "{}".into(),
                probes: None,
                probed_at: None,
                decided_by: None,
                decided_at: None,
                decision: None,
                reasons: None,
                note: None,
                generation: None,
            };
            let feed = tongban::store::FeedText {
                body: "{}".into(),
                routing_key: format!("onboarding.{OWN_SYSTEM}.refused"),
                department: String::new(),
                item_code: String::new(),
            };
            assert!(
                self.served
                    .store
                    .insert_onboarding(&record, &feed)
                    .await
                    .unwrap()
            );
            path = path.replace("{id}", &id);
        }
        if template.starts_with("/api/v1/keys/") {
            // Each call revokes a key made for it.
            let issued = tongban::auth::issue_key(Role::Finance, None, "to revoke", "test", None);
            self.served
                .store
                .insert_api_key(&issued.record)
                .await
                .unwrap();
            path = path.replace("{id}", &issued.record.key_id);
        }
        path
    }

    /// A body that passes for the route, so that an allowed call gets past validation where it
    /// can.
    fn body(&self, method: &Method, path: &str) -> Option<Value> {
        match (method.as_str(), path) {
            ("POST", "/api/v1/applications") => Some(self.application.clone()),
            ("POST", "/api/v1/keys") => Some(json!({"role": "finance", "label": "walk"})),
            ("POST", "/api/v1/sharing/queries") => Some(json!({
                "holder": { "id_type": "001", "id_number": "91210102MA0Y7K3L23" },
                "license_type": "11100000000013338W024",
                "purpose": "license-check",
            })),
            ("PUT", p) if p.starts_with("/api/v1/catalog/items/") => Some(json!({})),
            ("POST", p) if p.starts_with("/api/v1/onboarding/requests?") => Some(json!({
                "system": OWN_SYSTEM,
                "files": { format!("adapters/{OWN_SYSTEM}.toml"): "id = \"unfinished\"" },
            })),
            _ => None,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        credential: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method.clone()).uri(path);
        if let Some(credential) = credential {
            // The user's token too: routes that act for a user need it besides the caller's
            // credential, and the others ignore it.
            request = request
                .header("authorization", common::bearer(credential))
                .header(
                    "tongban-user-token",
                    self.issuer.token_for(&self.application, 3),
                );
        }
        let body = match self.body(&method, path) {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None if method == Method::POST => {
                // Webhooks and replays: a system's own document; it may be refused as
                // content, but only after access was granted.
                request = request.header("content-type", "application/xml");
                Body::from("<event/>")
            }
            None => Body::empty(),
        };
        self.served.send(request.body(body).unwrap()).await
    }
}

#[tokio::test]
async fn every_endpoint_with_every_role_is_allowed_or_refused_as_the_readme_says() {
    let w = world().await;
    let table = readme_table();
    let mut checked = 0;
    for ((method, template), row) in &table {
        let method: Method = method.parse().unwrap();
        for (role, cell) in ROLES.iter().zip(row) {
            let path = w.path(template).await;
            let credential = role.map(|r| w.credentials[&r].as_str());
            let (status, body) = w.call(method.clone(), &path, credential).await;
            let who = role.map(|r| r.as_str()).unwrap_or("anonymous");
            match cell {
                Cell::Yes | Cell::Own => {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{method} {path} as {who} must be allowed, got {status}: {body}"
                    );
                    assert!(
                        !status.is_server_error(),
                        "{method} {path} as {who}: {status}: {body}"
                    );
                }
                Cell::No if role.is_none() => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} without a credential: {body}"
                ),
                Cell::No => assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {who} must be refused: {body}"
                ),
            }
            if *cell == Cell::Own {
                // The same call by another system: refused.
                let (status, body) = w.call(method.clone(), &path, Some(&w.other_system)).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} by another system must be refused: {body}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, table.len() * ROLES.len());
}

#[tokio::test]
async fn bad_credentials_get_401_and_revoked_or_expired_keys_stop_working() {
    let w = world().await;
    let path = "/api/v1/catalog/items";
    for bad in [
        "tbk_0000_nothing".to_string(),
        format!("{}x", w.credentials[&Role::Admin]),
        "not-a-token".to_string(),
        // A staff token of a stranger's issuer.
        Issuer::new().staff_token("intruder", &["admin"]),
        // A user's token is not a staff token (wrong audience).
        w.issuer.token_for(&w.application, 3),
    ] {
        let (status, body) = w.call(Method::GET, path, Some(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
    // A staff token without a known role authenticates but may do nothing.
    let roleless = w
        .issuer
        .staff_token("nobody", &["platform", "system", "janitor"]);
    let (status, body) = w.call(Method::GET, path, Some(&roleless)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Revoked through the API: refused at once.
    let admin = w.credentials[&Role::Admin].clone();
    let (status, issued) = w.call(Method::POST, "/api/v1/keys", Some(&admin)).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let secret = issued["secret"].as_str().unwrap().to_string();
    let (status, _) = w.call(Method::GET, path, Some(&secret)).await;
    assert_eq!(status, StatusCode::OK);
    let key_id = issued["key_id"].as_str().unwrap();
    let (status, _) = w
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{key_id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = w.call(Method::GET, path, Some(&secret)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("revoked"));

    // Expired.
    let mut expired = tongban::auth::issue_key(Role::Platform, None, "old", "test", None);
    expired.record.expires_at = Some(tongban::clock::now_millis() - 1);
    w.served
        .store
        .insert_api_key(&expired.record)
        .await
        .unwrap();
    let (status, body) = w.call(Method::GET, path, Some(&expired.secret)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    // The listing never shows a secret or its hash.
    let (_, keys) = w.call(Method::GET, "/api/v1/keys", Some(&admin)).await;
    let text = keys.to_string();
    assert!(
        !text.contains(&secret) && !text.contains("sha256"),
        "{text}"
    );
}

#[tokio::test]
async fn refusals_and_state_changes_are_audited_with_who_and_outcome() {
    let w = world().await;
    let admin = w.credentials[&Role::Admin].clone();
    let reviewer = w.credentials[&Role::Reviewer].clone();
    // A refused write and an anonymous one.
    let (status, _) = w.call(Method::POST, "/api/v1/keys", Some(&reviewer)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = w.call(Method::POST, "/api/v1/keys", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A read of personal data.
    let path = format!("/api/v1/applications/{}", w.application_id);
    let platform = w.credentials[&Role::Platform].clone();
    let (status, _) = w.call(Method::GET, &path, Some(&platform)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, audit) = w
        .call(Method::GET, "/api/v1/audit?limit=1000", Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let records = audit["records"].as_array().unwrap();
    let find = |action: &str, outcome: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["outcome"].as_str().unwrap().starts_with(outcome))
    };
    let accepted = find("POST /api/v1/applications", "ok 202").expect("the submission");
    assert_eq!(
        accepted["target"],
        format!("/api/v1/applications/{}", w.application_id)
    );
    assert!(accepted["actor"].as_str().unwrap().starts_with("key:"));
    let refused = find("POST /api/v1/keys", "refused 403").expect("the reviewer's refusal");
    assert_eq!(refused["actor"], "staff:staff-reviewer");
    assert!(find("POST /api/v1/keys", "refused 401").is_some());
    assert!(find("GET /api/v1/applications/{id}", "ok 200").is_some());
    // No clear personal data in the audit text.
    let text = audit.to_string();
    for member in ["id_number", "name"] {
        let value = w.application["applicant"][member].as_str().unwrap();
        assert!(
            !text.contains(value),
            "the audit log holds the applicant's {member}"
        );
    }
    // And the chain holds.
    let verification = tongban::audit::verify(&w.served.store.audit_records().await.unwrap());
    assert!(
        verification.findings.is_empty(),
        "{:?}",
        verification.findings
    );
}

#[tokio::test]
async fn a_heartbeat_counts_for_its_own_system_only_and_is_audited_only_when_refused() {
    let w = world().await;
    let path = format!("/api/v1/systems/{OWN_SYSTEM}/heartbeat");
    let own = w.credentials[&Role::System].clone();
    let before = tongban::clock::now_millis();
    let (status, body) = w.call(Method::POST, &path, Some(&own)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["system"], OWN_SYSTEM);
    let beats = w.served.store.systems_last_heartbeat().await.unwrap();
    assert_eq!(beats.len(), 1, "{beats:?}");
    assert_eq!(beats[0].0, OWN_SYSTEM);
    assert!(beats[0].1 >= before);
    assert_eq!(
        body["seen_at"],
        tongban::clock::format_millis(beats[0].1),
        "the answer says when"
    );

    // Another system cannot speak for it; a system the hub does not connect is not found.
    let (status, _) = w.call(Method::POST, &path, Some(&w.other_system)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let stranger = common::api_key(&w.served.store, Role::System, Some("sy-nowhere")).await;
    let (status, body) = w
        .call(
            Method::POST,
            "/api/v1/systems/sy-nowhere/heartbeat",
            Some(&stranger),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        w.served.store.systems_last_heartbeat().await.unwrap(),
        beats
    );

    let heartbeats: Vec<String> = w
        .served
        .store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "POST /api/v1/systems/{id}/heartbeat")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(heartbeats.len(), 2, "{heartbeats:?}");
    assert!(heartbeats[0].starts_with("refused 403"), "{heartbeats:?}");
    assert!(heartbeats[1].contains("404"), "{heartbeats:?}");
}

#[tokio::test]
async fn concurrent_refusals_share_commits_and_each_is_audited_in_one_chain() {
    let w = world().await;
    let (commits_before, records_before) = w.served.audit.written();
    const CALLS: u64 = 64;
    // All queued before the writer runs (one thread): they must go out in one or two commits,
    // where one commit each would let an anonymous flood make the hub fsync per request.
    let answers = futures_util::future::join_all(
        (0..CALLS).map(|_| w.call(Method::POST, "/api/v1/keys", None)),
    )
    .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED),
        "{answers:?}"
    );
    let (commits, records) = w.served.audit.written();
    assert_eq!(records - records_before, CALLS, "every refusal is recorded");
    assert!(
        commits - commits_before <= 2,
        "{} commits for {CALLS} records",
        commits - commits_before
    );
    let stored = w.served.store.audit_records().await.unwrap();
    let refused = stored
        .iter()
        .filter(|r| r.action == "POST /api/v1/keys" && r.outcome == "refused 401")
        .count();
    assert_eq!(refused as u64, CALLS);
    let verification = tongban::audit::verify(&stored);
    assert!(
        verification.findings.is_empty(),
        "{:?}",
        verification.findings
    );
    assert!(
        stored.windows(2).all(|p| p[1].seq == p[0].seq + 1),
        "gapless"
    );
}
