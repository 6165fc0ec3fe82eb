//! `/metrics` after a scripted run, on SQLite and PostgreSQL: the hub in front of one system
//! that is down (the REST system's port refuses connections) and one that refuses for good
//! (SOAP faults) until it is fixed; one dead letter, replayed through the API; case events
//! posted to the webhook (stored, repeated, unreadable, about no application); applications
//! with valid tokens and one with a forged token; a supervision stream opened and closed. Each
//! figure the scrape shows is what the run caused, and with the store gone the scrape still
//! answers, without the store's figures.

use crate::common;
use crate::on_both_backends;

use axum::http::StatusCode;
use common::Issuer;
use common::edit::{RST, SCJG, set_adapter_key};
use common::hub::InProcessHub;
use common::mock::{Mock, Mode};
use common::wait::eventually;
use common::{rst_application, scjg_application};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::store::Store;

/// The identity system the configuration trusts.
static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);
/// Keys of the same names the configuration does not trust: a forger's.
static FORGER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

/// The application id in the example event messages.
const EXAMPLE_ID: &str = "TB-210102-20261120-000123";
/// Applications for the system that is down.
const DOWN_APPLICATIONS: usize = 5;
const STOP_PATIENCE: Duration = Duration::from_secs(20);

struct Callers {
    platform: String,
    admin: String,
    supervisor: String,
    scjg: String,
}

/// One sample of the scrape: the value of `name` with exactly `labels` (in the family's
/// order), if the scrape has it.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{}}} ", labels.join(","))
    };
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: {v} is no number"))
    })
}

/// As [`sample`], and it must be there.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// Whether the scrape has any sample of `name` (its own lines, not its HELP and TYPE).
fn has_series(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with(['{', ' ']))
    })
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// Every family of the metrics contract, with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("tongban_deliveries_total", "counter"),
    ("tongban_delivery_attempt_duration_seconds", "histogram"),
    ("tongban_delivery_replays_total", "counter"),
    ("tongban_outbox_depth", "gauge"),
    ("tongban_outbox_oldest_age_seconds", "gauge"),
    ("tongban_dead_letters", "gauge"),
    ("tongban_breaker_state", "gauge"),
    ("tongban_deliveries_in_flight", "gauge"),
    ("tongban_rate_limited_waits_total", "counter"),
    ("tongban_rate_limited_wait_seconds_total", "counter"),
    ("tongban_inbound_messages_total", "counter"),
    ("tongban_inbound_refusals_total", "counter"),
    ("tongban_applications_total", "counter"),
    ("tongban_feed_head_sequence", "gauge"),
    ("tongban_supervision_engine_lag_entries", "gauge"),
    ("tongban_alerts_open", "gauge"),
    ("tongban_sse_subscribers", "gauge"),
    ("tongban_amqp_publisher_lag_entries", "gauge"),
    ("tongban_cluster_hubs", "gauge"),
    ("tongban_store_commit_duration_seconds", "histogram"),
    ("tongban_store_commit_batch_size", "histogram"),
    ("tongban_store_pool_connections", "gauge"),
    ("tongban_store_pool_acquire_wait_seconds", "histogram"),
    ("tongban_token_verifications_total", "counter"),
    ("tongban_identity_jwks_age_seconds", "gauge"),
    ("tongban_http_requests_total", "counter"),
    ("tongban_http_request_duration_seconds", "histogram"),
];

fn assert_every_family(text: &str) {
    for (name, kind) in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no TYPE {kind} for {name}:\n{text}"
        );
    }
}

/// POSTs an application with `token` as its applicant's: the status.
async fn post_application(
    http: &reqwest::Client,
    base: &str,
    platform: &str,
    body: &Value,
    token: &str,
) -> StatusCode {
    http.post(format!("{base}/api/v1/applications"))
        .bearer_auth(platform)
        .header("content-type", "application/json")
        .header("tongban-user-token", token)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// The 市场监管 system posts its event `name` (a file of its mapping's tests) about
/// `application`: the status.
async fn post_event(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    name: &str,
    application: &str,
) -> StatusCode {
    let text = std::fs::read_to_string(
        common::repo().join(format!("mappings/tests/scjg-food-event/{name}.legacy.xml")),
    )
    .unwrap();
    http.post(format!("{base}/api/v1/systems/{SCJG}/events"))
        .bearer_auth(secret)
        .header("content-type", "text/xml; charset=utf-8")
        .body(text.replace(EXAMPLE_ID, application))
        .send()
        .await
        .unwrap()
        .status()
}

async fn every_figure_is_what_the_run_caused(store: &Store) {
    common::logs::capture();
    let scjg = Mock::start(true, Mode::SoapClientFault).await;
    let rst = Mock::start_refusing(false, Mode::Ok).await;
    let dir = common::edit::http_systems_config(
        &ISSUER,
        &scjg.base(),
        &rst.base(),
        &[
            ("timeout_ms", "1000"),
            ("rate_limit", "{ per_second = 1000, burst = 100 }"),
            (
                "retry",
                "{ attempts = 30, initial_backoff_ms = 50, max_backoff_ms = 400, max_age_seconds = 600 }",
            ),
        ],
    );
    // The system that is down: its failed deliveries are tried again only minutes later, long
    // after the test; one attempt a second, so that attempts made together wait for the limit.
    set_adapter_key(
        dir.path(),
        RST,
        "retry",
        "{ initial_backoff_ms = 600000, max_backoff_ms = 600000, max_age_seconds = 3600 }",
    );
    set_adapter_key(
        dir.path(),
        RST,
        "rate_limit",
        "{ per_second = 1, burst = 1 }",
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = InProcessHub::start_with_store(dir.path(), store, listener, async |store: &Store| {
        Callers {
            platform: common::api_key(store, Role::Platform, None).await,
            admin: common::api_key(store, Role::Admin, None).await,
            supervisor: common::api_key(store, Role::Supervisor, None).await,
            scjg: common::api_key(store, Role::System, Some(SCJG)).await,
        }
    })
    .await;
    let base = hub.base.as_str();
    let callers = &hub.callers;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // A fresh hub already lists every family, and the fixed sets at 0.
    let fresh = scrape(&http, base).await;
    assert_every_family(&fresh);
    assert_eq!(
        value(
            &fresh,
            "tongban_applications_total",
            &[("outcome", "accepted")]
        ),
        0.0
    );
    for system in [SCJG, RST] {
        assert_eq!(
            value(
                &fresh,
                "tongban_breaker_state",
                &[("system", system), ("state", "closed")]
            ),
            1.0
        );
    }

    // Applications: one for the system that refuses, five for the one that is down, each with
    // its applicant's token; and one whose token is forged.
    let scjg_app = scjg_application();
    assert_eq!(
        post_application(
            &http,
            base,
            &callers.platform,
            &scjg_app,
            &ISSUER.token_for(&scjg_app, 3)
        )
        .await,
        StatusCode::ACCEPTED
    );
    for _ in 0..DOWN_APPLICATIONS {
        let app = rst_application();
        let token = ISSUER.token_for(&app, 3);
        assert_eq!(
            post_application(&http, base, &callers.platform, &app, &token).await,
            StatusCode::ACCEPTED
        );
    }
    let forged = FORGER.token_for(&scjg_app, 3);
    assert_eq!(
        post_application(&http, base, &callers.platform, &scjg_app, &forged).await,
        StatusCode::UNAUTHORIZED
    );

    // The refusal is a dead letter; the system that is down has failed each once, and its
    // breaker is open.
    let before_replay = eventually("the dead letter and the down system's failures", || async {
        let text = scrape(&http, base).await;
        let refused = sample(
            &text,
            "tongban_deliveries_total",
            &[
                ("system", SCJG),
                ("protocol", "soap"),
                ("outcome", "refused"),
            ],
        );
        let retried = sample(
            &text,
            "tongban_deliveries_total",
            &[
                ("system", RST),
                ("protocol", "rest"),
                ("outcome", "retried"),
            ],
        );
        let open = sample(
            &text,
            "tongban_breaker_state",
            &[("system", RST), ("state", "open")],
        );
        let dead = sample(&text, "tongban_dead_letters", &[("system", SCJG)]);
        if refused == Some(1.0)
            && retried == Some(DOWN_APPLICATIONS as f64)
            && open == Some(1.0)
            && dead == Some(1.0)
        {
            Ok(text)
        } else {
            Err(format!(
                "refused {refused:?}, retried {retried:?}, open {open:?}, dead {dead:?}"
            ))
        }
    })
    .await;
    let text = &before_replay;
    for (system, protocol, outcome, n) in [
        (SCJG, "soap", "delivered", 0.0),
        (SCJG, "soap", "retried", 0.0),
        (SCJG, "soap", "dead", 0.0),
        (RST, "rest", "delivered", 0.0),
        (RST, "rest", "refused", 0.0),
        (RST, "rest", "dead", 0.0),
    ] {
        let labels = [
            ("system", system),
            ("protocol", protocol),
            ("outcome", outcome),
        ];
        assert_eq!(
            value(text, "tongban_deliveries_total", &labels),
            n,
            "{labels:?}"
        );
    }
    assert_eq!(
        value(
            text,
            "tongban_delivery_attempt_duration_seconds_count",
            &[("system", RST), ("protocol", "rest")]
        ),
        DOWN_APPLICATIONS as f64
    );
    assert_eq!(
        value(
            text,
            "tongban_delivery_attempt_duration_seconds_count",
            &[("system", SCJG), ("protocol", "soap")]
        ),
        1.0
    );
    assert_eq!(
        value(
            text,
            "tongban_breaker_state",
            &[("system", RST), ("state", "closed")]
        ),
        0.0
    );
    assert_eq!(
        value(
            text,
            "tongban_breaker_state",
            &[("system", SCJG), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        value(text, "tongban_outbox_depth", &[("system", RST)]),
        DOWN_APPLICATIONS as f64
    );
    assert!(
        value(
            text,
            "tongban_outbox_oldest_age_seconds",
            &[("system", RST)]
        ) > 0.0
    );
    assert_eq!(
        value(text, "tongban_outbox_depth", &[("system", SCJG)]),
        0.0
    );
    assert_eq!(
        value(
            text,
            "tongban_outbox_oldest_age_seconds",
            &[("system", SCJG)]
        ),
        0.0
    );
    assert_eq!(value(text, "tongban_dead_letters", &[("system", RST)]), 0.0);
    for system in [SCJG, RST] {
        assert_eq!(
            value(text, "tongban_deliveries_in_flight", &[("system", system)]),
            0.0
        );
    }
    // Five attempts at once, one a second: all but the first waited, unless the platform's
    // requests came more than a second apart.
    let waits = value(text, "tongban_rate_limited_waits_total", &[("system", RST)]);
    assert!((1.0..DOWN_APPLICATIONS as f64).contains(&waits), "{waits}");
    assert!(
        value(
            text,
            "tongban_rate_limited_wait_seconds_total",
            &[("system", RST)]
        ) > 0.0
    );
    assert_eq!(
        value(
            text,
            "tongban_rate_limited_waits_total",
            &[("system", SCJG)]
        ),
        0.0
    );
    assert_eq!(
        value(text, "tongban_delivery_replays_total", &[("system", SCJG)]),
        0.0
    );
    // Six applications accepted with valid tokens, one refused for its forged one.
    assert_eq!(
        value(
            text,
            "tongban_applications_total",
            &[("outcome", "accepted")]
        ),
        6.0
    );
    assert_eq!(
        value(
            text,
            "tongban_applications_total",
            &[("outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(
        value(
            text,
            "tongban_applications_total",
            &[("outcome", "unavailable")]
        ),
        0.0
    );
    let tokens = |outcome| {
        value(
            text,
            "tongban_token_verifications_total",
            &[("kind", "user"), ("outcome", outcome)],
        )
    };
    assert_eq!(tokens("valid"), 6.0);
    assert_eq!(tokens("bad_signature"), 1.0);
    assert_eq!(
        tokens("expired") + tokens("unknown_key") + tokens("malformed"),
        0.0
    );

    // The system is fixed and the dead letter replayed, through the API.
    scjg.set_mode(Mode::Ok);
    let letters: Value = http
        .get(format!("{base}/api/v1/dead-letters?system={SCJG}"))
        .bearer_auth(&callers.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letter = letters["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let application = letters["dead_letters"][0]["application_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replayed = http
        .post(format!("{base}/api/v1/dead-letters/{letter}/replay"))
        .bearer_auth(&callers.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::OK);

    // The system reports on its application: a step, the same step again, a document its
    // mapping cannot read, and a step about no application the hub routed.
    assert_eq!(
        post_event(&http, base, &callers.scjg, "accept", &application).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_event(&http, base, &callers.scjg, "accept", &application).await,
        StatusCode::OK
    );
    assert_eq!(
        post_event(&http, base, &callers.scjg, "broken", &application).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_event(&http, base, &callers.scjg, "accept", EXAMPLE_ID).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A supervisor follows the supervision stream for a while.
    let stream = http
        .get(format!("{base}/api/v1/supervision/stream"))
        .bearer_auth(&callers.supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);

    let after = eventually("the replayed delivery to be delivered", || async {
        let text = scrape(&http, base).await;
        let delivered = sample(
            &text,
            "tongban_deliveries_total",
            &[
                ("system", SCJG),
                ("protocol", "soap"),
                ("outcome", "delivered"),
            ],
        );
        if delivered == Some(1.0) {
            Ok(text)
        } else {
            Err(format!("delivered {delivered:?}"))
        }
    })
    .await;
    let text = &after;
    assert_eq!(
        value(text, "tongban_delivery_replays_total", &[("system", SCJG)]),
        1.0
    );
    assert_eq!(
        value(text, "tongban_dead_letters", &[("system", SCJG)]),
        0.0
    );
    assert_eq!(
        value(
            text,
            "tongban_deliveries_total",
            &[
                ("system", SCJG),
                ("protocol", "soap"),
                ("outcome", "refused")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(text, "tongban_outbox_depth", &[("system", RST)]),
        DOWN_APPLICATIONS as f64
    );
    let inbound = |outcome| {
        value(
            text,
            "tongban_inbound_messages_total",
            &[
                ("system", SCJG),
                ("kind", "event"),
                ("path", "webhook"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(inbound("stored"), 1.0);
    assert_eq!(inbound("duplicate"), 1.0);
    assert_eq!(inbound("refused"), 2.0);
    let refusals = |reason| {
        sample(
            text,
            "tongban_inbound_refusals_total",
            &[("system", SCJG), ("kind", "event"), ("reason", reason)],
        )
    };
    assert_eq!(refusals("mapping"), Some(1.0));
    assert_eq!(refusals("unknown_application"), Some(1.0));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("tongban_inbound_refusals_total{"))
            .count(),
        2,
        "no other reason class:\n{text}"
    );
    assert_eq!(
        value(
            text,
            "tongban_sse_subscribers",
            &[("stream", "supervision")]
        ),
        1.0
    );
    assert_eq!(
        value(text, "tongban_sse_subscribers", &[("stream", "results")]),
        0.0
    );

    // The store's and the hub's own figures.
    let head = value(text, "tongban_feed_head_sequence", &[]);
    assert!(head >= 1.0, "the stored step is on the feed: {head}");
    let lag = value(text, "tongban_supervision_engine_lag_entries", &[]);
    assert!((0.0..=head).contains(&lag), "{lag} of {head}");
    assert_eq!(
        value(text, "tongban_amqp_publisher_lag_entries", &[]),
        0.0,
        "no bus"
    );
    for level in ["warning", "yellow", "red"] {
        assert!(value(text, "tongban_alerts_open", &[("level", level)]) >= 0.0);
    }
    for writer in ["application", "case_event", "delivery_attempt", "audit"] {
        let commits = value(
            text,
            "tongban_store_commit_duration_seconds_count",
            &[("writer", writer)],
        );
        assert!(commits >= 1.0, "{writer}: {commits}");
        let writes = value(
            text,
            "tongban_store_commit_batch_size_sum",
            &[("writer", writer)],
        );
        assert!(
            writes >= commits,
            "{writer}: {writes} writes in {commits} commits"
        );
    }
    assert!(value(text, "tongban_store_pool_acquire_wait_seconds_count", &[]) >= 1.0);
    let connections = value(text, "tongban_store_pool_connections", &[("state", "idle")])
        + value(
            text,
            "tongban_store_pool_connections",
            &[("state", "in_use")],
        );
    assert!(connections >= 1.0, "{connections}");
    assert_eq!(
        value(text, "tongban_identity_jwks_age_seconds", &[]),
        0.0,
        "keys from a file"
    );
    assert!(
        value(
            text,
            "tongban_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/applications"),
                ("status", "202")
            ]
        ) == 6.0
    );

    // The stream ends; the store goes away: the scrape still answers, without the store's figures.
    drop(stream);
    eventually("the stream to be counted closed", || async {
        let text = scrape(&http, base).await;
        match sample(
            &text,
            "tongban_sse_subscribers",
            &[("stream", "supervision")],
        ) {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    hub.store.close().await;
    for _ in 0..2 {
        let text = scrape(&http, base).await;
        assert_every_family(&text);
        for name in [
            "tongban_outbox_depth",
            "tongban_dead_letters",
            "tongban_feed_head_sequence",
            "tongban_alerts_open",
        ] {
            assert!(!has_series(&text, name), "{name} without a store:\n{text}");
        }
        assert_eq!(
            value(
                &text,
                "tongban_deliveries_total",
                &[
                    ("system", SCJG),
                    ("protocol", "soap"),
                    ("outcome", "delivered")
                ]
            ),
            1.0
        );
    }
    assert!(
        common::logs::text().contains("metrics go without the store's figures"),
        "the missing figures are logged"
    );
    hub.stop(STOP_PATIENCE).await;
}

on_both_backends!(every_figure_is_what_the_run_caused);
