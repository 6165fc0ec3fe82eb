//! Users' tokens on `POST /api/v1/applications`: every kind of bad token is refused with its
//! reason, real-name levels are enforced per item, the applicant must be the token's user, and
//! a good token of each accepted algorithm is taken. Tokens are made with `jsonwebtoken` and
//! keys generated in the test.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use serde_json::{Value, json};
use std::sync::Arc;
use tongban::auth::Role;
use tower::ServiceExt;

struct Api {
    served: TestApi,
    issuer: Issuer,
    platform: String,
}

async fn api() -> Api {
    let issuer = Issuer::new();
    let served = TestApi::new(&issuer).await;
    let platform = common::api_key(&served.store, Role::Platform, None).await;
    Api {
        served,
        issuer,
        platform,
    }
}

impl Api {
    async fn submit(&self, body: &Value, user_token: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::post("/api/v1/applications")
            .header("content-type", "application/json")
            .header("authorization", common::bearer(&self.platform));
        if let Some(token) = user_token {
            request = request.header("tongban-user-token", token);
        }
        self.served
            .send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

/// 社会保障卡申领 (ln-rst-card): the catalog asks for real-name level 3.
fn card_application() -> Value {
    common::rst_application()
}

fn user_claims(issuer: &Issuer, app: &Value, level: u8) -> Value {
    let a = &app["applicant"];
    let text = |k: &str| a[k].as_str().unwrap().to_string();
    issuer.user_claims(
        &text("kind"),
        &text("id_type"),
        &text("id_number"),
        &text("name"),
        level,
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_its_reason_and_nothing_is_accepted() {
    let api = api().await;
    let app = card_application();
    let good = user_claims(&api.issuer, &app, 3);
    let now = tongban::clock::now_millis() / 1000;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        c
    };

    // A key the issuer never published, claiming to be its RSA key.
    let stranger = Issuer::new();
    let forged = stranger.sign("t-rsa", &good);
    // A signature by the right key over other claims, with the claims swapped afterwards.
    let genuine = api.issuer.sign("t-rsa", &good);
    let parts: Vec<&str> = genuine.split('.').collect();
    let altered_claims = with(&|c| c["real_name_level"] = json!(3));
    let mut altered_claims = altered_claims;
    altered_claims["sub"] = json!("someone-else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(altered_claims.to_string().as_bytes()),
        parts[2]
    );
    // `alg: none`, unsigned.
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    // HS256 keyed with the issuer's public RSA key: the classic confusion attack.
    let public_key = serde_json::to_vec(&api.issuer.jwks().keys[0]).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some("t-rsa".into());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&public_key).unwrap(),
    )
    .unwrap();
    let unknown_kid = {
        let token = api.issuer.sign("t-ed", &good);
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[0] = b64(br#"{"alg":"EdDSA","typ":"JWT","kid":"nobody"}"#);
        parts.join(".")
    };

    let cases: Vec<(&str, String, &str)> = vec![
        ("no token", String::new(), "Tongban-User-Token"),
        ("not a JWT", "garbage".into(), "not a JWT"),
        ("forged", forged, "signature"),
        ("tampered claims", tampered, "signature"),
        ("alg none", unsigned, "unsigned"),
        ("HS256 with the public key", confused, "HMAC"),
        ("unknown key", unknown_kid, "does not publish"),
        (
            "expired",
            api.issuer.sign(
                "t-rsa",
                &with(&|c| {
                    c["exp"] = json!(now - 3600);
                    c["iat"] = json!(now - 7200);
                }),
            ),
            "expired",
        ),
        (
            "not yet valid",
            api.issuer
                .sign("t-rsa", &with(&|c| c["nbf"] = json!(now + 3600))),
            "not valid yet",
        ),
        (
            "wrong audience (a staff token)",
            api.issuer
                .sign("t-rsa", &with(&|c| c["aud"] = json!("tongban-staff"))),
            "audience",
        ),
        (
            "wrong issuer",
            api.issuer.sign(
                "t-rsa",
                &with(&|c| c["iss"] = json!("https://ids.example.org")),
            ),
            "issued by someone else",
        ),
        (
            "no expiry",
            api.issuer.sign(
                "t-rsa",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "exp",
        ),
        (
            "a level out of range",
            api.issuer
                .sign("t-rsa", &with(&|c| c["real_name_level"] = json!(7))),
            "real_name_level",
        ),
        (
            "an ID number that fails its check digit",
            api.issuer.sign(
                "t-rsa",
                &with(&|c| {
                    let id = c["id_number"].as_str().unwrap().to_string();
                    let last = if id.ends_with('1') { '2' } else { '1' };
                    c["id_number"] = json!(format!("{}{last}", &id[..17]));
                }),
            ),
            "id_number",
        ),
    ];
    for (what, token, reason) in &cases {
        let (status, body) = api
            .submit(&app, (!token.is_empty()).then_some(token.as_str()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body:#}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(reason),
            "{what}: the reason should mention `{reason}`: {detail}"
        );
        // The refusal names no personal data.
        let id = app["applicant"]["id_number"].as_str().unwrap();
        assert!(!body.to_string().contains(id), "{what}: {body}");
    }
    // And then a good one is accepted: refusals left nothing behind in the way.
    let (status, body) = api
        .submit(&app, Some(&api.issuer.sign("t-rsa", &good)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
}

#[tokio::test]
async fn each_accepted_algorithm_is_taken() {
    let api = api().await;
    let app = card_application();
    for kid in ["t-rsa", "t-ec", "t-ed"] {
        let token = api.issuer.sign(kid, &user_claims(&api.issuer, &app, 3));
        let (status, body) = api.submit(&app, Some(&token)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{kid}: {body:#}");
    }
}

#[tokio::test]
async fn a_too_low_real_name_level_gets_403_with_the_reason() {
    let api = api().await;
    let app = card_application();
    let token = api.issuer.sign("t-rsa", &user_claims(&api.issuer, &app, 2));
    let (status, body) = api.submit(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("real-name level 3") && detail.contains("level 2"),
        "{detail}"
    );
}

#[tokio::test]
async fn the_applicant_must_be_the_user_the_token_identifies() {
    let api = api().await;
    let app = card_application();
    // Someone else's valid token (another citizen ID, another name).
    let mut claims = user_claims(&api.issuer, &app, 3);
    claims["id_number"] = json!("11010519491231002X");
    claims["name"] = json!("李四");
    let token = api.issuer.sign("t-ec", &claims);
    let (status, body) = api.submit(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("id_number") && detail.contains("name"),
        "{detail}"
    );
    assert!(!detail.contains("11010519491231002X") && !detail.contains("李四"));
}

#[tokio::test]
async fn the_platform_key_is_needed_besides_the_users_token() {
    let api = api().await;
    let app = card_application();
    let token = api.issuer.token_for(&app, 3);
    let response = api
        .served
        .router
        .clone()
        .oneshot(
            Request::post("/api/v1/applications")
                .header("content-type", "application/json")
                .header("tongban-user-token", &token)
                .body(Body::from(app.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
}

/// A JWK Set served over HTTP, switchable, counting how often it is fetched.
struct JwksServer {
    url: String,
    set: Arc<std::sync::Mutex<Value>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    use std::sync::atomic::Ordering;
    let set = Arc::new(std::sync::Mutex::new(initial));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, f) = (set.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (s, f) = (s.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer { url, set, fetches }
}

#[tokio::test]
async fn keys_from_a_url_are_fetched_and_refetched_when_the_issuer_rotates() {
    use std::sync::atomic::Ordering;
    use tongban::auth::tokens::{TokenError, Verifier};
    let old = Issuer::new();
    let new = Issuer::new();
    let only = |issuer: &Issuer, kid: &str| {
        let mut set = issuer.jwks();
        set.keys.retain(|k| k.common.key_id.as_deref() == Some(kid));
        // A rotated key gets a new id.
        set.keys[0].common.key_id = Some(format!("{kid}-{}", std::ptr::from_ref(issuer) as usize));
        serde_json::to_value(set).unwrap()
    };
    let first = only(&old, "t-ec");
    let first_kid = first["keys"][0]["kid"].as_str().unwrap().to_string();
    let server = jwks_server(first).await;
    let mut config = common::config();
    config.hub.identity.jwks = tongban::config::JwksSource::Url {
        url: server.url.clone(),
        refresh_seconds: 3600,
    };
    let verifier = Verifier::new(&config.hub.identity);
    let app = card_application();
    let sign =
        |issuer: &Issuer, kid: &str| issuer.sign_as("t-ec", kid, &user_claims(issuer, &app, 3));

    // Before the first fetch nothing is known; the unknown kid makes the verifier fetch.
    let user = verifier.user(&sign(&old, &first_kid)).await.unwrap();
    assert_eq!(user.real_name_level, 3);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates: tokens name a kid the hub has not seen. Refetches are rate-limited,
    // so wait out the gap once, as a real rotation would.
    let second = only(&new, "t-ec");
    let second_kid = second["keys"][0]["kid"].as_str().unwrap().to_string();
    *server.set.lock().unwrap() = second;
    tokio::time::sleep(tongban::auth::tokens::REFETCH_GAP).await;
    let user = verifier.user(&sign(&new, &second_kid)).await.unwrap();
    assert_eq!(user.real_name_level, 3);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // A burst of forged key ids does not turn into a burst of fetches.
    for i in 0..20 {
        let err = verifier
            .user(&sign(&new, &format!("forged-{i}")))
            .await
            .unwrap_err();
        assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // The old key is gone from the issuer's set: its tokens are refused now.
    let err = verifier.user(&sign(&old, &first_kid)).await.unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
}

/// A reference to the catalog item that the hub cannot read as the catalog writes it (a
/// version of `1.0`, or beyond any integer) is refused with what is wrong, never taken past the
/// comparison with the catalog: with the check skipped, a made-up name and type would reach the
/// department as if the catalog had them. (社会保障卡申领 is of type 20 公共服务; 01 is 行政许可.)
#[tokio::test]
async fn an_item_reference_that_cannot_be_read_is_refused_never_waved_past_the_catalog() {
    let api = api().await;
    let app = card_application();
    let token = api.issuer.token_for(&app, 3);
    for version in [
        json!(1.0),
        json!(2.0),
        json!(9223372036854775808u64),
        json!(0),
    ] {
        let mut forged = app.clone();
        forged["item"]["version"] = version.clone();
        forged["item"]["name"] = json!("任意名称");
        forged["item"]["type"] = json!("01");
        let (status, body) = api.submit(&forged, Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "version {version}: {body:#}"
        );
        let pointers: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert!(
            pointers.contains(&"/item/version"),
            "version {version}: {body:#}"
        );
    }
    // A readable reference with the same made-up name and type: both differences listed.
    let mut forged = app.clone();
    forged["item"]["name"] = json!("任意名称");
    forged["item"]["type"] = json!("01");
    let (status, body) = api.submit(&forged, Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(pointers, ["/item/name", "/item/type"], "{body:#}");
    let queued = api
        .served
        .store
        .delivery_counts("ln-rst-card")
        .await
        .unwrap();
    assert!(queued.is_empty(), "nothing was accepted: {queued:?}");
    // And the reference as the catalog has it is taken.
    let (status, body) = api.submit(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
}

/// `text` has nothing a terminal or a log reader would act on: no control character at all.
fn inert(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

#[tokio::test]
async fn a_token_header_value_of_any_size_or_content_is_bounded_and_escaped_everywhere() {
    let api = api().await;
    let app = card_application();
    // A key id of 20 000 characters opening with a newline, a carriage return and ANSI escapes
    // that would recolour a terminal, then an algorithm name of the same kind.
    let kid = format!("\n\r\u{1b}[31mforged\u{1b}[0m`\\{}", "k".repeat(20_000));
    let alg = format!("\u{1b}[2J{}", "A".repeat(20_000));
    let token_with = |header: Value| {
        let claims = user_claims(&api.issuer, &app, 3);
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(b"signature")
        )
    };
    let long_kid = token_with(json!({"alg": "ES256", "kid": kid}));
    let long_alg = token_with(json!({"alg": alg, "kid": "t-ec"}));

    let mut answers = Vec::new();
    for token in [&long_kid, &long_alg] {
        // As a staff token, anonymous to the guard, on a write (so it is audited) …
        let request = Request::put("/api/v1/catalog/items/x")
            .header("authorization", common::bearer(token))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        answers.push(api.served.send(request).await);
        // … and as an applicant's token, under the platform's key.
        answers.push(api.submit(&app, Some(token)).await);
    }
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body:#}");
        let detail = body["detail"].as_str().unwrap();
        let size = body.to_string().len();
        assert!(size < 1024, "an answer of {size} bytes");
        assert!(inert(detail), "{detail:?}");
        assert!(
            detail.contains("bytes in all"),
            "the length is told: {detail}"
        );
    }
    let kid_detail = answers[0].1["detail"].as_str().unwrap();
    assert!(
        kid_detail.contains(r"\n\r\u{1b}[31mforged\u{1b}[0m\`\\kkk"),
        "the key id's start is shown escaped: {kid_detail}"
    );
    assert!(
        answers[2].1["detail"]
            .as_str()
            .unwrap()
            .contains(r"\u{1b}[2JAAA")
    );

    let records = api.served.store.audit_records().await.unwrap();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.outcome.starts_with("refused 401"))
        .collect();
    assert_eq!(refused.len(), 4, "{records:#?}");
    for r in refused {
        assert!(r.detail.len() < 512, "a detail of {} bytes", r.detail.len());
        assert!(inert(&r.detail), "{:?}", r.detail);
    }
}

#[tokio::test]
async fn refusals_name_the_fault_and_never_the_token_librarys_own_text() {
    let api = api().await;
    let app = card_application();
    let claims = user_claims(&api.issuer, &app, 3);
    let good = api.issuer.sign("t-ec", &claims);
    let parts: Vec<&str> = good.split('.').collect();
    // Keys named by the token itself.
    let own_key = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"ES256","kid":"t-ec","jku":"https://attacker.example/jwks.json"}"#),
        parts[1],
        parts[2]
    );
    // A signature that is not base64url at all.
    let not_base64 = format!("{}.{}.!!!{}", parts[0], parts[1], parts[2]);
    for (token, reason) in [
        (own_key, "names a key of its own"),
        (not_base64, "a part is not base64url"),
    ] {
        let (status, body) = api.submit(&app, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:#}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "`{reason}` in: {detail}");
        for library in ["Base64", "InvalidByte", "Json(", "Error(", "line 1"] {
            assert!(!detail.contains(library), "{detail}");
        }
        if reason.contains("own") {
            assert!(!detail.contains("not a JWT"), "{detail}");
        }
    }
}

/// The repository's configuration with the identity issuer's keys at `url`.
fn keys_at(url: &str) -> tongban::config::Config {
    let mut config = common::config();
    // No broker: readiness here is the identity system's (and the store's).
    config.hub.broker = None;
    config.hub.identity.jwks = tongban::config::JwksSource::Url {
        url: url.to_string(),
        refresh_seconds: 3600,
    };
    config
}

#[tokio::test]
async fn with_the_issuers_keys_unreachable_tokens_get_503_and_readyz_says_so() {
    let issuer = Issuer::new();
    // A port nobody listens on: the identity system is down.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let t = common::sqlite_store().await;
    let served = TestApi::over(keys_at(&url), &t.store).await;
    let platform = common::api_key(&served.store, Role::Platform, None).await;
    let app = card_application();
    let expected = "the identity system's keys are not available";

    let staff = Request::put("/api/v1/catalog/items/x")
        .header(
            "authorization",
            common::bearer(&issuer.staff_token("s-1", &["admin"])),
        )
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let applicant = Request::post("/api/v1/applications")
        .header("authorization", common::bearer(&platform))
        .header("tongban-user-token", issuer.token_for(&app, 3))
        .header("content-type", "application/json")
        .body(Body::from(app.to_string()))
        .unwrap();
    for request in [staff, applicant] {
        let (status, body) = served.send(request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
        assert_eq!(body["detail"], expected, "{body:#}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no internals: {body}"
        );
    }
    // Readiness names the failing check, in the same words.
    let (status, body) = served
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert_eq!(body["status"], "not_ready", "{body:#}");
    let identity: Vec<&serde_json::Value> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "identity")
        .collect();
    assert_eq!(identity.len(), 1, "{body:#}");
    assert_eq!(identity[0]["status"], "failing", "{body:#}");
    assert_eq!(identity[0]["detail"], expected, "{body:#}");
    assert!(!body.to_string().contains(&url), "no internals: {body}");
    // The refused write is recorded as the hub's failure, not the caller's.
    let records = served.store.audit_records().await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.outcome == "failed 503" && r.detail.contains(expected)),
        "{records:#?}"
    );
    assert!(!records.iter().any(|r| r.outcome.starts_with("refused 401")));
}

#[tokio::test]
async fn a_key_id_not_yet_known_while_the_issuer_cannot_be_asked_is_an_outage() {
    use tongban::auth::tokens::{TokenError, Verifier};
    let issuer = Issuer::new();
    let server = jwks_server(serde_json::to_value(issuer.jwks()).unwrap()).await;
    let verifier = Verifier::new(&keys_at(&server.url).hub.identity);
    let app = card_application();
    let claims = user_claims(&issuer, &app, 3);
    let known = issuer.sign("t-ec", &claims);
    let rotated = issuer.sign_as("t-ec", "t-ec-next", &claims);

    verifier.refresh().await.unwrap();
    verifier.readiness().unwrap();
    // The issuer's answers stop making sense (an outage behind its gateway).
    *server.set.lock().unwrap() = json!("<html>502 Bad Gateway</html>");
    verifier.refresh().await.unwrap_err();

    // Keys fetched before still check their tokens, and the hub stays ready …
    verifier.user(&known).await.unwrap();
    verifier.readiness().unwrap();
    // … but a key it has not seen may be the issuer's newest: not the caller's fault.
    let err = verifier.user(&rotated).await.unwrap_err();
    assert_eq!(err, TokenError::KeysUnavailable, "{err}");

    // Once the issuer answers again, a key it does not publish is the caller's fault.
    *server.set.lock().unwrap() = serde_json::to_value(issuer.jwks()).unwrap();
    verifier.refresh().await.unwrap();
    let err = verifier.user(&rotated).await.unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
}

/// A verifier trusting `issuer`'s keys from a file, with `skew` seconds of leeway.
fn file_verifier(issuer: &Issuer, skew: u64) -> tongban::auth::tokens::Verifier {
    let mut config = common::config();
    issuer.install(&mut config);
    config.hub.identity.clock_skew_seconds = skew;
    tongban::auth::tokens::Verifier::new(&config.hub.identity)
}

fn now_seconds() -> i64 {
    tongban::clock::now_millis() / 1000
}

#[tokio::test]
async fn a_user_tokens_check_is_remembered_and_refusals_never_are() {
    use tongban::auth::tokens::TokenError;
    let issuer = Issuer::new();
    let verifier = file_verifier(&issuer, 60);
    let app = card_application();
    let claims = user_claims(&issuer, &app, 3);
    let token = issuer.sign("t-rsa", &claims);

    let first = verifier.user(&token).await.unwrap();
    assert_eq!(verifier.cached_user_tokens(), 1);
    assert_eq!(verifier.user_token_cache_hits(), 0);
    let again = verifier.user(&token).await.unwrap();
    assert_eq!(again, first, "the same identity, from memory");
    assert_eq!(verifier.user_token_cache_hits(), 1);

    // Refused tokens are refused every time and leave nothing behind: another token's
    // signature, and a genuine signature over claims that name no valid applicant.
    let other = issuer.sign("t-rsa", &user_claims(&issuer, &app, 2));
    let parts: Vec<&str> = token.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.split('.').nth(2).unwrap()
    );
    let mut bad_level = claims.clone();
    bad_level["real_name_level"] = json!(7);
    let bad_level = issuer.sign("t-ec", &bad_level);
    for _ in 0..2 {
        let err = verifier.user(&swapped).await.unwrap_err();
        assert_eq!(err, TokenError::BadSignature, "{err}");
        let err = verifier.user(&bad_level).await.unwrap_err();
        assert!(matches!(err, TokenError::BadClaim { .. }), "{err}");
    }
    assert_eq!(verifier.cached_user_tokens(), 1);
    assert_eq!(verifier.user_token_cache_hits(), 1);
}

#[tokio::test]
async fn a_remembered_user_token_is_refused_once_past_its_exp() {
    use tongban::auth::tokens::TokenError;
    let issuer = Issuer::new();
    let verifier = file_verifier(&issuer, 0);
    let mut claims = user_claims(&issuer, &card_application(), 3);
    claims["exp"] = json!(now_seconds() + 2);
    let token = issuer.sign("t-ed", &claims);
    verifier.user(&token).await.unwrap();
    assert_eq!(verifier.cached_user_tokens(), 1);

    let err = common::wait::eventually("the remembered token to be refused", || async {
        match verifier.user(&token).await {
            Err(e) => Ok(e),
            Ok(_) => Err("still taken".to_string()),
        }
    })
    .await;
    assert_eq!(err, TokenError::Expired);
    assert_eq!(verifier.cached_user_tokens(), 0, "and forgotten");
    assert_eq!(
        verifier.user(&token).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn a_user_token_taken_only_within_the_clock_skew_leeway_is_checked_every_time() {
    let issuer = Issuer::new();
    let verifier = file_verifier(&issuer, 60);
    let claims = user_claims(&issuer, &card_application(), 3);
    let ahead = now_seconds() + 30;
    let mut not_before = claims.clone();
    not_before["nbf"] = json!(ahead);
    let mut issued_ahead = claims.clone();
    issued_ahead["iat"] = json!(ahead);
    for claims in [not_before, issued_ahead] {
        let token = issuer.sign("t-ec", &claims);
        for _ in 0..2 {
            verifier.user(&token).await.unwrap();
        }
    }
    assert_eq!(verifier.cached_user_tokens(), 0);
    assert_eq!(verifier.user_token_cache_hits(), 0);
}

/// A refusal is not remembered: a token refused because the hub's clock was behind the
/// issuer's is taken once its `nbf` comes.
#[tokio::test]
async fn a_user_token_refused_before_its_nbf_is_taken_once_it_comes() {
    use tongban::auth::tokens::TokenError;
    let issuer = Issuer::new();
    let verifier = file_verifier(&issuer, 0);
    let mut claims = user_claims(&issuer, &card_application(), 3);
    claims["nbf"] = json!(now_seconds() + 2);
    claims["iat"] = json!(now_seconds());
    let token = issuer.sign("t-rsa", &claims);
    assert_eq!(
        verifier.user(&token).await.unwrap_err(),
        TokenError::NotYetValid
    );
    assert_eq!(verifier.cached_user_tokens(), 0);
    common::wait::eventually("the token to be taken", || async {
        verifier.user(&token).await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(verifier.cached_user_tokens(), 1);
}

#[tokio::test]
async fn a_remembered_user_token_stops_answering_when_the_issuer_drops_or_replaces_its_key() {
    use tongban::auth::tokens::{TokenError, Verifier};
    let issuer = Issuer::new();
    let server = jwks_server(serde_json::to_value(issuer.jwks()).unwrap()).await;
    let verifier = Verifier::new(&keys_at(&server.url).hub.identity);
    verifier.refresh().await.unwrap();
    let claims = user_claims(&issuer, &card_application(), 3);
    let by_ec = issuer.sign("t-ec", &claims);
    let by_ed = issuer.sign("t-ed", &claims);
    verifier.user(&by_ec).await.unwrap();
    verifier.user(&by_ed).await.unwrap();
    assert_eq!(verifier.cached_user_tokens(), 2);

    // A refresh that finds the same keys keeps what they verified.
    verifier.refresh().await.unwrap();
    verifier.user(&by_ec).await.unwrap();
    assert_eq!(verifier.user_token_cache_hits(), 1);
    assert_eq!(verifier.cached_user_tokens(), 2);

    // The issuer revokes its EC key and publishes other material under the Ed25519 key's id.
    let stranger = Issuer::new();
    let mut set = issuer.jwks();
    set.keys
        .retain(|k| k.common.key_id.as_deref() == Some("t-rsa"));
    set.keys.extend(
        stranger
            .jwks()
            .keys
            .into_iter()
            .filter(|k| k.common.key_id.as_deref() == Some("t-ed")),
    );
    *server.set.lock().unwrap() = serde_json::to_value(set).unwrap();
    verifier.refresh().await.unwrap();
    assert_eq!(verifier.cached_user_tokens(), 0, "both forgotten");

    let err = verifier.user(&by_ec).await.unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
    let err = verifier.user(&by_ed).await.unwrap_err();
    assert_eq!(err, TokenError::BadSignature);
    assert_eq!(verifier.user_token_cache_hits(), 1, "no answer from memory");
}
