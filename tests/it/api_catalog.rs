//! The catalog API through the router, without a socket: versions, validation that lists every
//! problem, size and media-type limits, filters, the change feed, who may read and write the
//! catalog, and operations endpoints.
//!
//! Requests carry the platform's API key unless a test says otherwise, since every `/api/v1`
//! route needs a credential and the platform is the one role that may both read and write.

use crate::common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tongban::api::{self, AppState};
use tongban::auth::Role;
use tower::ServiceExt;

struct Api {
    router: Router,
    state: AppState,
    /// The platform's API key: reads and writes the catalog.
    platform: String,
    /// A department system's API key: reads the catalog only.
    system: String,
    /// A trusted identity issuer, for staff tokens.
    issuer: common::Issuer,
    _store: common::TestStore,
    _signer: common::TestSigner,
}

async fn api() -> Api {
    let t = common::sqlite_store().await;
    let issuer = common::Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    // No broker: readiness here is the store's and the identity system's (tests/it/readiness.rs
    // checks brokers).
    config.hub.broker = None;
    let signer = common::test_signer();
    let mut state = AppState::new(
        Arc::new(config),
        t.store.clone(),
        signer.signer.clone(),
        signer.sealer.clone(),
    );
    state.body_limit = 64 * 1024;
    let platform = common::api_key(&t.store, Role::Platform, None).await;
    let system = common::api_key(&t.store, Role::System, Some("sy-scjg-food")).await;
    Api {
        router: api::router(state.clone()),
        state,
        platform,
        system,
        issuer,
        _store: t,
        _signer: signer,
    }
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl Api {
    /// Sends `request` with the platform's key, unless it carries an `Authorization` already.
    async fn call(&self, mut request: Request<Body>) -> Reply {
        if !request.headers().contains_key(header::AUTHORIZATION) {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                common::bearer(&self.platform).parse().unwrap(),
            );
        }
        self.send(request).await
    }

    /// Sends `request` as it is: without a credential unless it has one.
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// A GET with `authorization` as the whole header value, or none.
    async fn get_with(&self, uri: &str, authorization: Option<&str>) -> Reply {
        let mut request = Request::get(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A PUT of JSON with `authorization` as the whole header value, or none.
    async fn put_json_with(&self, uri: &str, body: &Value, authorization: Option<&str>) -> Reply {
        let mut request = Request::put(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn put_json(&self, uri: &str, body: &Value) -> Reply {
        self.call(
            Request::put(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

fn item_uri(item: &Value) -> String {
    format!("/api/v1/catalog/items/{}", item["code"].as_str().unwrap())
}

fn pointers(reply: &Reply) -> Vec<String> {
    let mut p: Vec<String> = reply.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("problem has errors: {}", reply.text))
        .iter()
        .map(|e| {
            e["pointer"]
                .as_str()
                .or(e["parameter"].as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    p.sort();
    p
}

fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(
        reply.body["type"]
            .as_str()
            .unwrap()
            .starts_with("/problems/")
    );
}

#[tokio::test]
async fn an_item_with_three_schema_violations_gets_one_answer_listing_all_three() {
    let api = api().await;
    let mut item = common::sample_item();
    item["type"] = json!("99");
    item["statutory_limit"]["unit"] = json!("days");
    item.as_object_mut().unwrap().remove("name");
    let reply = api.put_json(&item_uri(&item), &item).await;
    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&reply), vec!["", "/statutory_limit/unit", "/type"]);
    let messages = reply.text.clone();
    assert!(
        messages.contains("name"),
        "the missing property is named: {messages}"
    );
    assert_eq!(
        api.get(&item_uri(&item)).await.status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );
}

#[tokio::test]
async fn cross_field_rules_and_the_url_are_checked_together() {
    let api = api().await;
    let mut item = common::sample_item();
    let other_code = common::example_items()[5]["code"].clone();
    let uri = format!("/api/v1/catalog/items/{}", other_code.as_str().unwrap());
    item["department"]["uscc"] = json!("11370800MB28559184");
    item["basic_code"] = json!("ABCDEFGHJKLM");
    item["promised_limit"] = item["statutory_limit"].clone();
    item["promised_limit"]["value"] = json!(item["statutory_limit"]["value"].as_u64().unwrap() + 1);
    let reply = api.put_json(&uri, &item).await;
    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(
        pointers(&reply),
        vec![
            "/basic_code",
            "/code",
            "/department/uscc",
            "/promised_limit/value"
        ]
    );
}

#[tokio::test]
async fn identifier_formats_are_enforced_by_the_schema() {
    let api = api().await;
    let mut item = common::sample_item();
    let uri = item_uri(&item);
    item["department"]["uscc"] = json!("11370800MB28559185");
    let reply = api.put_json(&uri, &item).await;
    assert_problem(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&reply), vec!["/department/uscc"]);
    assert!(
        !reply.text.contains("11370800MB28559185"),
        "values are not echoed"
    );
}

#[tokio::test]
async fn versions_etags_conflicts_and_the_change_feed() {
    let api = api().await;
    let mut item = common::sample_item();
    let uri = item_uri(&item);

    let created = api.put_json(&uri, &item).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.headers[header::LOCATION], uri.as_str());
    assert_eq!(created.headers[header::ETAG], "\"1\"");
    assert_eq!(created.body["version"], 1);
    assert!(
        created.body["updated_at"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );

    let same = api.put_json(&uri, &item).await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.body["version"], 1, "same content is the same version");

    item["name"] = json!(format!("{}（新）", item["name"].as_str().unwrap()));
    let updated = api.put_json(&uri, &item).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["version"], 2);

    let current = api.get(&uri).await;
    assert_eq!(current.body["version"], 2);
    assert_eq!(current.body["name"], item["name"]);
    let first = api.get(&format!("{uri}?version=1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["version"], 1);
    assert_ne!(first.body["name"], item["name"]);
    assert_problem(
        &api.get(&format!("{uri}?version=9")).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &api.get(&format!("{uri}?version=zero")).await,
        StatusCode::BAD_REQUEST,
    );

    // A change based on version 1 while 2 is current.
    item["version"] = json!(1);
    item["name"] = json!("又一个名字");
    let conflict = api.put_json(&uri, &item).await;
    assert_problem(&conflict, StatusCode::CONFLICT);
    let stale = api
        .call(
            Request::put(&uri)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::IF_MATCH, "\"1\"")
                .body(Body::from(item.to_string()))
                .unwrap(),
        )
        .await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    item["version"] = json!(2);
    let based = api.put_json(&uri, &item).await;
    assert_eq!(based.status, StatusCode::OK, "{}", based.text);
    assert_eq!(based.body["version"], 3);

    let feed = api.get("/api/v1/catalog/changes?after=0").await;
    let changes = feed.body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["kind"], "created");
    assert_eq!(changes[1]["changed"], json!(["name"]));
    assert_eq!(feed.body["next_after"], changes[2]["seq"]);
    let rest = api
        .get(&format!(
            "/api/v1/catalog/changes?after={}",
            changes[1]["seq"]
        ))
        .await;
    assert_eq!(rest.body["changes"].as_array().unwrap().len(), 1);
    let none = api
        .get(&format!(
            "/api/v1/catalog/changes?after={}",
            feed.body["next_after"]
        ))
        .await;
    assert_eq!(none.body["changes"], json!([]));
    assert_eq!(none.body["next_after"], feed.body["next_after"]);
}

#[tokio::test]
async fn bodies_too_large_not_json_or_malformed_are_refused_clearly() {
    let api = api().await;
    let item = common::sample_item();
    let uri = item_uri(&item);

    let mut big = item.clone();
    big["name"] = json!("名".repeat(40_000));
    let too_large = api.put_json(&uri, &big).await;
    assert_problem(&too_large, StatusCode::PAYLOAD_TOO_LARGE);

    // Without a Content-Length the limit is enforced while reading.
    let streamed = api
        .call(
            Request::put(&uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(chunked(big.to_string().into_bytes()))
                .unwrap(),
        )
        .await;
    assert_problem(&streamed, StatusCode::PAYLOAD_TOO_LARGE);

    let xml = api
        .call(
            Request::put(&uri)
                .header(header::CONTENT_TYPE, "application/xml")
                .body(Body::from("<item/>"))
                .unwrap(),
        )
        .await;
    assert_problem(&xml, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let untyped = api
        .call(Request::put(&uri).body(Body::from("{}")).unwrap())
        .await;
    assert_problem(&untyped, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let malformed = api
        .call(
            Request::put(&uri)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Body::from("{\"code\": \"x\",,}"))
                .unwrap(),
        )
        .await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["type"], "/problems/malformed-json");
    assert!(malformed.text.contains("line 1"), "{}", malformed.text);

    let not_object = api.put_json(&uri, &json!([1, 2])).await;
    assert_problem(&not_object, StatusCode::BAD_REQUEST);
}

/// The bytes as a stream of 4 KiB chunks, so a body can be sent without a Content-Length.
fn chunked(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn listing_filters_pages_and_rejects_unknown_parameters() {
    let api = api().await;
    let items = common::example_items();
    for item in &items {
        let reply = api.put_json(&item_uri(item), item).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let uscc = items[0]["department"]["uscc"].as_str().unwrap();
    let expected = items
        .iter()
        .filter(|i| i["department"]["uscc"] == uscc)
        .count();
    let by_department = api
        .get(&format!("/api/v1/catalog/items?department={uscc}"))
        .await;
    assert_eq!(by_department.status, StatusCode::OK);
    assert_eq!(by_department.body["total"], expected);
    assert_eq!(
        by_department.body["items"].as_array().unwrap().len(),
        expected
    );

    let first = api.get("/api/v1/catalog/items?limit=10").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 10);
    let next = first.body["next_after"].as_str().unwrap();
    let second = api
        .get(&format!("/api/v1/catalog/items?limit=10&after={next}"))
        .await;
    assert!(second.body["items"][0]["code"].as_str().unwrap() > next);

    let by_type = api.get("/api/v1/catalog/items?type=07&limit=500").await;
    assert!(
        by_type.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] == "07")
    );
    assert_eq!(
        by_type.body["total"],
        items.iter().filter(|i| i["type"] == "07").count()
    );

    let bad = api
        .get("/api/v1/catalog/items?limit=0&type=99&color=red")
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&bad), vec!["color", "limit", "type"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let api = api().await;
    assert_problem(
        &api.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
    );
    let delete = api
        .call(
            Request::delete("/api/v1/catalog/items")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_problem(&delete, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let api = api().await;
    // Probes and metrics need no credential: orchestrators and Prometheus have none.
    assert_eq!(api.get_with("/healthz", None).await.status, StatusCode::OK);
    let ready = api.get_with("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(
        ready.body["checks"],
        serde_json::json!([
            { "name": "store", "required": true, "status": "ok" },
            { "name": "identity", "required": true, "status": "ok" },
        ])
    );
    api.get("/api/v1/catalog/items").await;
    api.get("/api/v1/catalog/items?limit=0").await;
    let metrics = api.get_with("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.text.contains(
        "tongban_http_requests_total{method=\"GET\",route=\"/api/v1/catalog/items\",status=\"200\"} 1"
    ), "{}", metrics.text);
    assert!(metrics.text.contains(
        "tongban_http_requests_total{method=\"GET\",route=\"/api/v1/catalog/items\",status=\"400\"} 1"
    ));
    assert!(metrics.text.contains(
        "tongban_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/catalog/items\"} 2"
    ));
}

#[tokio::test]
async fn a_store_failure_is_a_problem_that_leaks_no_internals() {
    let api = api().await;
    api.state.store.close().await;
    let ready = api.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert_eq!(ready.body["status"], "not_ready");
    assert_eq!(
        ready.body["checks"][0],
        serde_json::json!({
            "name": "store",
            "required": true,
            "status": "failing",
            "detail": "the store cannot commit"
        })
    );
    let list = api.get("/api/v1/catalog/items").await;
    assert!(list.status.is_server_error());
    assert_problem(&list, list.status);
    for leak in ["SELECT", "sqlx", "catalog_items", "/tmp", ".db"] {
        assert!(!list.text.contains(leak), "{leak} leaked: {}", list.text);
        assert!(!ready.text.contains(leak), "{leak} leaked: {}", ready.text);
    }
}

/// `Authorization: Bearer <secret>`.
fn auth(secret: &str) -> String {
    common::bearer(secret)
}

fn assert_unauthenticated(reply: &Reply, reason: &str) {
    assert_problem(reply, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[header::WWW_AUTHENTICATE],
        "Bearer",
        "a 401 says how to authenticate"
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(reason),
        "the reason should mention `{reason}`: {detail}"
    );
}

fn assert_forbidden(reply: &Reply, reason: &str) {
    assert_problem(reply, StatusCode::FORBIDDEN);
    assert!(
        !reply.headers.contains_key(header::WWW_AUTHENTICATE),
        "a 403 is not a challenge: the credential was valid"
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(reason),
        "the reason should mention `{reason}`: {detail}"
    );
}

#[tokio::test]
async fn anonymous_callers_get_401_with_a_challenge_on_reads_and_writes() {
    let api = api().await;
    let item = common::sample_item();
    let uri = item_uri(&item);
    for path in [
        "/api/v1/catalog/items",
        uri.as_str(),
        "/api/v1/catalog/changes",
        "/api/v1/openapi.json",
    ] {
        assert_unauthenticated(&api.get_with(path, None).await, "Authorization");
    }
    assert_unauthenticated(&api.put_json_with(&uri, &item, None).await, "Authorization");
    assert_eq!(
        api.get(&uri).await.status,
        StatusCode::NOT_FOUND,
        "the anonymous PUT stored nothing"
    );
}

#[tokio::test]
async fn credentials_that_prove_nothing_get_401_with_the_reason() {
    let api = api().await;
    let uri = "/api/v1/catalog/items";

    // One character of the platform's secret changed.
    let mut altered = api.platform.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    // A revoked key and an expired one, straight from the store.
    let revoked = tongban::auth::issue_key(Role::System, Some("sy-scjg-food"), "old", "test", None);
    api.state
        .store
        .insert_api_key(&revoked.record)
        .await
        .unwrap();
    assert!(
        api.state
            .store
            .revoke_api_key(&revoked.record.key_id, tongban::clock::now_millis())
            .await
            .unwrap()
    );
    let expired = tongban::auth::issue_key(
        Role::Platform,
        None,
        "short-lived",
        "test",
        Some(tongban::clock::now_millis() - 1_000),
    );
    api.state
        .store
        .insert_api_key(&expired.record)
        .await
        .unwrap();
    // An applicant's token is for the user audience: it never passes as a staff token.
    let user_token = api.issuer.sign(
        "t-rsa",
        &api.issuer
            .user_claims("1", "111", "11010519491231002X", "李四", 3),
    );
    // A staff token from an issuer the hub does not trust.
    let stranger = common::Issuer::new().staff_token("mallory", &["admin"]);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "Basic scheme",
            "Basic dXNlcjpwYXNz".into(),
            "Bearer <credential>",
        ),
        ("empty bearer", "Bearer ".into(), "Bearer <credential>"),
        (
            "unknown key id",
            auth("tbk_0000000000000000_00"),
            "not valid",
        ),
        ("altered secret", auth(&altered), "not valid"),
        ("revoked key", auth(&revoked.secret), "revoked"),
        ("expired key", auth(&expired.secret), "expired"),
        ("not a JWT", auth("garbage"), "not a JWT"),
        ("a user's token", auth(&user_token), "audience"),
        ("untrusted issuer", auth(&stranger), "signature"),
    ];
    for (what, value, reason) in &cases {
        let reply = api.get_with(uri, Some(value)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            reply.text
        );
        assert_unauthenticated(&reply, reason);
        // The refusal does not echo the credential.
        let secret = value
            .trim_start_matches("Bearer ")
            .trim_start_matches("Basic ");
        assert!(
            secret.len() < 8 || !reply.text.contains(secret),
            "{what}: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn every_role_reads_the_catalog_and_only_the_platform_writes_it() {
    let api = api().await;
    let item = common::sample_item();
    let uri = item_uri(&item);
    let admin = api.issuer.staff_token("admin-1", &["admin"]);
    let supervisor = api.issuer.staff_token("sup-1", &["supervisor"]);

    // A department system and staff may not write the catalog.
    for (who, credential) in [
        ("system key", auth(&api.system)),
        ("admin token", auth(&admin)),
        ("supervisor token", auth(&supervisor)),
    ] {
        let reply = api.put_json_with(&uri, &item, Some(&credential)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{who}: {}", reply.text);
        assert_forbidden(&reply, "platform");
    }
    assert_eq!(
        api.get(&uri).await.status,
        StatusCode::NOT_FOUND,
        "refused writes stored nothing"
    );

    let created = api
        .put_json_with(&uri, &item, Some(&auth(&api.platform)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

    // Every role reads it: a system key, staff tokens, the platform.
    for (who, credential) in [
        ("system key", auth(&api.system)),
        ("admin token", auth(&admin)),
        ("supervisor token", auth(&supervisor)),
        ("platform key", auth(&api.platform)),
    ] {
        for path in [
            uri.as_str(),
            "/api/v1/catalog/items",
            "/api/v1/catalog/changes",
        ] {
            let reply = api.get_with(path, Some(&credential)).await;
            assert_eq!(reply.status, StatusCode::OK, "{who} {path}: {}", reply.text);
        }
    }
    assert_eq!(
        api.get_with(&uri, Some(&auth(&api.system))).await.body["version"],
        1
    );

    // A valid staff token that grants no role reads nothing: 403, not 401.
    let nobody = api.issuer.staff_token("intern", &[]);
    assert_forbidden(
        &api.get_with(&uri, Some(&auth(&nobody))).await,
        "without a role",
    );
    // Roles a token claims that staff cannot have are ignored, not granted.
    let pretender = api.issuer.staff_token("pretender", &["platform", "system"]);
    assert_forbidden(
        &api.put_json_with(&uri, &item, Some(&auth(&pretender)))
            .await,
        "without a role",
    );
}

#[tokio::test]
async fn refused_catalog_writes_are_audited_with_who_and_why() {
    let api = api().await;
    let item = common::sample_item();
    let uri = item_uri(&item);
    api.put_json_with(&uri, &item, None).await;
    api.put_json_with(&uri, &item, Some(&auth(&api.system)))
        .await;
    api.put_json(&uri, &item).await;
    // Reads are not audited: the catalog is not personal data.
    api.get(&uri).await;

    let records = api
        .state
        .store
        .list_audit(&tongban::store::AuditQuery {
            action: Some("PUT /api/v1/catalog/items/{code}".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.outcome.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("refused 401", uri.as_str()),
            ("refused 403", uri.as_str()),
            ("ok 201", uri.as_str()),
        ],
        "{records:#?}"
    );
    assert_eq!(records[0].actor, "anonymous");
    let system_key_id = api.system.split('_').nth(1).unwrap();
    assert_eq!(records[1].actor, format!("key:{system_key_id}"));
    assert!(records[1].detail.contains("platform"), "{records:#?}");
    let platform_key_id = api.platform.split('_').nth(1).unwrap();
    assert_eq!(records[2].actor, format!("key:{platform_key_id}"));
    let all = api
        .state
        .store
        .list_audit(&tongban::store::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "the GET left no record: {all:#?}");
}

#[tokio::test]
async fn the_hubs_public_keys_are_published_without_a_credential() {
    let api = api().await;
    let reply = api.get_with("/.well-known/jwks.json", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        reply.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age"),
        "departments may cache the keys"
    );
    let keys = reply.body["keys"].as_array().unwrap();
    let published: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
    let expected: Vec<String> = api
        .state
        .signer
        .jwks()
        .keys
        .into_iter()
        .filter_map(|k| k.common.key_id)
        .chain(
            api.state
                .sealer
                .jwks()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned()),
        )
        .collect();
    assert_eq!(published, expected);
    for key in keys {
        // Public halves only: no private exponent or scalar (`d`), no symmetric secret (`k`).
        assert!(key.get("d").is_none() && key.get("k").is_none(), "{key}");
    }
}
