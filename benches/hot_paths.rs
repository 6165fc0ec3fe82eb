//! Micro-benchmarks of the steps an application goes through in the hub, on the repository's
//! own configuration and example messages (`cargo bench --bench hot_paths`):
//!
//! - acceptance: parsing the ~2 KB body, schema validation, the catalog check (lookup in the
//!   store and drift), the identifier checks the schema formats run, the durable commit;
//! - delivery: mapping canonical → legacy (SOAP XML in GB18030, REST JSON), and the claim and
//!   attempt commits;
//! - inbound: mapping legacy → canonical (XML, JSON);
//! - identity: the applicant's token (RS256, from the demo issuer the repository trusts)
//!   checked the first time, and again from memory.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::Value;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tongban::catalog;
use tongban::config::Config;
use tongban::ids;
use tongban::mapping::Node;
use tongban::model::ItemRef;
use tongban::store::{AttemptOutcome, NewApplication, Store};

/// The namespace of the hub's own SOAP header entries (as the lanes write them).
const HUB_NS: &str = "urn:tongban:hub:2026";
const SCJG_ITEM: &str = "11210100MB1529370K300011800200001";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config() -> Config {
    Config::load(&repo()).unwrap_or_else(|e| panic!("the repository configuration compiles: {e}"))
}

fn read(relative: &str) -> Vec<u8> {
    std::fs::read(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn json(relative: &str) -> Value {
    serde_json::from_slice(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The example 食品经营许可 application, as the hub stores it (with an id).
fn scjg_application() -> Value {
    json("examples/messages/application.json")
}

/// The SOAP header entry the lane adds: the idempotency key.
fn idempotency_header(id: &str) -> Vec<Node> {
    let mut key = Node::named("IdempotencyKey");
    key.attrs.push(("xmlns".into(), HUB_NS.into()));
    key.value = Some(Value::String(id.into()));
    vec![key]
}

fn mapping(c: &mut Criterion) {
    let config = config();
    let scjg = config.mappings["scjg-food-application"].clone();
    let rst = config.mappings["rst-card-application"].clone();
    let scjg_canonical = scjg_application();
    let scjg_xml = read("mappings/tests/scjg-food-application/new-license.legacy.xml");
    let rst_canonical = json("mappings/tests/rst-card-application/card-online.canonical.json");
    let rst_json = read("mappings/tests/rst-card-application/card-online.legacy.json");
    // A case event as the system sends it: in GB18030, as its mapping declares.
    let scjg_event = config.mappings["scjg-food-event"].clone();
    let scjg_event_xml = {
        let text = String::from_utf8(read("mappings/tests/scjg-food-event/accept.legacy.xml"))
            .expect("UTF-8")
            .replace("encoding=\"UTF-8\"", "encoding=\"GB18030\"");
        encoding_rs::GB18030.encode(&text).0.into_owned()
    };
    // Each direction must work on these inputs, or the figures mean nothing.
    scjg.to_legacy(&scjg_canonical)
        .expect("scjg canonical → XML");
    scjg.to_canonical(&scjg_xml).expect("scjg XML → canonical");
    scjg_event
        .to_canonical(&scjg_event_xml)
        .expect("scjg event GB18030 XML → canonical");
    rst.to_legacy(&rst_canonical).expect("rst canonical → JSON");
    rst.to_canonical(&rst_json).expect("rst JSON → canonical");

    let mut g = c.benchmark_group("mapping");
    g.bench_function(
        "scjg-food-application canonical → SOAP XML (GB18030)",
        |b| {
            b.iter(|| {
                scjg.to_legacy_with_header(
                    black_box(&scjg_canonical),
                    idempotency_header("TB-210102-20261120-000123"),
                    None,
                )
            })
        },
    );
    // The part of canonical → XML that is only the character encoding.
    let envelope = scjg
        .to_legacy_with_header(
            &scjg_canonical,
            idempotency_header("TB-210102-20261120-000123"),
            None,
        )
        .expect("scjg canonical → XML");
    let (envelope_utf8, _, _) = encoding_rs::GB18030.decode(&envelope);
    let envelope_utf8 = envelope_utf8.into_owned();
    g.bench_function("GB18030 encoding of that SOAP envelope", |b| {
        b.iter_batched(
            || envelope_utf8.clone(),
            |text| tongban::mapping::xml::encode(text, encoding_rs::GB18030).len(),
            BatchSize::SmallInput,
        )
    });
    // What the same encoding costs through encoding_rs alone, which searches its tables for
    // each Chinese character.
    g.bench_function(
        "GB18030 encoding of that SOAP envelope (encoding_rs)",
        |b| {
            b.iter(|| {
                encoding_rs::GB18030
                    .encode(black_box(&envelope_utf8))
                    .0
                    .len()
            })
        },
    );
    g.bench_function("scjg-food-application SOAP XML → canonical", |b| {
        b.iter(|| scjg.to_canonical(black_box(&scjg_xml)))
    });
    g.bench_function(
        "scjg-food-event case event, XML in GB18030 → canonical",
        |b| b.iter(|| scjg_event.to_canonical(black_box(&scjg_event_xml))),
    );
    g.bench_function("rst-card-application canonical → JSON", |b| {
        b.iter(|| rst.to_legacy(black_box(&rst_canonical)))
    });
    g.bench_function("rst-card-application JSON → canonical", |b| {
        b.iter(|| rst.to_canonical(black_box(&rst_json)))
    });
    g.finish();
}

fn acceptance(c: &mut Criterion) {
    let config = config();
    let body = read("examples/messages/application.json");
    let application = scjg_application();
    assert!(
        config
            .schemas
            .validate("application", &application)
            .is_empty(),
        "the example application is valid"
    );
    let items = catalog::parse_import(
        &config.schemas,
        &String::from_utf8(read("examples/province/catalog.json")).unwrap(),
    )
    .unwrap_or_else(|_| panic!("the example catalog imports"));
    let mut item = items
        .into_iter()
        .find(|i| i.code == SCJG_ITEM)
        .expect("the 食品经营许可 item is in the example catalog");
    item.version = Some(1);
    let reference: ItemRef =
        serde_json::from_value(application["item"].clone()).expect("an item reference");
    assert!(catalog::drift(&reference, Some(&item)).is_empty());

    let mut g = c.benchmark_group("acceptance");
    g.bench_function("parse the ~2 KB application JSON", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).unwrap())
    });
    g.bench_function("schema validation (application)", |b| {
        b.iter(|| {
            config
                .schemas
                .validate("application", black_box(&application))
        })
    });
    g.bench_function("catalog drift check", |b| {
        b.iter(|| {
            let reference: ItemRef =
                serde_json::from_value(black_box(&application)["item"].clone()).unwrap();
            catalog::drift(&reference, Some(black_box(&item)))
        })
    });
    g.bench_function("serialize the application for storing", |b| {
        b.iter(|| black_box(&application).to_string())
    });
    g.finish();

    let mut g = c.benchmark_group("ids");
    g.bench_function("item code", |b| {
        b.iter(|| ids::check_item_code(black_box(SCJG_ITEM)).is_ok())
    });
    g.bench_function("USCC", |b| {
        b.iter(|| ids::check_uscc(black_box("91210102MA0Y7K3L23")).is_ok())
    });
    g.bench_function("citizen id", |b| {
        b.iter(|| ids::check_citizen_id(black_box("210102198503120033")).is_ok())
    });
    g.finish();
}

/// A fresh store on SQLite in `dir`, opened as the hub opens it (WAL, `synchronous = FULL`),
/// with the example catalog.
fn sqlite_store(rt: &tokio::runtime::Runtime, dir: &std::path::Path, config: &Config) -> Store {
    rt.block_on(async {
        let store = Store::open("sqlite://data/bench.db", dir, 8)
            .await
            .expect("SQLite store opens");
        tongban::hub::seed_catalog(&store, config)
            .await
            .expect("the catalog seeds");
        store
    })
}

/// The store steps on SQLite in a temporary directory: every commit waits for an fsync.
fn store(c: &mut Criterion) {
    let config = config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let body = scjg_application().to_string();
    let counter = AtomicU64::new(0);
    let next_id = || format!("TB-MB-{:08}", counter.fetch_add(1, Ordering::Relaxed));
    let accept = |store: &Store, id: &str| {
        rt.block_on(store.accept_application(&NewApplication {
            id,
            item_code: SCJG_ITEM,
            item_version: 1,
            department: "11210100MB1529370K",
            system_id: "sy-scjg-food",
            body: &body,
            idempotency: None,
            identity: None,
            message: None,
        }))
        .unwrap()
    };

    let mut g = c.benchmark_group("store (SQLite, durable)");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(4));
    {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&rt, dir.path(), &config);
        g.bench_function("catalog lookup (current item)", |b| {
            b.iter(|| rt.block_on(store.current_item(SCJG_ITEM)).unwrap())
        });
        g.bench_function("accept an application (one commit)", |b| {
            b.iter_batched(next_id, |id| accept(&store, &id), BatchSize::SmallInput)
        });
        rt.block_on(store.close());
    }
    {
        // A store of its own, so each claim finds exactly the one application just accepted.
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&rt, dir.path(), &config);
        g.bench_function("accept, claim, record delivered (three commits)", |b| {
            b.iter_batched(
                next_id,
                |id| {
                    accept(&store, &id);
                    rt.block_on(async {
                        let claimed = store
                            .claim_deliveries("sy-scjg-food", 8, 20_000)
                            .await
                            .unwrap();
                        assert_eq!(claimed.len(), 1);
                        for d in &claimed {
                            store
                                .record_attempt(
                                    d,
                                    0,
                                    1,
                                    &AttemptOutcome::Delivered { status: Some(200) },
                                )
                                .await
                                .unwrap();
                        }
                    })
                },
                BatchSize::SmallInput,
            )
        });
        rt.block_on(store.close());
    }
    g.finish();
}

/// The output of a future that never waits (a verifier whose keys come from a file), without
/// a runtime's overhead in the figure.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the verification waited"),
    }
}

/// A user token for the example application's applicant, signed RS256 by the demo issuer
/// (`examples/identity/`), told apart from others by `jti`.
fn user_token(config: &Config, key: &jsonwebtoken::EncodingKey, kid: &str, jti: usize) -> String {
    let application = scjg_application();
    let applicant = &application["applicant"];
    let now = tongban::clock::now_millis() / 1000;
    let claims = serde_json::json!({
        "iss": config.hub.identity.issuer,
        "aud": config.hub.identity.user_audience,
        "sub": "bench-user",
        "jti": format!("bench-{jti}"),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": applicant["name"],
        "id_type": applicant["id_type"],
        "id_number": applicant["id_number"],
        "applicant_kind": applicant["kind"],
        "real_name_level": 3,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).expect("the demo issuer signs")
}

fn identity(c: &mut Criterion) {
    use tongban::auth::tokens::{USER_CACHE_ENTRIES, Verifier};
    let config = config();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&read("examples/identity/issuer-demo.pem"))
        .expect("the demo issuer's RSA key");
    let kid = json("examples/identity/jwks.json")["keys"][0]["kid"]
        .as_str()
        .expect("the demo key's id")
        .to_string();
    let verifier = Verifier::new(&config.hub.identity);
    let token = user_token(&config, &key, &kid, 0);
    ready(verifier.user(&token)).expect("the hub takes the demo issuer's token");

    let mut g = c.benchmark_group("identity");
    // One more distinct token than the verifier remembers, taken in turn: the oldest is always
    // the next one, so every check is a first one. Signed (about 1 ms each) only when this
    // benchmark runs.
    let first_tokens = std::cell::OnceCell::new();
    let mut next = 0;
    g.bench_function("user token (RS256), first check", |b| {
        let tokens: &Vec<String> = first_tokens.get_or_init(|| {
            (1..=USER_CACHE_ENTRIES + 1)
                .map(|jti| user_token(&config, &key, &kid, jti))
                .collect()
        });
        b.iter(|| {
            next = (next + 1) % tokens.len();
            ready(verifier.user(black_box(&tokens[next]))).expect("taken")
        })
    });
    g.bench_function("user token (RS256), cached", |b| {
        b.iter(|| ready(verifier.user(black_box(&token))).expect("taken"))
    });
    g.finish();
}

/// Sealing a result as a credential (`eddsa-jcs-2022`): the aim is at most 0.1 ms of CPU.
fn sealing(c: &mut Criterion) {
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("a key");
    let public = tongban::seal::multikey(&key);
    let options = tongban::seal::ProofOptions {
        verification_method: format!("https://hub.example/.well-known/keys#{public}"),
        created: "2026-12-06T02:00:00Z".into(),
        proof_purpose: "assertionMethod".into(),
    };
    // A result as systems send it, in a credential's envelope.
    let credential = serde_json::json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "type": ["VerifiableCredential", "ElectronicLicense"],
        "issuer": { "id": "https://hub.example/departments/11210100MB1529370K", "name": "沈阳市市场监督管理局" },
        "validFrom": "2026-11-30T16:00:00+08:00",
        "credentialSubject": json("examples/messages/result.json"),
    });
    let sealed = tongban::seal::sign(&credential, &options, &key).expect("sealed");
    let mut g = c.benchmark_group("seal");
    g.bench_function("sign a result credential (eddsa-jcs-2022)", |b| {
        b.iter(|| tongban::seal::sign(black_box(&credential), &options, &key).expect("sealed"))
    });
    g.bench_function("verify it", |b| {
        b.iter(|| tongban::seal::verify(black_box(&sealed), &public).expect("verifies"))
    });
    g.finish();
}

/// What telemetry adds to one application: the spans every application gets whether sampled or
/// not (an id and a `traceparent` each), a sampled span queued for the exporter, and a lane's
/// metrics for one attempt.
fn telemetry(c: &mut Criterion) {
    use tongban::telemetry::trace::{SpanKind, Tracer};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _entered = rt.enter();
    let unexported = Tracer::default();
    // Sampled and exported to an address nothing listens on: the spans are queued, batched and
    // dropped, as with a collector that is down (the most the hot path pays).
    let exporting = Tracer::exporting(&tongban::telemetry::Export {
        endpoint: "http://127.0.0.1:9/v1/traces".into(),
        sample_ratio: 1.0,
        service_name: "bench".into(),
    });
    let parent = tongban::telemetry::SpanContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    let metrics = tongban::telemetry::Metrics::default();
    let lane = metrics.lane("sy-scjg-food", "soap");
    let mut g = c.benchmark_group("telemetry");
    g.bench_function("unsampled span: start, traceparent, end", |b| {
        b.iter(|| {
            let span = unexported.start("delivery.attempt", SpanKind::Client, None);
            let traceparent = span.context().traceparent();
            span.end();
            black_box(traceparent)
        })
    });
    g.bench_function("sampled span with 4 attributes, queued for export", |b| {
        b.iter(|| {
            let mut span = exporting.start("delivery.attempt", SpanKind::Client, parent);
            span.set("tongban.system", "sy-scjg-food");
            span.set("tongban.application", "TB-210102-20261206-000501");
            span.set("tongban.attempt", 1);
            span.set("tongban.outcome", "delivered");
            let traceparent = span.context().traceparent();
            span.end();
            black_box(traceparent)
        })
    });
    g.bench_function("a lane's metrics for one attempt", |b| {
        b.iter(|| {
            let in_flight = lane.in_flight();
            lane.attempt_took(Duration::from_micros(800));
            drop(in_flight);
            lane.attempt_ended(tongban::telemetry::metrics::DeliveryOutcome::Delivered);
        })
    });
    g.finish();
}

fn fast() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

criterion_group! {
    name = hot_paths;
    config = fast();
    targets = mapping, acceptance, identity, store, sealing, telemetry
}
criterion_main!(hot_paths);
