//! Several hubs on one PostgreSQL and one RabbitMQ, as `tongban serve` processes behind a
//! round-robin proxy, under a continuous load of applications and case events, one hub
//! SIGKILLed and started again every few seconds and the broker restarted once: every
//! application the platform was answered 202 for is delivered, no case event or alert is
//! stored twice, the feed is gapless and reaches the broker whole (each message with its
//! sequence number and the cluster's id), and the audit chain verifies.
//!
//! Needs PostgreSQL (`TONGBAN_TEST_POSTGRES_URL`) and RabbitMQ installed (a broker of the
//! test's own, since it is restarted); skips loudly without them, and fails under CI.

use crate::common;

use common::broker::PrivateBroker;
use common::edit::{RST, SCJG, edit};
use common::process::{LogFormat, Process};
use common::{Issuer, rst_application, scjg_application};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tongban::store::{FeedQuery, Store};

/// The identity system the cluster trusts.
static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

/// How many hubs run.
const HUBS: usize = 3;
/// How many times a hub is killed (and started again at once) under the load.
const KILLS: usize = 6;
/// The load's time between one hub's start and the next kill.
const KILL_EVERY: Duration = Duration::from_secs(4);
/// Submissions in flight at once.
const SUBMITTERS: usize = 4;
/// How long everything accepted may take to be delivered and published after the load.
const DRAIN: Duration = Duration::from_secs(180);

/// A TCP proxy on 127.0.0.1 handing each new connection to the next hub in turn, trying the
/// following ones when a hub does not take the connection (it was killed): nothing sent is
/// ever sent twice by the proxy, as a load balancer in front of the hubs behaves.
struct Proxy {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(backends: Vec<Option<SocketAddr>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(Mutex::new(backends));
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let backends = backends.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let (backends, next) = (backends.clone(), next.clone());
                    tokio::spawn(async move {
                        let candidates = backends.lock().unwrap().clone();
                        let start = next.fetch_add(1, Ordering::Relaxed);
                        for i in 0..candidates.len() {
                            let Some(backend) = candidates[(start + i) % candidates.len()] else {
                                continue;
                            };
                            if let Ok(mut outbound) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                                return;
                            }
                        }
                    });
                }
            }
        });
        Proxy {
            addr,
            backends,
            task,
        }
    }

    fn set(&self, hub: usize, addr: Option<SocketAddr>) {
        self.backends.lock().unwrap()[hub] = addr;
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn addr_of(hub: &Process) -> SocketAddr {
    hub.base.trim_start_matches("http://").parse().unwrap()
}

/// What a queue of the test's own bound to the supervision exchange got: every message's
/// `message_id` and headers, across the broker's restart.
struct FeedConsumer {
    queue: common::feed_queue::FeedQueue,
    /// (message id, `tongban-seq`, `tongban-cluster`) in arrival order.
    received: Vec<(String, i64, String)>,
}

impl FeedConsumer {
    /// Takes what the queue holds now.
    async fn drain(&mut self) {
        use lapin::types::AMQPValue;
        while let Some(message) = self.queue.next().await {
            let p = &message.properties;
            let id = p
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let headers = p.headers().clone().unwrap_or_default();
            let header = |name: &str| {
                headers
                    .inner()
                    .iter()
                    .find(|(k, _)| k.as_str() == name)
                    .map(|(_, v)| v.clone())
            };
            let seq = match header(tongban::workers::publish::SEQ_HEADER) {
                Some(AMQPValue::LongLongInt(n)) => n,
                other => panic!("message {id} has no sequence header: {other:?}"),
            };
            let cluster = match header(tongban::workers::publish::CLUSTER_HEADER) {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                other => panic!("message {id} has no cluster header: {other:?}"),
            };
            self.received.push((id, seq, cluster));
        }
    }

    fn distinct_seqs(&self) -> BTreeSet<i64> {
        self.received.iter().map(|(_, seq, _)| *seq).collect()
    }
}

/// The configuration every hub of the cluster reads (one directory, as deploy/ sets it up):
/// the HTTP systems at the mocks, the store on PostgreSQL, the bus on the broker.
fn cluster_config(
    soap: &str,
    rest: &str,
    store_url: &str,
    broker_url: Option<&str>,
) -> tempfile::TempDir {
    let dir = common::edit::http_systems_config(
        &ISSUER,
        soap,
        rest,
        &[
            ("timeout_ms", "2000"),
            ("rate_limit", "{ per_second = 1000, burst = 100 }"),
            (
                "retry",
                "{ attempts = 60, initial_backoff_ms = 50, max_backoff_ms = 1000, max_age_seconds = 600 }",
            ),
        ],
    );
    edit(&dir.path().join("hub.toml"), |t| {
        let store = "url = \"sqlite://data/tongban.db\"";
        let bus = "kind = \"memory\"";
        assert!(
            t.contains(store) && t.contains(bus),
            "hub.toml as the repository has it"
        );
        let t = t.replace(store, &format!("url = {store_url:?}"));
        match broker_url {
            Some(url) => t.replace(bus, &format!("kind = \"amqp\"\nurl = {url:?}")),
            None => t,
        }
    });
    dir
}

/// A submission as the platform sends it: the application with its applicant's token and an
/// idempotency key, retried with the same key until some hub answers 202 (a hub killed with
/// the request in flight may have committed it: the key makes the retry the same
/// application). The id.
async fn submit(
    http: &reqwest::Client,
    base: &str,
    platform: &str,
    body: &Value,
    key: &str,
) -> String {
    let token = ISSUER.token_for(body, 3);
    let deadline = Instant::now() + DRAIN;
    loop {
        assert!(Instant::now() < deadline, "{key} never accepted");
        let response = http
            .post(format!("{base}/api/v1/applications"))
            .bearer_auth(platform)
            .header("tongban-user-token", &token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status() == 202 => {
                let answer: Value = r.json().await.unwrap();
                return answer["id"].as_str().unwrap().to_string();
            }
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "{key} refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// 市场监管's case step `step` for application `id`, with an event id of its own, posted by
/// the system until a hub takes it (`new` the first time, `duplicate` after a retry of one
/// already stored).
async fn post_event(http: &reqwest::Client, base: &str, secret: &str, id: &str, step: &str) {
    let text = std::fs::read_to_string(
        common::repo().join(format!("mappings/tests/scjg-food-event/{step}.legacy.xml")),
    )
    .unwrap()
    .replace("TB-210102-20261120-000123", id)
    .replace("SYSCJG-SP-2026-004217", &format!("EV-{id}"));
    let deadline = Instant::now() + DRAIN;
    loop {
        assert!(Instant::now() < deadline, "{step} of {id} never taken");
        let response = http
            .post(format!("{base}/api/v1/systems/{SCJG}/events"))
            .bearer_auth(secret)
            .header("content-type", "text/xml; charset=utf-8")
            .body(text.clone())
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "{step} of {id} refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads the whole feed.
async fn whole_feed(store: &Store) -> Vec<tongban::store::FeedEntry> {
    let mut all = Vec::new();
    loop {
        let page = store
            .feed_after(&FeedQuery {
                after: all.last().map_or(0, |e: &tongban::store::FeedEntry| e.seq),
                limit: 1000,
                ..FeedQuery::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hubs_killed_at_random_under_load_lose_and_double_nothing() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    // A broker of the test's own: it is restarted.
    let Some(broker) = PrivateBroker::start() else {
        return;
    };
    let soap = common::mock::Mock::start(true, common::mock::Mode::Ok).await;
    let rest = common::mock::Mock::start(false, common::mock::Mode::Ok).await;
    let dir = cluster_config(
        &soap.base(),
        &rest.base(),
        &database.url,
        Some(&broker.url()),
    );
    let mut consumer = FeedConsumer {
        queue: common::feed_queue::FeedQueue::new(&broker.url(), "cluster-test-feed"),
        received: Vec::new(),
    };
    consumer
        .queue
        .connect()
        .await
        .expect("the feed's consumer binds its queue");

    // The operator's keys, issued against the cluster's store before the hubs start.
    let platform = common::cli_api_key(dir.path(), "platform", None, None);
    let scjg_key = common::cli_api_key(dir.path(), "system", Some(SCJG), None);

    // The first hub makes the signing key the others find in the shared directory.
    let mut hubs: Vec<Option<Process>> = Vec::new();
    for _ in 0..HUBS {
        hubs.push(Some(
            Process::start(dir.path(), LogFormat::Json, "info").await,
        ));
    }
    let proxy = Proxy::start(hubs.iter().map(|h| h.as_ref().map(addr_of)).collect()).await;
    let base = proxy.base();
    // A connection per request, so the proxy spreads requests, not connections.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The load: applications to both systems, and 市场监管's three case steps for each of its
    // own, all through the proxy.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<BTreeMap<String, (String, &'static str)>>> = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..SUBMITTERS {
        let (http, base, platform, scjg_key) = (
            http.clone(),
            base.clone(),
            platform.clone(),
            scjg_key.clone(),
        );
        let (stop, accepted) = (stop.clone(), accepted.clone());
        load.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("cluster-{worker}-{n}");
                let (body, system) = if n % 2 == 0 {
                    (scjg_application(), SCJG)
                } else {
                    (rst_application(), RST)
                };
                let id = submit(&http, &base, &platform, &body, &key).await;
                accepted.lock().unwrap().insert(key, (id.clone(), system));
                if system == SCJG {
                    for step in ["accept", "decision", "complete"] {
                        post_event(&http, &base, &scjg_key, &id, step).await;
                    }
                }
                n += 1;
            }
        });
    }

    // Meanwhile a hub is killed and started again every few seconds, and the broker restarted
    // once, half way.
    let started = Instant::now();
    let mut victim = 0;
    for round in 0..KILLS {
        tokio::time::sleep(KILL_EVERY).await;
        victim = (victim + 1 + (tongban::clock::now_millis() as usize % 2)) % HUBS;
        proxy.set(victim, None);
        hubs[victim].take().expect("every hub runs").kill();
        if round == KILLS / 2 {
            broker.stop_app();
            consumer.queue.disconnect();
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.start_app();
        }
        let hub = Process::start(dir.path(), LogFormat::Json, "info").await;
        proxy.set(victim, Some(addr_of(&hub)));
        hubs[victim] = Some(hub);
        consumer.drain().await;
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = load.join_next().await {
        done.expect("a load worker ended cleanly");
    }
    let accepted = accepted.lock().unwrap().clone();

    // Everything accepted reaches its system.
    let ids: BTreeSet<String> = accepted.values().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids.len(),
        accepted.len(),
        "one application per idempotency key"
    );
    let deadline = Instant::now() + DRAIN;
    loop {
        let delivered: BTreeSet<String> = soap
            .acknowledged_keys()
            .union(&rest.acknowledged_keys())
            .cloned()
            .collect();
        let missing: Vec<&String> = ids.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted applications never delivered: {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The store as every hub sees it.
    let store = Store::open(&database.url, Path::new("."), 2).await.unwrap();
    for id in &ids {
        let application = store.application(id).await.unwrap().expect("stored");
        assert_ne!(
            application.state.as_str(),
            "accepted",
            "{id} is stored as delivered or further"
        );
    }

    // Once the feed stands still (the engine has judged every event) and the publisher has
    // caught up with it, the feed is whole and the broker has all of it.
    let head = loop {
        let head = store.feed_head().await.unwrap();
        let published = store
            .cursor(tongban::workers::publish::CURSOR)
            .await
            .unwrap();
        consumer.drain().await;
        if published == head && consumer.distinct_seqs().last() == Some(&head) {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if store.feed_head().await.unwrap() == head {
                break head;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the feed's head {head}, published to {published}, the consumer at {:?}",
            consumer.distinct_seqs().last()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let feed = whole_feed(&store).await;
    let seqs: Vec<i64> = feed.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "the feed is gapless, in order"
    );
    let mut events = BTreeMap::new();
    let mut alerts = BTreeMap::new();
    for entry in &feed {
        let body: Value = serde_json::from_str(&entry.body).unwrap();
        match entry.kind.as_str() {
            "event" => {
                *events
                    .entry(body["event_id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1
            }
            "alert" => {
                *alerts
                    .entry((body["id"].to_string(), body["change"].to_string()))
                    .or_insert(0) += 1
            }
            _ => {}
        }
    }
    let scjg_count = accepted.values().filter(|(_, s)| *s == SCJG).count();
    assert_eq!(
        events.len(),
        scjg_count * 3,
        "every case step posted is in the feed"
    );
    let doubled: Vec<_> = events.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "case events in the feed twice: {doubled:?}"
    );
    let doubled: Vec<_> = alerts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "alert changes in the feed twice: {doubled:?}"
    );

    // The broker got every entry, each with the cluster's id; repeats only of whole entries
    // (a publisher killed between the broker's confirms and its cursor's commit).
    let cluster = store.cluster_id("not-this-one").await.unwrap();
    assert_ne!(cluster, "not-this-one", "the first hub named the cluster");
    assert_eq!(
        consumer.distinct_seqs(),
        (1..=head).collect::<BTreeSet<_>>(),
        "every feed entry reached the broker"
    );
    for (id, seq, from) in &consumer.received {
        assert_eq!(id, &seq.to_string(), "message_id is the sequence number");
        assert_eq!(from, &cluster, "every message names the cluster");
    }
    let repeats = consumer.received.len() - head as usize;

    // Each hub stops cleanly; the audit chain, written by all of them, verifies.
    for hub in hubs.into_iter().flatten() {
        hub.stop();
    }
    let verify = common::process::tongban()
        .args(["audit", "verify", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "the audit chain verifies: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    eprintln!(
        "cluster test: {} applications accepted through {HUBS} hubs in {}s, {KILLS} hubs killed, the broker \
         restarted once; {} case events, {} alert changes, feed 1..={head} gapless; {} deliveries received \
         for {} applications; {repeats} feed message(s) published again after a kill",
        ids.len(),
        load_time.as_secs(),
        events.len(),
        alerts.len(),
        soap.count() + rest.count(),
        ids.len()
    );
    let _ = std::fs::remove_dir_all(dir.path());
    drop(database);
}

/// A hub in this process for the cluster's tests, with an administrator's and the platform's
/// keys.
type Hub = common::hub::InProcessHub<(String, String)>;

async fn start_hub(dir: &Path) -> Hub {
    Hub::start(dir, async |store: &Store| {
        (
            common::api_key(store, tongban::auth::Role::Admin, None).await,
            common::api_key(store, tongban::auth::Role::Platform, None).await,
        )
    })
    .await
}

/// Waits until `n` hubs have said they run, and a renewal more, so each has counted the others.
async fn until_members(store: &Store, n: usize) {
    common::wait::eventually(&format!("{n} hubs counted"), || async {
        let since = tongban::clock::now_millis() - tongban::workers::cluster::MEMBER_TIMEOUT_MS;
        let members = store.members(since).await.map_err(|e| e.to_string())?;
        if members.len() == n {
            Ok(())
        } else {
            Err(format!("{} hubs", members.len()))
        }
    })
    .await;
    tokio::time::sleep(tongban::workers::cluster::RENEW_EVERY * 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_on_one_store_share_each_systems_limits_and_see_keys_and_activations() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let soap = common::mock::Mock::start(true, common::mock::Mode::Ok).await;
    let rest = common::mock::Mock::start(false, common::mock::Mode::Slow(150)).await;
    let dir = cluster_config(&soap.base(), &rest.base(), &database.url, None);
    // 市场监管 at 10/s one at a time, 人社 two at a time: for the whole cluster.
    common::edit::set_adapter_key(
        dir.path(),
        SCJG,
        "rate_limit",
        "{ per_second = 10, burst = 1 }",
    );
    common::edit::set_adapter_key(dir.path(), RST, "concurrency", "2");
    let hubs = [
        start_hub(dir.path()).await,
        start_hub(dir.path()).await,
        start_hub(dir.path()).await,
    ];
    until_members(&hubs[0].store, 3).await;
    let http = reqwest::Client::new();

    // Applications to both systems through every hub.
    const EACH: usize = 30;
    let mut submissions = tokio::task::JoinSet::new();
    for i in 0..EACH * 2 {
        let hub = &hubs[i % 3];
        let (http, base, platform) = (http.clone(), hub.base.clone(), hub.callers.1.clone());
        submissions.spawn(async move {
            let body = if i % 2 == 0 {
                scjg_application()
            } else {
                rst_application()
            };
            submit(&http, &base, &platform, &body, &format!("limits-{i}")).await
        });
    }
    let ids: BTreeSet<String> = submissions.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), EACH * 2);
    common::wait::eventually("every application delivered", || async {
        let done = soap.acknowledged_keys().len() + rest.acknowledged_keys().len();
        if done == EACH * 2 {
            Ok(())
        } else {
            Err(format!("{done} delivered"))
        }
    })
    .await;
    // 10/s for the cluster: the 30 sends to 市场监管 spread over at least 2.9 s less what the
    // hubs' bursts (one each) let through at once. Three hubs at 10/s each would take 1 s.
    let times: Vec<Instant> = soap.receptions().iter().map(|r| r.at).collect();
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis((EACH as u64 - 3) * 100 - 50),
        "30 sends at 10/s for the cluster took {spread:?}"
    );
    assert!(
        rest.max_inflight() <= 2,
        "人社 had {} deliveries at once, allowed 2 for the cluster",
        rest.max_inflight()
    );

    // A key revoked through one hub is refused by the others within a second.
    let platform = hubs[0].callers.1.clone();
    let key_id = platform.split('_').nth(1).unwrap().to_string();
    let items = |hub: &Hub| {
        http.get(format!("{}/api/v1/catalog/items", hub.base))
            .bearer_auth(&platform)
            .send()
    };
    assert_eq!(
        items(&hubs[1]).await.unwrap().status(),
        200,
        "known to hub 2, and cached"
    );
    let revoked = http
        .delete(format!("{}/api/v1/keys/{key_id}", hubs[0].base))
        .bearer_auth(&hubs[0].callers.0)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    tokio::time::sleep(tongban::auth::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    for hub in &hubs {
        assert_eq!(
            items(hub).await.unwrap().status(),
            401,
            "revoked everywhere"
        );
    }

    // A configuration activated on one hub is applied by every hub.
    common::edit::set_adapter_key(dir.path(), RST, "concurrency", "3");
    let admin = &hubs[1].callers.0;
    let reloaded = http
        .post(format!("{}/api/v1/configuration/reload", hubs[1].base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200, "{}", reloaded.text().await.unwrap());
    for hub in &hubs {
        common::wait::eventually("the activation applied by every hub", || async {
            let current: Value = http
                .get(format!("{}/api/v1/configuration", hub.base))
                .bearer_auth(&hub.callers.0)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if current["generation"] == 2 {
                Ok(())
            } else {
                Err(current["generation"].to_string())
            }
        })
        .await;
    }
    for hub in hubs {
        hub.stop(Duration::from_secs(20)).await;
    }
    let _ = std::fs::remove_dir_all(dir.path());
    drop(database);
}

#[tokio::test]
async fn a_store_hears_another_hubs_feed_commits() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let writer = Store::open(&database.url, Path::new("."), 2).await.unwrap();
    let reader = Store::open(&database.url, Path::new("."), 2).await.unwrap();
    let mut moved = reader.feed_moved();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listening = tokio::spawn({
        let reader = reader.clone();
        async move { reader.follow_feed_elsewhere(stopped).await }
    });
    // Listening has begun once it wakes the readers for what came before.
    tokio::time::timeout(common::wait::PATIENCE, moved.changed())
        .await
        .expect("woken when listening begins")
        .unwrap();
    moved.borrow_and_update();
    writer
        .append_feed(&tongban::store::NewFeedEntry {
            kind: "event".parse().unwrap(),
            system_id: SCJG,
            department: "11210000MB1543829M",
            item_code: "11210000MB1543829M2000118001000",
            application_id: "TB-test-1",
            level: None,
            routing_key: "event.sy-scjg-food.accept",
            body: "{}",
        })
        .await
        .unwrap();
    // Only a notice from the other store can wake this one: it wrote nothing itself.
    tokio::time::timeout(common::wait::PATIENCE, moved.changed())
        .await
        .expect("woken by the other store's commit")
        .unwrap();
    let _ = stop.send(true);
    listening.await.unwrap();
    writer.close().await;
    reader.close().await;
    drop(database);
}
