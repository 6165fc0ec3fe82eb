//! Users' tokens on `POST /api/v1/applications`: every kind of bad token is refused with its
//! reason, real-name levels are enforced per item, the applicant must be the token's user, and
//! a good token of each accepted algorithm is taken. Tokens are made with `jsonwebtoken` and
//! keys generated in the test.

mod common;

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
