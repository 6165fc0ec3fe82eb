//! The ledger of the four integrations (第十一条), judged on a running hub: the simulated 人社
//! system takes applications, walks each case and shares its licenses; before it is probed it
//! stands partial on the three integrations a probe shows (nothing has shown it checks the
//! assertion yet), after a probe run integrated on all four, and each change is on the feed. A
//! connected system that does not answer fails its probes and is not integrated on them; a
//! system on the inventory that never connected is not integrated on all four. On SQLite and
//! PostgreSQL.

use crate::common::{self, Issuer, bearer, hub::InProcessHub, wait::eventually};
use crate::on_both_backends;
use serde_json::{Value, json};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::store::Store;

static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

const RST: &str = "ln-rst-card";
const SCJG: &str = "sy-scjg-food";
/// On the inventory, never connected.
const NEVER: &str = "ln-mz-old-registry";

struct Callers {
    platform: String,
    admin: String,
    finance: String,
}

struct Rig {
    hub: InProcessHub<Callers>,
    _dir: tempfile::TempDir,
    _rst: crate::systems::SystemHandle,
    http: reqwest::Client,
}

/// The repository's configuration with its inventory, 人社 pointed at the simulated system
/// (quick steps, polled every second), 市场监管 at a port nothing answers, no AMQP system,
/// short probe limits, and the ledger judged only when asked (no schedule).
async fn rig(store: &Store) -> Rig {
    let dir = common::config_copy();
    ISSUER.install_in_dir(dir.path());
    std::fs::copy(
        common::repo().join("systems.toml"),
        dir.path().join("systems.toml"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("http://{}", listener.local_addr().unwrap());

    let mut settings = crate::systems::rst::RstSettings::new(Arc::new(common::config())).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.hub_url = Some(hub_url);
    settings.step_delay = Duration::from_millis(100);
    let rst = crate::systems::rst::start(settings).await.unwrap();
    let nobody = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };

    let edit = |path: &str, from: &[(&str, String)]| {
        let file = dir.path().join(path);
        let mut text = std::fs::read_to_string(&file).unwrap();
        for (old, new) in from {
            assert!(text.contains(old), "{path} has {old}");
            text = text.replace(old, new);
        }
        std::fs::write(file, text).unwrap();
    };
    edit(
        &format!("adapters/{RST}.toml"),
        &[
            (
                "http://127.0.0.1:9201",
                format!("http://{}", rst.local_addr),
            ),
            ("interval_seconds = 2", "interval_seconds = 1".into()),
        ],
    );
    edit(
        &format!("adapters/{SCJG}.toml"),
        &[("http://127.0.0.1:9101", nobody)],
    );
    edit(
        "hub.toml",
        &[
            (
                "accept_within_seconds = 60",
                "accept_within_seconds = 3".into(),
            ),
            (
                "complete_within_seconds = 600",
                "complete_within_seconds = 20".into(),
            ),
            (
                "result_within_seconds = 120",
                "result_within_seconds = 10".into(),
            ),
            (
                "evaluate_every_minutes = 10",
                "evaluate_every_minutes = 1440".into(),
            ),
            (
                "simulate_every_hours = 24",
                "simulate_every_hours = 0".into(),
            ),
            (
                "shutdown_grace_seconds = 30",
                "shutdown_grace_seconds = 1".into(),
            ),
        ],
    );
    let hub = InProcessHub::start_with_store(dir.path(), store, listener, async |store: &Store| {
        Callers {
            platform: common::api_key(store, Role::Platform, None).await,
            admin: common::api_key(store, Role::Admin, None).await,
            finance: common::api_key(store, Role::Finance, None).await,
        }
    })
    .await;
    Rig {
        hub,
        _dir: dir,
        _rst: rst,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    }
}

impl Rig {
    async fn call(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.hub.base))
            .header("authorization", bearer(secret));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Asks for `system` to be probed now.
    async fn probe(&self, system: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/api/v1/ledger/probes",
            &self.hub.callers.admin,
            Some(json!({ "system": system })),
        )
        .await
    }

    /// Judges again, then the ledger's entry for `system`.
    async fn standing(&self, system: &str) -> Value {
        let (status, _) = self
            .call(
                "POST",
                "/api/v1/ledger/evaluation",
                &self.hub.callers.admin,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, ledger) = self
            .call("GET", "/api/v1/ledger", &self.hub.callers.finance, None)
            .await;
        assert_eq!(status, 200, "{ledger:#}");
        ledger["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == system)
            .cloned()
            .unwrap_or_else(|| panic!("{system} on the ledger: {ledger:#}"))
    }
}

fn statuses(standing: &Value) -> Vec<String> {
    [
        "same_source",
        "identity",
        "simulated_transaction",
        "result_sharing",
    ]
    .iter()
    .map(|i| {
        standing["integrations"][i]["status"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    })
    .collect()
}

async fn a_systems_status_on_each_integration_follows_its_traffic_and_its_probes(store: &Store) {
    let rig = rig(store).await;
    // Three applications, each taken, walked and completed with a license shared.
    let application: Value = serde_json::from_str(&common::read_text(
        "mappings/tests/rst-card-application/card-online.canonical.json",
    ))
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut app = application.clone();
        app.as_object_mut().unwrap().remove("id");
        let answer = rig
            .http
            .post(format!("{}/api/v1/applications", rig.hub.base))
            .bearer_auth(&rig.hub.callers.platform)
            .header("Tongban-User-Token", ISSUER.token_for(&app, 3))
            .json(&app)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202);
        let body: Value = answer.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // The results come by poll and the steps' reporting lags from the engine, each in its own
    // time: wait for both.
    let figures = eventually(
        "three cases completed with their licenses, every step's lag kept",
        || async {
            let standing = rig.standing(RST).await;
            let sharing = &standing["integrations"]["result_sharing"]["evidence"];
            let lags = standing["integrations"]["simulated_transaction"]["evidence"]["lags"]
                .as_i64()
                .unwrap_or_default();
            if sharing["part"] == 3 && sharing["whole"] == 3 && lags >= 12 {
                Ok(standing)
            } else {
                Err(format!("{sharing}, {lags} lags"))
            }
        },
    )
    .await;
    // Never probed: partial on what only a probe shows, however good the traffic.
    assert_eq!(
        statuses(&figures),
        ["integrated", "partial", "partial", "partial"],
        "{figures:#}"
    );
    let identity = &figures["integrations"]["identity"];
    assert_eq!(identity["evidence"]["part"], 3, "{identity:#}");
    assert_eq!(identity["evidence"]["percent"], 100, "{identity:#}");
    assert!(
        identity["reasons"].to_string().contains("has not run"),
        "{identity:#}"
    );
    let supervision = &figures["integrations"]["simulated_transaction"]["evidence"];
    assert_eq!(
        (&supervision["part"], &supervision["whole"]),
        (&json!(3), &json!(3))
    );
    assert!(
        supervision["lags"].as_i64().unwrap() >= 12,
        "{supervision:#}"
    );
    assert_eq!(figures["connected"], true);
    assert!(
        figures["funding"]["yuan"].as_i64().is_some_and(|y| y > 0),
        "{figures:#}"
    );

    // A probe run: identity, the simulated transaction and its result pass.
    let (status, started) = rig.probe(RST).await;
    assert_eq!(status, 202, "{started:#}");
    let (status, again) = rig.probe(RST).await;
    assert_eq!(status, 409, "one run at a time: {again:#}");
    let probed = eventually("the probe run to be judged", || async {
        let standing = rig.standing(RST).await;
        if statuses(&standing) == ["integrated"; 4] {
            Ok(standing)
        } else {
            Err(format!("{:?}", statuses(&standing)))
        }
    })
    .await;
    assert_eq!(
        probed["integrations"]["identity"]["evidence"]["latest_probe"]["run"],
        started["run"]
    );
    // Nothing the probes sent or got back is an application, a case or a result.
    let simulated = format!("TEST-{}-transaction", started["run"].as_str().unwrap());
    assert!(
        rig.hub
            .store
            .application(&simulated)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rig.hub
            .store
            .events_of(&simulated)
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids {
        assert!(!rig.hub.store.events_of(id).await.unwrap().is_empty());
    }
    let (_, cases) = rig
        .call(
            "GET",
            "/api/v1/supervision/cases?limit=100",
            &rig.hub.callers.admin,
            None,
        )
        .await;
    assert!(!cases.to_string().contains("TEST-"), "{cases:#}");

    // The changes are on the feed.
    let stream = rig
        .http
        .get(format!(
            "{}/api/v1/supervision/stream?kind=integration&follow=false",
            rig.hub.base
        ))
        .bearer_auth(&rig.hub.callers.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for integration in ["identity", "simulated_transaction", "result_sharing"] {
        assert!(
            stream.contains(&format!(
                "\"integration\":\"{integration}\",\"status\":\"integrated\",\"previous\":\"partial\""
            )),
            "{integration}: {stream}"
        );
    }

    // A connected system that does not answer fails its probes.
    let (status, _) = rig.probe(SCJG).await;
    assert_eq!(status, 202);
    let failed = eventually("the silent system to be judged", || async {
        let standing = rig.standing(SCJG).await;
        if standing["integrations"]["identity"]["status"] == "not_integrated" {
            Ok(standing)
        } else {
            Err(format!("{:?}", statuses(&standing)))
        }
    })
    .await;
    assert_eq!(
        statuses(&failed)[1..],
        ["not_integrated", "not_integrated", "not_integrated"],
        "{failed:#}"
    );
    assert!(
        failed["integrations"]["identity"]["reasons"]
            .to_string()
            .contains("failed"),
        "{failed:#}"
    );

    // Never connected: not integrated on all four; not probed; the ledger is not for systems.
    let never = rig.standing(NEVER).await;
    assert_eq!(statuses(&never), ["not_integrated"; 4], "{never:#}");
    assert_eq!(never["connected"], false);
    let (status, _) = rig.probe(NEVER).await;
    assert_eq!(status, 404);
    let (status, _) = rig
        .call("GET", "/api/v1/ledger", &rig.hub.callers.platform, None)
        .await;
    assert_eq!(status, 403);

    // The funding report: 人社 integrated on all four and to integrate, fundable; 市场监管
    // not, with its reasons; the 民政 system to be retired, not fundable. Each department's
    // totals from the inventory's requests (systems.toml).
    let (status, report) = rig
        .call(
            "GET",
            "/api/v1/reports/funding?year=2027",
            &rig.hub.callers.finance,
            None,
        )
        .await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["period"], "2027");
    let line = |system: &str| {
        report["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["system"] == system)
            .cloned()
            .unwrap_or_else(|| panic!("{system}: {report:#}"))
    };
    assert_eq!(line(RST)["verdict"], "fundable", "{report:#}");
    assert_eq!(line(RST)["reasons"], json!([]));
    let scjg = line(SCJG);
    assert_eq!(scjg["verdict"], "not_fundable");
    assert!(
        scjg["reasons"]
            .to_string()
            .contains("identity: not_integrated"),
        "{scjg:#}"
    );
    let never = line(NEVER);
    assert_eq!(never["verdict"], "not_fundable");
    assert!(
        never["reasons"].to_string().contains("to be retired"),
        "{never:#}"
    );
    let inventory = std::fs::read_to_string(common::repo().join("systems.toml")).unwrap();
    let yuan = |system: &str| -> u64 {
        let block = inventory
            .split("[[system]]")
            .find(|b| b.contains(&format!("id = \"{system}\"")))
            .unwrap();
        let at = block.find("yuan = ").unwrap() + "yuan = ".len();
        block[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let department = |uscc: &str| {
        report["departments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["uscc"] == uscc)
            .cloned()
            .unwrap()
    };
    let rst = department("11210000001756420G");
    assert_eq!(rst["requested_yuan"], yuan(RST));
    assert_eq!(rst["not_fundable_yuan"], 0);
    let scjg_department = department("11210100MB1529370K");
    assert_eq!(scjg_department["not_fundable_yuan"], yuan(SCJG));

    // As CSV, with its SHA-256 in the audit log: what finance got can be proved later.
    let answer = rig
        .http
        .get(format!(
            "{}/api/v1/reports/funding?year=2027&format=csv",
            rig.hub.base
        ))
        .bearer_auth(&rig.hub.callers.finance)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let declared = answer.headers()["tongban-content-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let csv = answer.text().await.unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(csv.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(declared, digest);
    assert!(csv.starts_with("# funding report,period 2027,"), "{csv}");
    let rows: Vec<&str> = csv.lines().skip(2).collect();
    assert_eq!(
        rows.len(),
        report["systems"].as_array().unwrap().len(),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with(&format!("{RST},")) && r.contains(",fundable,")),
        "{csv}"
    );
    let (_, audit) = rig
        .call(
            "GET",
            "/api/v1/audit?limit=100",
            &rig.hub.callers.admin,
            None,
        )
        .await;
    assert!(
        audit.to_string().contains(&format!("sha256 {digest}")),
        "{audit:#}"
    );
    let (status, _) = rig
        .call(
            "GET",
            "/api/v1/reports/funding?format=pdf",
            &rig.hub.callers.finance,
            None,
        )
        .await;
    assert_eq!(status, 400);
    rig.hub.stop(Duration::from_secs(20)).await;
}

on_both_backends!(a_systems_status_on_each_integration_follows_its_traffic_and_its_probes);
