//! The API's edge against hostile and careless clients: NUL characters in any input refused
//! with 400 before they reach a store (on SQLite and PostgreSQL), strict percent-decoding,
//! one `Authorization` header, visible-ASCII idempotency keys, inbound bodies declared as
//! what their mapping reads, the request target and header limits answered with
//! problem+json, and a server that closes idle and half-sent connections.

use crate::common;
use crate::on_both_backends;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use common::edit::{RST, SCJG};
use common::wait::PATIENCE;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tongban::auth::Role;
use tongban::store::Store;
use tower::ServiceExt;

struct Api {
    served: TestApi,
    issuer: Issuer,
    platform: String,
    supervisor: String,
    admin: String,
    scjg: String,
    rst: String,
}

/// The API over `store`, with a key for each caller the tests play.
async fn api_over(store: &Store) -> Api {
    let issuer = Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    let served = TestApi::over(config, store).await;
    let key = |role, system| common::api_key(&served.store, role, system);
    Api {
        platform: key(Role::Platform, None).await,
        supervisor: key(Role::Supervisor, None).await,
        admin: key(Role::Admin, None).await,
        scjg: key(Role::System, Some(SCJG)).await,
        rst: key(Role::System, Some(RST)).await,
        served,
        issuer,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// A problem+json answer with `status`; its entries.
    fn problem(&self, status: StatusCode) -> Vec<Value> {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{:#}",
            self.body
        );
        self.body["errors"].as_array().cloned().unwrap_or_default()
    }

    fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
}

impl Api {
    async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.served.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.call(
            Request::get(uri)
                .header("authorization", common::bearer(key))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", common::bearer(key));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.call(request.body(body.into()).unwrap()).await
    }

    fn submission(&self, app: &Value) -> axum::http::request::Builder {
        Request::post("/api/v1/applications")
            .header("authorization", common::bearer(&self.platform))
            .header("content-type", "application/json")
            .header("tongban-user-token", self.issuer.token_for(app, 3))
    }

    async fn submit(&self, app: &Value) -> Reply {
        self.call(
            self.submission(app)
                .body(Body::from(app.to_string()))
                .unwrap(),
        )
        .await
    }
}

/// A case step of 辽宁省人社's system, in its own JSON, about `application`, with event id `id`.
fn rst_event(application: &str, id: &str) -> Value {
    let mut event = common::read_json("mappings/tests/rst-card-event/accept.legacy.json");
    event["data"]["SQBH"] = json!(application);
    event["data"]["HJLSH"] = json!(id);
    event
}

// ---------------------------------------------------------------------------------------------
// NUL

on_both_backends!(a_nul_anywhere_is_refused_with_400_and_reaches_no_store);

async fn a_nul_anywhere_is_refused_with_400_and_reaches_no_store(store: &Store) {
    let api = api_over(store).await;
    let app = common::rst_application();
    let accepted = api.submit(&app).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:#}", accepted.body);
    let id = accepted.body["id"].as_str().unwrap().to_string();

    // Path parameters and query values, on every kind of route.
    let queries: Vec<(Method, String, &str, &str)> = vec![
        (
            Method::GET,
            "/api/v1/catalog/items?q=%00".into(),
            &api.platform,
            "q",
        ),
        (
            Method::GET,
            "/api/v1/catalog/items?q=food&department=a%00b".into(),
            &api.platform,
            "department",
        ),
        (
            Method::GET,
            "/api/v1/catalog/items/%00".into(),
            &api.platform,
            "code",
        ),
        (
            Method::GET,
            format!("/api/v1/applications/{id}%00"),
            &api.platform,
            "id",
        ),
        (
            Method::GET,
            "/api/v1/supervision/alerts?system=%00".into(),
            &api.supervisor,
            "system",
        ),
        (
            Method::GET,
            "/api/v1/supervision/cases?system=%00".into(),
            &api.supervisor,
            "system",
        ),
        (
            Method::GET,
            "/api/v1/supervision/stats?system=%00".into(),
            &api.supervisor,
            "system",
        ),
        (
            Method::GET,
            "/api/v1/supervision/stream?follow=false&system=%00".into(),
            &api.supervisor,
            "system",
        ),
        (
            Method::GET,
            "/api/v1/audit?actor=%00".into(),
            &api.admin,
            "actor",
        ),
        (
            Method::POST,
            format!("/api/v1/systems/{RST}%00/heartbeat"),
            &api.rst,
            "id",
        ),
    ];
    for (method, uri, key, parameter) in &queries {
        let reply = api
            .send(method.clone(), uri, key, None, Body::empty())
            .await;
        let errors = reply.problem(StatusCode::BAD_REQUEST);
        assert_eq!(errors.len(), 1, "{uri}: {errors:#?}");
        assert_eq!(errors[0]["parameter"], *parameter, "{uri}: {errors:#?}");
        assert!(
            errors[0]["message"].as_str().unwrap().contains("NUL"),
            "{uri}: {errors:#?}"
        );
    }

    // Any string in a JSON body, member names included, however deep.
    let mut item = common::sample_item();
    let code = item["code"].as_str().unwrap().to_string();
    item["name"] = json!("食品\u{0}经营许可");
    item["materials"][0]["name"] = json!("\u{0}");
    item["odd\u{0}member"] = json!("value");
    let reply = api
        .send(
            Method::PUT,
            &format!("/api/v1/catalog/items/{code}"),
            &api.platform,
            Some("application/json"),
            item.to_string(),
        )
        .await;
    let pointers: Vec<Value> = reply
        .problem(StatusCode::BAD_REQUEST)
        .iter()
        .map(|e| e["pointer"].clone())
        .collect();
    assert_eq!(
        pointers,
        ["/name", "/materials/0/name", "/odd\u{0}member"],
        "{:#}",
        reply.body
    );
    let mut app_with_nul = app.clone();
    app_with_nul["applicant"]["name"] = json!("王\u{0}五");
    let reply = api
        .call(
            api.submission(&app)
                .body(Body::from(app_with_nul.to_string()))
                .unwrap(),
        )
        .await;
    let errors = reply.problem(StatusCode::BAD_REQUEST);
    assert_eq!(errors[0]["pointer"], "/applicant/name", "{errors:#?}");

    // A document from a system whose event id holds a NUL: refused with the field named, as
    // a problem to fix, not as a store failure to try again.
    let event = rst_event(&id, "LNRS-SY-2026-001877\u{0}-02");
    let reply = api
        .send(
            Method::POST,
            &format!("/api/v1/systems/{RST}/events"),
            &api.rst,
            Some("application/json"),
            event.to_string(),
        )
        .await;
    let errors = reply.problem(StatusCode::BAD_REQUEST);
    assert!(
        errors
            .iter()
            .any(|e| e["path"].as_str().unwrap_or_default().contains("HJLSH")
                && e["message"].as_str().unwrap().contains("NUL")),
        "{errors:#?}"
    );
    // Queue consumers and pollers get the same answer from the inbound path they share: a
    // mapping error, which they refuse for good (rejected without requeue; skipped).
    let config = common::config();
    let recorder = crate::common::recorder(store);
    let received = tongban::service::inbound::receive(
        &config,
        store,
        &recorder,
        RST,
        tongban::model::MessageKind::CaseEvent,
        event.to_string().as_bytes(),
        tongban::model::Via::Queue,
        None,
    )
    .await;
    assert!(
        matches!(
            received,
            Err(tongban::service::inbound::InboundError::Mapping(_))
        ),
        "{received:?}"
    );

    // Nothing of it was stored, and the store still works.
    assert!(store.events_of(&id).await.unwrap().is_empty());
    let good = api
        .send(
            Method::POST,
            &format!("/api/v1/systems/{RST}/events"),
            &api.rst,
            Some("application/json"),
            rst_event(&id, "LNRS-SY-2026-001877-02").to_string(),
        )
        .await;
    assert_eq!(good.status, StatusCode::ACCEPTED, "{:#}", good.body);
}

// ---------------------------------------------------------------------------------------------
// Headers, queries and bodies

async fn api() -> (Api, common::TestStore) {
    let t = common::sqlite_store().await;
    (api_over(&t.store).await, t)
}

#[tokio::test]
async fn a_header_that_must_be_single_is_refused_when_repeated() {
    let (api, _t) = api().await;
    let twice = |method: Method, uri: &str, second: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", common::bearer(&api.platform))
            .header("authorization", common::bearer(second))
            .header("content-type", "application/json")
    };
    // The same key twice, and a valid key before an invalid one: neither wins.
    for second in [api.platform.as_str(), "tbk_nobody_nothing"] {
        let reply = api
            .call(
                twice(Method::GET, "/api/v1/catalog/items", second)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let errors = reply.problem(StatusCode::BAD_REQUEST);
        assert_eq!(errors[0]["header"], "Authorization", "{errors:#?}");
    }
    // On a write the refusal is audited.
    let reply = api
        .call(
            twice(Method::PUT, "/api/v1/catalog/items/x", &api.platform)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    reply.problem(StatusCode::BAD_REQUEST);
    let records = api.served.store.audit_records().await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.outcome == "rejected 400" && r.detail.contains("Authorization")),
        "{records:#?}"
    );

    // The applicant's token, likewise.
    let app = common::rst_application();
    let reply = api
        .call(
            api.submission(&app)
                .header("tongban-user-token", api.issuer.token_for(&app, 3))
                .body(Body::from(app.to_string()))
                .unwrap(),
        )
        .await;
    let errors = reply.problem(StatusCode::BAD_REQUEST);
    assert_eq!(errors[0]["header"], "Tongban-User-Token", "{errors:#?}");
}

#[tokio::test]
async fn an_idempotency_key_is_visible_ascii_only() {
    let (api, _t) = api().await;
    let app = common::rst_application();
    for key in ["a\tb", "a b", "\t"] {
        let reply = api
            .call(
                api.submission(&app)
                    .header("idempotency-key", key)
                    .body(Body::from(app.to_string()))
                    .unwrap(),
            )
            .await;
        let errors = reply.problem(StatusCode::BAD_REQUEST);
        assert_eq!(
            errors[0]["header"], "Idempotency-Key",
            "{key:?}: {errors:#?}"
        );
    }
    let reply = api
        .call(
            api.submission(&app)
                .header("idempotency-key", "order-2026/11/28#1")
                .body(Body::from(app.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:#}", reply.body);
}

#[tokio::test]
async fn a_query_that_does_not_percent_decode_is_refused_naming_each_parameter() {
    let (api, _t) = api().await;
    for (query, parameter, reason) in [
        ("q=%ZZ", "q", "two hexadecimal digits"),
        ("q=50%", "q", "two hexadecimal digits"),
        ("q=%FF%FE", "q", "UTF-8"),
        ("%ZZ=1", "%ZZ", "its name"),
    ] {
        let reply = api
            .get(&format!("/api/v1/catalog/items?{query}"), &api.platform)
            .await;
        let errors = reply.problem(StatusCode::BAD_REQUEST);
        assert_eq!(errors.len(), 1, "{query}: {errors:#?}");
        assert_eq!(errors[0]["parameter"], parameter, "{query}: {errors:#?}");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{query}: {message}");
    }
    // Every bad parameter at once.
    let reply = api
        .get(
            "/api/v1/catalog/items?q=%ZZ&type=%00&limit=5",
            &api.platform,
        )
        .await;
    let parameters: Vec<Value> = reply
        .problem(StatusCode::BAD_REQUEST)
        .iter()
        .map(|e| e["parameter"].clone())
        .collect();
    assert_eq!(parameters, [json!("q"), json!("type")]);
    // Well-formed escapes, `+` and UTF-8 are read as ever.
    let reply = api
        .get(
            "/api/v1/catalog/items?q=%E9%A3%9F%E5%93%81+%E7%BB%8F%E8%90%A5",
            &api.platform,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
}

#[tokio::test]
async fn an_inbound_body_is_declared_as_what_its_mapping_reads() {
    let (api, _t) = api().await;
    let xml =
        std::fs::read(common::repo().join("mappings/tests/scjg-food-event/accept.legacy.xml"))
            .unwrap();
    let json = rst_event("TB-nowhere", "LNRS-1").to_string().into_bytes();
    let events = |system: &str| format!("/api/v1/systems/{system}/events");
    let post =
        |system: &'static str, key: &str, content_type: Option<&'static str>, body: &[u8]| {
            let (uri, key, body) = (events(system), key.to_string(), body.to_vec());
            let api = &api;
            async move { api.send(Method::POST, &uri, &key, content_type, body).await }
        };

    for (system, key, content_type, body, says) in [
        (SCJG, &api.scjg, "application/json", &xml, "XML"),
        (SCJG, &api.scjg, "text/plain", &xml, "XML"),
        (RST, &api.rst, "application/xml", &json, "JSON"),
        (
            RST,
            &api.rst,
            "application/json; charset=GBK",
            &json,
            "UTF-8",
        ),
        (SCJG, &api.scjg, "text/xml; charset=GBK", &xml, "UTF-8"),
        (
            SCJG,
            &api.scjg,
            "application/xml; charset=x-nonsense",
            &xml,
            "x-nonsense",
        ),
    ] {
        let reply = post(system, key, Some(content_type), body).await;
        reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            reply.detail().contains(says),
            "{content_type}: `{says}` in {}",
            reply.detail()
        );
        // Refused like a message that does not map: on record for `events_refused`.
        let latest = api.served.store.refusals(Some(system), 1).await.unwrap();
        assert!(
            latest
                .first()
                .is_some_and(|r| r.via.as_str() == "webhook"
                    && r.reasons.iter().any(|why| why.contains(says))),
            "{content_type}: {latest:?}"
        );
    }
    let audited = api
        .get("/api/v1/audit?outcome=refused%20415&limit=100", &api.admin)
        .await;
    assert_eq!(
        audited.body["records"].as_array().map(Vec::len),
        Some(6),
        "{:#}",
        audited.body
    );
    // What fits goes on to be read (and is then refused for other reasons: the application
    // these examples name was never routed through this hub).
    for (system, key, content_type, body) in [
        (SCJG, &api.scjg, None, &xml),
        (SCJG, &api.scjg, Some("text/xml"), &xml),
        (
            SCJG,
            &api.scjg,
            Some("application/soap+xml; charset=\"utf-8\""),
            &xml,
        ),
        (
            SCJG,
            &api.scjg,
            Some("application/xml; charset=UTF-8"),
            &xml,
        ),
        (
            RST,
            &api.rst,
            Some("application/json; charset=utf-8"),
            &json,
        ),
        (RST, &api.rst, None, &json),
    ] {
        let reply = post(system, key, content_type, body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{content_type:?}: {:#}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_charset_that_reads_the_document_alike_is_taken_as_declared() {
    let (api, _t) = api().await;
    let events = format!("/api/v1/systems/{SCJG}/events");
    let utf8 = common::read_text("mappings/tests/scjg-food-event/accept.legacy.xml");
    // The same step in the GB18030 family: GBK and GB2312 documents are GB18030 documents.
    let in_gb = |declared: &str| {
        let text = utf8.replacen("encoding=\"UTF-8\"", &format!("encoding=\"{declared}\""), 1);
        assert_ne!(text, utf8);
        encoding_rs::GB18030.encode(&text).0.into_owned()
    };
    // Pure ASCII reads the same in every ASCII-compatible charset (this one does not map).
    let ascii_declared = br#"<?xml version="1.0" encoding="UTF-8"?><Ping/>"#.to_vec();
    let ascii_bare = b"<Ping/>".to_vec();
    for (content_type, body, status) in [
        ("text/xml; charset=GBK", in_gb("GB18030"), 422),
        ("text/xml; charset=GB18030", in_gb("GBK"), 422),
        ("application/xml; charset=gb2312", in_gb("GB18030"), 422),
        ("text/xml; charset=ISO-8859-1", ascii_declared.clone(), 400),
        ("text/xml; charset=us-ascii", ascii_declared, 400),
        ("text/xml; charset=ISO-8859-1", ascii_bare.clone(), 400),
        ("text/xml; charset=GBK", ascii_bare, 400),
    ] {
        let reply = api
            .send(Method::POST, &events, &api.scjg, Some(content_type), body)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{content_type}: {:#}",
            reply.body
        );
    }
    // Bytes that are not ASCII read otherwise in another charset: still refused.
    let reply = api
        .send(
            Method::POST,
            &events,
            &api.scjg,
            Some("text/xml; charset=ISO-8859-1"),
            utf8.clone().into_bytes(),
        )
        .await;
    reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = api
        .send(
            Method::POST,
            &events,
            &api.scjg,
            Some("text/xml; charset=UTF-8"),
            in_gb("GB18030"),
        )
        .await;
    reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_webhook_body_too_large_too_slow_or_declared_in_non_ascii_is_a_recorded_refusal() {
    let t = common::sqlite_store().await;
    let issuer = Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    config.hub.server.body_limit_bytes = 4096;
    config.hub.server.body_read_timeout_seconds = 1;
    let served = TestApi::over(config, &t.store).await;
    let scjg = common::api_key(&served.store, Role::System, Some(SCJG)).await;
    let rst = common::api_key(&served.store, Role::System, Some(RST)).await;
    let admin = common::api_key(&served.store, Role::Admin, None).await;
    let post = |key: &str, content_type: HeaderValue, body: Body| {
        Request::post(format!("/api/v1/systems/{SCJG}/events"))
            .header("authorization", common::bearer(key))
            .header("content-type", content_type)
            .body(body)
            .unwrap()
    };
    let call = |request: Request<Body>| async {
        let response = served.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let xml = HeaderValue::from_static("text/xml");
    let large = || Body::from(vec![b'<'; 5000]);
    // A body that starts and never ends.
    let slow = || {
        let first = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"<?xml"))
        });
        Body::from_stream(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        ))
    };
    let non_ascii = || HeaderValue::from_bytes(b"text/xml; charset=\xe4\xb8\xad").unwrap();

    // Another system's key: 403, and not that system's refusal.
    for request in [
        post(&rst, xml.clone(), large()),
        post(&rst, non_ascii(), Body::from("<x/>")),
    ] {
        let (status, body) = call(request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    }
    assert!(served.store.refusals(None, 10).await.unwrap().is_empty());

    // The system's own: each answered, recorded for events_refused, and audited as refused.
    for (request, status, reason) in [
        (
            post(&scjg, xml.clone(), large()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 4096 bytes",
        ),
        (
            post(&scjg, xml.clone(), slow()),
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive completely within 1 s",
        ),
        (
            post(&scjg, non_ascii(), Body::from("<x/>")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the Content-Type is not ASCII text",
        ),
    ] {
        let (got, body) = call(request).await;
        assert_eq!(got, status, "{body:#}");
        let latest = served.store.refusals(Some(SCJG), 1).await.unwrap();
        assert!(
            latest
                .first()
                .is_some_and(|r| r.via.as_str() == "webhook" && r.reasons == [reason]),
            "{status}: {latest:?}"
        );
    }
    // A body too large sent again is another refusal: its bytes were never read to tell.
    let (got, _) = call(post(&scjg, xml.clone(), large())).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        served.store.refusals(Some(SCJG), 10).await.unwrap().len(),
        4
    );

    let (status, audit) = call(
        Request::get("/api/v1/audit?outcome=refused&limit=100")
            .header("authorization", common::bearer(&admin))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit:#}");
    let mut outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == format!("/api/v1/systems/{SCJG}/events"))
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "refused 403",
            "refused 403",
            "refused 408",
            "refused 413",
            "refused 413",
            "refused 415"
        ],
        "{audit:#}"
    );
}

#[tokio::test]
async fn a_long_target_or_large_headers_get_problem_json() {
    let (api, _t) = api().await;
    let long = format!("/api/v1/catalog/items?q={}", "a".repeat(9000));
    let reply = api.get(&long, &api.platform).await;
    reply.problem(StatusCode::URI_TOO_LONG);
    assert!(reply.detail().contains("8192"), "{}", reply.detail());

    let mut many = Request::get("/api/v1/catalog/items")
        .header("authorization", common::bearer(&api.platform));
    for i in 0..120 {
        many = many.header(format!("x-extra-{i}"), "1");
    }
    let reply = api.call(many.body(Body::empty()).unwrap()).await;
    reply.problem(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(reply.detail().contains("100 fields"), "{}", reply.detail());

    let large = Request::get("/api/v1/catalog/items")
        .header("authorization", common::bearer(&api.platform))
        .header("x-large", "a".repeat(70 * 1024))
        .body(Body::empty())
        .unwrap();
    let reply = api.call(large).await;
    reply.problem(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(reply.detail().contains("65536 bytes"), "{}", reply.detail());
}

// ---------------------------------------------------------------------------------------------
// The server itself

/// What came back on a connection before the server closed it (or `PATIENCE` ran out).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await {
        Ok(Ok(_)) => Ok(got),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!(
            "still open after {PATIENCE:?}, having sent {:?}",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// Status and the body parsed as JSON of the first response in `bytes`, with its content type.
fn response(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(body.len());
    let body = serde_json::from_str(&body[..length.min(body.len())]).unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_closes_idle_and_half_sent_connections_and_answers_limits_with_problem_json() {
    let issuer = Issuer::new();
    let dir = common::config_copy();
    issuer.install_in_dir(dir.path());
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    common::edit::edit(&dir.path().join("hub.toml"), |t| {
        let t = common::edit::set_key(t, "header_read_timeout_seconds", "1");
        let t = common::edit::set_key(&t, "body_read_timeout_seconds", "1");
        common::edit::set_key(&t, "shutdown_grace_seconds", "1")
    });
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;
    let addr = hub.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // Connected, and nothing sent: closed, with nothing to answer.
    let mut silent = connect().await.unwrap();
    assert_eq!(until_closed(&mut silent).await.unwrap(), b"");
    // Half a head, never finished: closed.
    let mut half = connect().await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
        .await
        .unwrap();
    assert_eq!(until_closed(&mut half).await.unwrap(), b"");
    // Kept alive after an answer, then idle: closed after the answer.
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = response(&until_closed(&mut idle).await.unwrap());
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    // Half a body: 408 as problem+json, and the connection closed.
    let mut slow = connect().await.unwrap();
    let head = format!(
        "PUT /api/v1/catalog/items/x HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"code\":",
        hub.callers
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let (status, content_type, body) = response(&until_closed(&mut slow).await.unwrap());
    assert_eq!(status, 408, "{body:#}");
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("1 s"), "{body:#}");

    // Limits, answered by the API with a body saying which.
    let many: String = (0..150).map(|i| format!("X-Extra-{i}: 1\r\n")).collect();
    let large = format!("X-Large: {}\r\n", "a".repeat(100 * 1024));
    let long = format!("/healthz?{}", "a".repeat(10 * 1024));
    for (target, headers, status) in [
        ("/healthz", many.as_str(), 431),
        ("/healthz", large.as_str(), 431),
        (long.as_str(), "", 414),
    ] {
        let mut stream = connect().await.unwrap();
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (got, content_type, body) = response(&until_closed(&mut stream).await.unwrap());
        assert_eq!(got, status, "{body:#}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["status"], status, "{body:#}");
    }

    // What hyper answers itself carries no body (see api::server): a header line that is not
    // HTTP gets a bare 400.
    let mut broken = connect().await.unwrap();
    broken
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nBad Header: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = response(&until_closed(&mut broken).await.unwrap());
    assert_eq!(status, 400);

    hub.stop(PATIENCE).await;
}
