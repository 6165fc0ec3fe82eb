//! The OpenAPI description is complete and honest: every route the router serves is described,
//! every described operation is served, every operation documents its problem+json errors, and
//! each operation's security and `x-roles` say exactly who the route admits.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use tongban::api::{self, Access, AppState};
use tongban::auth::Role;
use tower::ServiceExt;

struct Served {
    router: axum::Router,
    system: String,
    _store: common::TestStore,
    _signer: common::TestSigner,
}

async fn served() -> Served {
    let t = common::sqlite_store().await;
    let signer = common::test_signer();
    let state = AppState::new(
        Arc::new(common::config()),
        t.store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    // The least privileged kind of caller: the description is for every authenticated one.
    let system = common::api_key(&t.store, Role::System, Some("sy-scjg-food")).await;
    Served {
        router: api::router(state),
        system,
        _store: t,
        _signer: signer,
    }
}

async fn fetch(router: &axum::Router, authorization: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get("/api/v1/openapi.json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn served_document() -> Value {
    let s = served().await;
    let (status, doc) = fetch(&s.router, Some(&common::bearer(&s.system))).await;
    assert_eq!(status, StatusCode::OK, "{doc:#}");
    doc
}

/// Every operation: (METHOD, path template, operation object).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method != "parameters" {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

fn described(doc: &Value) -> BTreeSet<(String, String)> {
    operations(doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

#[tokio::test]
async fn every_route_is_described_and_every_description_is_served() {
    let doc = served_document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let served: BTreeSet<(String, String)> = api::routes()
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    let described = described(&doc);
    let undocumented: Vec<_> = served.difference(&described).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    let phantom: Vec<_> = described.difference(&served).collect();
    assert!(phantom.is_empty(), "described but not served: {phantom:?}");
}

#[tokio::test]
async fn the_description_is_for_authenticated_callers_only() {
    let s = served().await;
    let (status, body) = fetch(&s.router, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:#}");
    assert_eq!(body["status"], 401);
}

#[tokio::test]
async fn every_reference_resolves_and_errors_are_problem_json() {
    let doc = served_document().await;
    assert!(
        doc["components"]["schemas"]["Item"]["properties"]["code"].is_object(),
        "the item schema is embedded"
    );
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"$ref\":\"#/components/") {
        let rest = &text[i + 8..];
        // `rest` is `#/components/…"`: the pointer is what follows the `#`.
        let target = &rest[1..rest.find('"').unwrap()];
        assert!(doc.pointer(target).is_some(), "dangling reference {target}");
    }
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has responses"));
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path} documents success"
        );
        if path.starts_with("/api/v1/catalog") {
            assert!(
                responses.contains_key("400"),
                "{method} {path} documents 400"
            );
            assert!(
                responses.contains_key("500"),
                "{method} {path} documents 500"
            );
        }
        // Operations that read a body; a heartbeat's is ignored, so it is never too large.
        if (method == "PUT" || method == "POST") && op.get("requestBody").is_some() {
            for status in ["413", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} documents {status}"
                );
            }
        }
    }
}

/// The security requirements that apply to an operation: its own, or the document's.
fn requirements<'a>(doc: &'a Value, op: &'a Value) -> &'a Vec<Value> {
    op.get("security")
        .unwrap_or(&doc["security"])
        .as_array()
        .expect("security is an array")
}

#[tokio::test]
async fn security_and_roles_match_each_routes_access_rule() {
    let doc = served_document().await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(
        schemes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["apiKey", "staffToken"]
    );
    for scheme in schemes.values() {
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
    }
    let text = doc.to_string();
    assert!(
        !text.contains("SHA-256 hub.toml") && !text.contains("\"platform\":[]"),
        "the old platform credential is gone from the description"
    );

    let routes = api::routes();
    for (method, path, op) in operations(&doc) {
        let route = routes
            .iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not served"));
        let required = requirements(&doc, op);
        let responses = op["responses"].as_object().unwrap();
        match route.access {
            Access::Public => {
                assert!(
                    required.is_empty(),
                    "{method} {path} is public: `security: []`"
                );
                assert!(op.get("x-roles").is_none(), "{method} {path} is public");
                assert!(
                    !responses.contains_key("401"),
                    "{method} {path} is public: no 401"
                );
            }
            Access::Roles(allowed) => {
                let roles: Vec<&str> = op["x-roles"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} lists its x-roles"))
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let expected: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                assert_eq!(roles, expected, "{method} {path}: x-roles");
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
                // Each alternative names only known schemes, and staff tokens are offered
                // exactly when a staff role may call: tokens never grant platform or system.
                let offered: BTreeSet<&str> = required
                    .iter()
                    .flat_map(|alt| alt.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect();
                assert!(
                    offered.iter().all(|s| schemes.contains_key(*s)),
                    "{method} {path}: {offered:?}"
                );
                assert!(offered.contains("apiKey"), "{method} {path}: {offered:?}");
                assert_eq!(
                    offered.contains("staffToken"),
                    allowed.iter().any(|r| r.is_staff()),
                    "{method} {path}: {offered:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn submitting_documents_the_users_token_and_why_it_may_be_refused() {
    let doc = served_document().await;
    let submit = &doc["paths"]["/api/v1/applications"]["post"];
    let token = submit["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Tongban-User-Token")
        .expect("the user token header is described");
    assert_eq!(token["in"], "header");
    assert_eq!(token["required"], true);
    let forbidden = submit["responses"]["403"]["description"].as_str().unwrap();
    assert!(forbidden.contains("real-name level"), "{forbidden}");
    let challenge = &doc["components"]["responses"]["Unauthorized"]["headers"];
    assert!(challenge["WWW-Authenticate"].is_object(), "{challenge:#}");
}

/// The code lists the description spells out for query parameters are the model's, code for
/// code: a code added to a list (a new rule, a new level) cannot be missing from what clients
/// are told they may ask for.
#[tokio::test]
async fn parameters_that_take_a_code_list_offer_exactly_its_codes() {
    use tongban::model::{Code, FeedKind, Level, Rule};
    fn codes<T: Code>() -> Value {
        Value::from(T::all().iter().map(|c| c.code()).collect::<Vec<_>>())
    }
    let doc = served_document().await;
    let enum_of = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"]["enum"].clone())
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
    };
    assert_eq!(
        enum_of("/api/v1/supervision/stream", "kind"),
        codes::<FeedKind>()
    );
    assert_eq!(
        enum_of("/api/v1/supervision/stream", "level"),
        codes::<Level>()
    );
    assert_eq!(
        enum_of("/api/v1/supervision/alerts", "rule"),
        codes::<Rule>()
    );
    assert_eq!(
        enum_of("/api/v1/supervision/alerts", "level"),
        codes::<Level>()
    );
}
