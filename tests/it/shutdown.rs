//! Stopping a hub whose parts do not stop: a request whose body never ends, a delivery to a
//! system that never answers and a poll of it that never returns. The stop takes one grace
//! period in all, not one per part, and what is still running at its end is stopped: after the
//! stop, the hub has hung up on the system and sends it nothing more.

use crate::common;

use common::edit::{RST, adapter_file, edit, set_key};
use common::wait::{PATIENCE, eventually, until};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tongban::auth::Role;
use tongban::store::{Accepted, NewApplication};

const GRACE_SECONDS: u64 = 2;

/// A department system that takes requests and never answers them. Until a delivery (a POST)
/// has come, polls (GETs) get an empty feed, so that the poll in flight when the hub stops is
/// one that started after the delivery.
struct Silent {
    base: String,
    deliveries: Arc<AtomicUsize>,
    polls_after_delivery: Arc<AtomicUsize>,
    /// Every request that reached it.
    requests: Arc<AtomicUsize>,
    /// Requests left unanswered, their connections kept open (a connection dropped would be
    /// an answer) …
    held: Arc<AtomicUsize>,
    /// … and how many of those the hub has hung up on.
    hung_up: Arc<AtomicUsize>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let deliveries = Arc::new(AtomicUsize::new(0));
        let polls_after_delivery = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new((
            deliveries.clone(),
            polls_after_delivery.clone(),
            requests.clone(),
            held.clone(),
            hung_up.clone(),
        ));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counters = counters.clone();
                tokio::spawn(async move {
                    let (d, p, r, h, gone) = &*counters;
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    if head.starts_with(b"POST") {
                        d.fetch_add(1, Ordering::SeqCst);
                    } else if d.load(Ordering::SeqCst) == 0 {
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                  content-length: 2\r\nconnection: close\r\n\r\n[]",
                            )
                            .await;
                        return;
                    } else {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    // Never answered; read (a body, if any) until the hub hangs up.
                    h.fetch_add(1, Ordering::SeqCst);
                    while let Ok(1..) = socket.read(&mut buf).await {}
                    gone.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Silent {
            base,
            deliveries,
            polls_after_delivery,
            requests,
            held,
            hung_up,
        }
    }
}

/// A configuration whose 人社 system is `silent`, polled every second, with deliveries that
/// wait for its answer for ten minutes; the AMQP system left out; `grace_seconds` of grace.
fn silent_system_config(silent: &Silent, grace_seconds: u64) -> tempfile::TempDir {
    let dir = common::config_copy();
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "shutdown_grace_seconds", &grace_seconds.to_string())
    });
    edit(&adapter_file(dir.path(), RST), |t| {
        let t = t.replace("http://127.0.0.1:9201", &silent.base);
        let t = set_key(&t, "timeout_ms", "600000");
        set_key(&t, "interval_seconds", "1")
    });
    dir
}

/// A request to the hub at `base` whose body never ends, with the platform's key `secret`.
async fn endless_request(base: &str, secret: &str) -> TcpStream {
    let address = base.trim_start_matches("http://").to_string();
    let mut request = TcpStream::connect(&address).await.unwrap();
    request
        .write_all(
            format!(
                "PUT /api/v1/catalog/items/11210000001756420G2000113031000 HTTP/1.1\r\n\
                 host: {address}\r\nauthorization: Bearer {secret}\r\n\
                 content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"code\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    request
}

/// An application accepted for the 人社 system, as the platform would submit it.
async fn accept_for_rst(store: &tongban::store::Store, id: &str) {
    let mut application = common::rst_application();
    application["id"] = id.into();
    let body = application.to_string();
    let accepted = store
        .accept_application(&NewApplication {
            id,
            item_code: application["item"]["code"].as_str().unwrap(),
            item_version: 1,
            department: "11210100MB1529370K",
            system_id: RST,
            body: &body,
            idempotency: None,
            identity: None,
            message: None,
        })
        .await
        .unwrap();
    assert!(matches!(accepted, Accepted::New { .. }), "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_whose_parts_do_not_stop_stops_within_one_grace_period() {
    let silent = Silent::start().await;
    let dir = silent_system_config(&silent, GRACE_SECONDS);
    let hub = common::hub::InProcessHub::start(dir.path(), async |store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;

    // A delivery to the system that never answers.
    accept_for_rst(&hub.store, "TB-SHUTDOWN-1").await;

    // A request whose body never ends.
    let request = endless_request(&hub.base, &hub.callers).await;

    until("the delivery and a poll after it to be in flight", || {
        silent.deliveries.load(Ordering::SeqCst) > 0
            && silent.polls_after_delivery.load(Ordering::SeqCst) > 0
    })
    .await;

    let stopping = Instant::now();
    hub.stop(PATIENCE).await;
    let took = stopping.elapsed();
    let grace = Duration::from_secs(GRACE_SECONDS);
    // A logical bound, not a measure of speed: each part waiting a grace of its own takes at
    // least three; one deadline for all takes one, and twice that is a generous margin.
    assert!(
        took < grace * 2,
        "the stop took {took:?} with a grace of {grace:?}"
    );
    drop(request);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_stop_the_hub_has_hung_up_on_the_system_and_sends_it_nothing_more() {
    let silent = Silent::start().await;
    let dir = silent_system_config(&silent, 1);
    // A body that never comes is waited for as long as a stop could ever take.
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "body_read_timeout_seconds", "600")
    });
    let hub = common::hub::InProcessHub::start(dir.path(), async |store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;
    accept_for_rst(&hub.store, "TB-SHUTDOWN-2").await;
    let mut request = endless_request(&hub.base, &hub.callers).await;
    until(
        "a delivery and a poll after it to be stuck at the system",
        || {
            silent.deliveries.load(Ordering::SeqCst) > 0
                && silent.polls_after_delivery.load(Ordering::SeqCst) > 0
        },
    )
    .await;

    hub.stop(PATIENCE).await;
    // The request still in flight at the deadline ended with the hub: its connection is
    // closed (an answer, or none), not left waiting for the rest of the body.
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, request.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the hub kept the connection of a request in flight after it stopped"
    );
    // Whatever was still waiting on the system at the deadline was stopped with the hub: its
    // connections are closed, not left to run on until their own timeouts.
    let sent = eventually(
        "the hub to hang up on every request it left unanswered",
        || async {
            let (held, hung_up) = (
                silent.held.load(Ordering::SeqCst),
                silent.hung_up.load(Ordering::SeqCst),
            );
            if hung_up == held {
                Ok(silent.requests.load(Ordering::SeqCst))
            } else {
                Err(format!("{hung_up} of {held} hung up"))
            }
        },
    )
    .await;
    // Nothing more comes: no new delivery attempt, no new poll (it polled every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        silent.requests.load(Ordering::SeqCst),
        sent,
        "requests reached the system after the hub stopped"
    );
}
