//! Stopping a hub whose parts do not stop: a request whose body never ends, a delivery to a
//! system that never answers and a poll of it that never returns. The stop takes one grace
//! period in all, not one per part.

use crate::common;

use common::edit::{RST, adapter_file, edit, set_key};
use common::wait::{PATIENCE, until};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Kept open: a connection dropped would be an answer.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let deliveries = Arc::new(AtomicUsize::new(0));
        let polls_after_delivery = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (d, p, h) = (
            deliveries.clone(),
            polls_after_delivery.clone(),
            held.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (d, p, h) = (d.clone(), p.clone(), h.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
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
                    h.lock().unwrap().push(socket);
                });
            }
        });
        Silent {
            base,
            deliveries,
            polls_after_delivery,
            _held: held,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_whose_parts_do_not_stop_stops_within_one_grace_period() {
    let silent = Silent::start().await;
    let dir = common::config_copy();
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "shutdown_grace_seconds", &GRACE_SECONDS.to_string())
    });
    edit(&adapter_file(dir.path(), RST), |t| {
        let t = t.replace("http://127.0.0.1:9201", &silent.base);
        let t = set_key(&t, "timeout_ms", "600000");
        set_key(&t, "interval_seconds", "1")
    });
    let hub = common::hub::InProcessHub::start(dir.path(), async |store| {
        common::api_key(store, Role::Platform, None).await
    })
    .await;

    // A delivery to the system that never answers.
    let mut application = common::rst_application();
    application["id"] = "TB-SHUTDOWN-1".into();
    let body = application.to_string();
    let accepted = hub
        .store
        .accept_application(&NewApplication {
            id: "TB-SHUTDOWN-1",
            item_code: application["item"]["code"].as_str().unwrap(),
            item_version: 1,
            system_id: RST,
            body: &body,
            idempotency: None,
            identity: None,
        })
        .await
        .unwrap();
    assert!(matches!(accepted, Accepted::New { .. }), "{accepted:?}");

    // A request whose body never ends.
    let address = hub.base.trim_start_matches("http://").to_string();
    let mut request = TcpStream::connect(&address).await.unwrap();
    request
        .write_all(
            format!(
                "PUT /api/v1/catalog/items/11210000001756420G2000113031000 HTTP/1.1\r\n\
                 host: {address}\r\nauthorization: Bearer {}\r\n\
                 content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"code\":",
                hub.callers
            )
            .as_bytes(),
        )
        .await
        .unwrap();

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
