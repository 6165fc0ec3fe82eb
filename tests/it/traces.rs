//! One application's trace, span by span, as an OTLP collector receives it: the platform's
//! `traceparent` continued through acceptance, the delivery (whose `traceparent` the department
//! system gets as an HTTP header and a SOAP header entry), the case event the system posts back
//! under its own span, and the alert supervision raises on it. A trace the platform did not
//! sample is carried but not recorded; nothing exported names the applicant.

use crate::common;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::Issuer;
use common::edit::{SCJG, http_systems_config};
use common::mock::{Mock, Mode};
use common::wait::eventually;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tongban::auth::Role;
use tongban::store::Store;
use tongban::telemetry::SpanContext;

/// The platform's trace: its id, and the span of the platform's request.
const PLATFORM_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PLATFORM_SPAN: &str = "00f067aa0ba902b7";
/// The department system's span for the step it reports (a child of the hub's attempt).
const DEPARTMENT_SPAN: &str = "b7ad6b7169203331";

/// An OTLP/HTTP collector on 127.0.0.1: every span posted to `/v1/traces`, as JSON.
struct Collector {
    base: String,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(take_spans))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { base, spans }
    }

    /// The spans of `trace` received so far.
    fn trace(&self, trace: &str) -> Vec<Value> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == trace)
            .cloned()
            .collect()
    }

    /// Everything received, as text.
    fn all_text(&self) -> String {
        Value::Array(self.spans.lock().unwrap().clone()).to_string()
    }
}

async fn take_spans(
    State(spans): State<Arc<Mutex<Vec<Value>>>>,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let mut taken = spans.lock().unwrap();
    for resource in body["resourceSpans"].as_array().into_iter().flatten() {
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"], "tongban-test",
            "the configured service name"
        );
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            taken.extend(scope["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    (StatusCode::OK, axum::Json(json!({})))
}

/// The one span named `name`.
fn span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let named: Vec<&Value> = spans.iter().filter(|s| s["name"] == name).collect();
    assert_eq!(named.len(), 1, "one {name} span in {spans:#?}");
    named[0]
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or_else(|| panic!("no attribute {key} in {span:#}"))
}

struct Keys {
    platform: String,
    system: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_trace_runs_from_the_platform_through_the_department_and_back() {
    let collector = Collector::start().await;
    let soap = Mock::start(true, Mode::Ok).await;
    let rest = Mock::start(false, Mode::Ok).await;
    let issuer = Issuer::new();
    let dir = http_systems_config(&issuer, &soap.base(), &rest.base(), &[]);
    // Only what the platform samples is recorded: the hub samples none of its own traces.
    let hub_toml = dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&hub_toml).unwrap();
    text.push_str(&format!(
        "\n[telemetry]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0\nservice_name = \"tongban-test\"\n",
        collector.base
    ));
    std::fs::write(&hub_toml, text).unwrap();
    let hub = common::hub::InProcessHub::start(dir.path(), async |store: &Store| Keys {
        platform: common::api_key(store, Role::Platform, None).await,
        system: common::api_key(store, Role::System, Some(SCJG)).await,
    })
    .await;
    let http = reqwest::Client::new();
    let submit = |id: &str, traceparent: Option<String>| {
        let mut app = common::scjg_application();
        app["id"] = json!(id);
        let mut request = http
            .post(format!("{}/api/v1/applications", hub.base))
            .bearer_auth(&hub.callers.platform)
            .header("tongban-user-token", issuer.token_for(&app, 3))
            .json(&app);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let traced = "TB-210102-20261206-000501";
    let answer = submit(
        traced,
        Some(format!("00-{PLATFORM_TRACE}-{PLATFORM_SPAN}-01")),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let untraced = "TB-210102-20261206-000502";
    let answer = submit(untraced, None).await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);

    // The department gets the attempt's traceparent as a header and in the SOAP header.
    let receptions = eventually("both applications at the SOAP system", || async {
        let got = soap.receptions();
        if got.len() >= 2 {
            Ok(got)
        } else {
            Err(format!("{} received", got.len()))
        }
    })
    .await;
    let reception_of = |id: &str| {
        receptions
            .iter()
            .find(|r| r.key.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} delivered"))
            .clone()
    };
    let delivered = reception_of(traced);
    let sent = delivered.headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let attempt = SpanContext::parse(&sent).expect("a valid traceparent");
    assert_eq!(attempt.trace_id.to_string(), PLATFORM_TRACE, "{sent}");
    assert_ne!(
        attempt.span_id.to_string(),
        PLATFORM_SPAN,
        "the hub's own span"
    );
    assert!(attempt.sampled, "the platform sampled it");
    let body = String::from_utf8_lossy(&delivered.body).into_owned();
    assert!(
        body.contains(&format!(
            "<traceparent xmlns=\"urn:tongban:hub:2026\">{sent}</traceparent>"
        )),
        "the SOAP header entry carries the attempt's traceparent: {body}"
    );
    // Unsampled, yet carried: the system can join its own trace to it.
    let other = reception_of(untraced);
    let other_sent = other.headers["traceparent"].to_str().unwrap().to_string();
    let other_context = SpanContext::parse(&other_sent).expect("a valid traceparent");
    assert!(!other_context.sampled, "{other_sent}");
    assert_ne!(other_context.trace_id, attempt.trace_id);
    assert!(String::from_utf8_lossy(&other.body).contains(&other_sent));

    // The system reports a decision before any acceptance, under a span of its own in the
    // trace: stored, and supervision flags the step out of order.
    let event = common::read_text("mappings/tests/scjg-food-event/decision.legacy.xml")
        .replace("TB-210102-20261120-000123", traced);
    let posted = http
        .post(format!("{}/api/v1/systems/{SCJG}/events", hub.base))
        .bearer_auth(&hub.callers.system)
        .header("content-type", "text/xml; charset=utf-8")
        .header(
            "traceparent",
            format!("00-{PLATFORM_TRACE}-{DEPARTMENT_SPAN}-01"),
        )
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);

    let names = [
        "application.accept",
        "application.map",
        "application.commit",
        "delivery.claim",
        "delivery.attempt",
        "event.receive",
        "alert.raise",
    ];
    let spans = eventually("the trace's spans at the collector", || async {
        let spans = collector.trace(PLATFORM_TRACE);
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !spans.iter().any(|s| s["name"] == *n))
            .collect();
        let alerts = spans.iter().filter(|s| s["name"] == "alert.raise").count();
        if missing.is_empty() && alerts == 2 {
            Ok(spans)
        } else {
            Err(format!("missing {missing:?}, {alerts} alert(s)"))
        }
    })
    .await;
    let id = |span: &Value| span["spanId"].as_str().unwrap().to_string();
    let parent = |span: &Value| {
        span["parentSpanId"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let accept = span(&spans, "application.accept");
    assert_eq!(
        parent(accept),
        PLATFORM_SPAN,
        "under the platform's request"
    );
    assert_eq!(accept["kind"], 2, "server");
    assert_eq!(
        attribute(accept, "tongban.application")["stringValue"],
        traced
    );
    assert_eq!(attribute(accept, "tongban.system")["stringValue"], SCJG);
    for name in ["application.map", "application.commit"] {
        assert_eq!(
            parent(span(&spans, name)),
            id(accept),
            "{name} within the acceptance"
        );
    }
    let claim = span(&spans, "delivery.claim");
    assert_eq!(parent(claim), id(accept));
    let delivery = span(&spans, "delivery.attempt");
    assert_eq!(
        parent(delivery),
        id(accept),
        "the attempt continues the stored trace"
    );
    assert_eq!(
        id(delivery),
        attempt.span_id.to_string(),
        "the span the system was told"
    );
    assert_eq!(delivery["kind"], 3, "client");
    assert_eq!(
        attribute(delivery, "tongban.outcome")["stringValue"],
        "delivered"
    );
    assert_eq!(attribute(delivery, "tongban.attempt")["intValue"], "1");
    assert_eq!(
        attribute(delivery, "tongban.protocol")["stringValue"],
        "soap"
    );
    assert_eq!(
        attribute(delivery, "http.response.status_code")["intValue"],
        "200"
    );
    let received = span(&spans, "event.receive");
    assert_eq!(
        parent(received),
        DEPARTMENT_SPAN,
        "under the system's own span"
    );
    assert_eq!(
        attribute(received, "tongban.outcome")["stringValue"],
        "stored"
    );
    assert_eq!(attribute(received, "tongban.via")["stringValue"], "webhook");
    // Out of order, and dated before the application was accepted.
    let mut rules = Vec::new();
    for alert in spans.iter().filter(|s| s["name"] == "alert.raise") {
        assert_eq!(parent(alert), id(accept), "{alert:#}");
        rules.push(
            attribute(alert, "tongban.rule")["stringValue"]
                .as_str()
                .unwrap(),
        );
    }
    rules.sort();
    assert_eq!(rules, ["implausible_time", "out_of_order"]);
    for s in &spans {
        let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start > 0 && end >= start, "{s:#}");
    }
    assert!(
        collector
            .trace(&other_context.trace_id.to_string())
            .is_empty(),
        "an unsampled trace is not recorded"
    );

    // Nothing exported names the applicant.
    let app = common::scjg_application();
    let exported = collector.all_text();
    for personal in [
        app["applicant"]["id_number"].as_str().unwrap(),
        app["applicant"]["name"].as_str().unwrap(),
    ] {
        assert!(!exported.contains(personal), "{personal} in the spans");
    }
    hub.stop(Duration::from_secs(20)).await;
}
