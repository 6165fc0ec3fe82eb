//! The OpenAPI description is complete: every route the router serves is described, every
//! described operation is served, and every operation documents its problem+json errors.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use tongban::api::{self, AppState};
use tower::ServiceExt;

async fn served_document() -> Value {
    let t = common::sqlite_store().await;
    let config = common::config();
    let router = api::router(AppState::new(Arc::new(config), t.store.clone()));
    let response = router
        .oneshot(
            Request::get("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if method != "parameters" {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
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
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
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
            if method == "put" || method == "post" {
                for status in ["413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
            }
        }
    }
}
