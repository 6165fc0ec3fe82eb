//! The usage report (第十条) on a running hub, on SQLite and PostgreSQL: applications are
//! accepted for known systems and items on known days of the three full months before this
//! one (and just outside them), case events come on known days, and the report's figures are
//! checked against what the test generated: applications per month, items, active days,
//! shares, the little-used and replaceable flags both ways, the CSV's digest in its header and
//! the audit log, and bad parameters answered with every problem.

use crate::common::{self, Issuer, hub::InProcessHub};
use chrono::{Datelike, FixedOffset, TimeZone};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tongban::auth::Role;
use tongban::store::{NewApplication, Store};

static ISSUER: LazyLock<Issuer> = LazyLock::new(Issuer::new);

const SCJG: &str = "sy-scjg-food";
const RST: &str = "ln-rst-card";
const ZJ: &str = "dl-zj-permit";
const WJW: &str = "ln-wjw-medical";
/// Added to the inventory: handles two of 市场监管's items, to integrate.
const SCJG_OLD: &str = "sy-scjg-food-old";
/// Added to the inventory: handles both of 人社's items, to be retired.
const RST_LEGACY: &str = "ln-rst-card-legacy";
/// A system no longer configured, which had applications.
const GONE: &str = "sy-gone";

const F1: &str = "11210100MB1529370K300011800200001";
const F2: &str = "11210100MB1529370K300011800200002";
const F3: &str = "11210100MB1529370K300011800200003";
const R1: &str = "11210000001756420G2000113031000";
const R2: &str = "11210000001756420G2000113021000";
const Z1: &str = "11210200MB1960357L300011500400001";

/// `[usage]` for the test: fewer than 4 applications or 2 active days a month is little used.
const PER_MONTH: i64 = 4;
const DAYS_PER_MONTH: i64 = 2;

const DAY_MS: i64 = 86_400_000;

fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// (year, month) `n` months after the current one in China Standard Time.
fn month_from_now(n: i32) -> (i32, u32) {
    let now = cst()
        .timestamp_millis_opt(tongban::clock::now_millis())
        .unwrap();
    let index = now.year() * 12 + now.month0() as i32 + n;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

fn month_text((y, m): (i32, u32)) -> String {
    format!("{y:04}-{m:02}")
}

/// An instant: day `day` of `month`, at `hour:minute` CST.
fn at((y, m): (i32, u32), day: u32, hour: u32, minute: u32) -> i64 {
    cst()
        .with_ymd_and_hms(y, m, day, hour, minute, 0)
        .unwrap()
        .timestamp_millis()
}

/// The last day of a month.
fn last_day((y, m): (i32, u32)) -> u32 {
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    ((at(next, 1, 0, 0) - at((y, m), 1, 0, 0)) / DAY_MS) as u32
}

/// The day (CST) an instant falls on, as a date.
fn day_of(instant: i64) -> chrono::NaiveDate {
    cst().timestamp_millis_opt(instant).unwrap().date_naive()
}

fn month_of(instant: i64) -> String {
    let d = day_of(instant);
    format!("{:04}-{:02}", d.year(), d.month())
}

/// One application the test accepts: for which system and item, accepted when.
struct Generated {
    system: &'static str,
    item: &'static str,
    accepted_at: i64,
}

struct Callers {
    platform: String,
    admin: String,
    finance: String,
}

/// A store of a test's own and the URL of a second, raw connection to it (to date what the
/// test generates in the past).
struct Backend {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _database: Option<common::TestDatabase>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open("sqlite://data/usage.db", dir.path(), 4)
        .await
        .unwrap();
    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/usage.db").display()
    );
    Backend {
        store,
        url,
        _dir: Some(dir),
        _database: None,
    }
}

async fn postgres() -> Option<Backend> {
    let database = common::postgres_database().await?;
    let store = Store::open(&database.url, &common::repo(), 4)
        .await
        .unwrap();
    Some(Backend {
        store,
        url: database.url.clone(),
        _dir: None,
        _database: Some(database),
    })
}

#[tokio::test]
async fn usage_report_on_sqlite() {
    usage_report(sqlite().await).await;
}

#[tokio::test]
async fn usage_report_on_postgres() {
    if let Some(backend) = postgres().await {
        usage_report(backend).await;
    }
}

/// The repository's configuration with two more systems on the inventory, the AMQP system's
/// adapter left out, every system pointed at a port nothing answers, and the test's
/// thresholds.
fn configuration() -> tempfile::TempDir {
    let dir = common::config_copy();
    ISSUER.install_in_dir(dir.path());
    let mut inventory = common::read_text("systems.toml");
    inventory.push_str(&format!(
        r#"
[[system]]
id = "{SCJG_OLD}"
name = "沈阳市食品经营许可旧系统"
department = {{ name = "沈阳市市场监督管理局", uscc = "11210100MB1529370K" }}
items = ["{F1}", "{F2}"]
plan = "integrate"
funding = {{ year = 2027, yuan = 100000 }}
contact = {{ name = "信息中心" }}

[[system]]
id = "{RST_LEGACY}"
name = "社会保障卡旧系统"
department = {{ name = "辽宁省人力资源和社会保障厅", uscc = "11210000001756420G" }}
items = ["{R1}", "{R2}"]
plan = "retire"
funding = {{ year = 2027, yuan = 50000 }}
contact = {{ name = "信息中心" }}
"#
    ));
    std::fs::write(dir.path().join("systems.toml"), inventory).unwrap();
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    let nobody = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    for (file, from) in [
        ("adapters/sy-scjg-food.toml", "127.0.0.1:9101"),
        ("adapters/ln-rst-card.toml", "127.0.0.1:9201"),
        ("adapters/dl-zj-permit.toml", "127.0.0.1:9401"),
    ] {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        std::fs::write(path, text.replace(from, &nobody)).unwrap();
    }
    let path = dir.path().join("hub.toml");
    let hub = std::fs::read_to_string(&path).unwrap();
    for from in [
        "little_used_per_month = 10",
        "little_used_active_days_per_month = 4",
        "evaluate_every_minutes = 10",
        "simulate_every_hours = 24",
        "shutdown_grace_seconds = 30",
    ] {
        assert!(hub.contains(from), "hub.toml has {from}");
    }
    let hub = hub
        .replace(
            "little_used_per_month = 10",
            &format!("little_used_per_month = {PER_MONTH}"),
        )
        .replace(
            "little_used_active_days_per_month = 4",
            &format!("little_used_active_days_per_month = {DAYS_PER_MONTH}"),
        )
        .replace(
            "evaluate_every_minutes = 10",
            "evaluate_every_minutes = 1440",
        )
        .replace("simulate_every_hours = 24", "simulate_every_hours = 0")
        .replace("shutdown_grace_seconds = 30", "shutdown_grace_seconds = 1");
    std::fs::write(path, hub).unwrap();
    dir
}

/// What the test accepts: the three full months before this one are the period (m1..m3); m0
/// is the month before it.
fn generated() -> Vec<Generated> {
    let (m0, m1, m2, m3) = (
        month_from_now(-4),
        month_from_now(-3),
        month_from_now(-2),
        month_from_now(-1),
    );
    let g = |system, item, accepted_at| Generated {
        system,
        item,
        accepted_at,
    };
    let mut list = vec![
        // Just before the period: 23:30 CST on m0's last day.
        g(SCJG, F1, at(m0, last_day(m0), 23, 30)),
        // Just inside: 00:10 CST on m1's first day (still the month before in UTC).
        g(SCJG, F2, at(m1, 1, 0, 10)),
        g(SCJG, F2, at(m1, 10, 9, 0)),
        g(SCJG, F2, at(m1, 10, 15, 0)),
        g(SCJG, F1, at(m2, 5, 10, 0)),
        g(SCJG, F1, at(m2, 5, 11, 0)),
        g(SCJG, F1, at(m2, 5, 12, 0)),
        g(SCJG, F1, at(m3, 7, 10, 0)),
        // The last minutes of the period: 23:30 CST on m3's last day.
        g(SCJG, F1, at(m3, last_day(m3), 23, 30)),
        // Another system no longer configured.
        g(GONE, F3, at(m2, 6, 10, 0)),
        g(GONE, F3, at(m2, 6, 11, 0)),
    ];
    for i in 0..4 {
        list.push(g(SCJG, F3, at(m3, 20, 9, i)));
    }
    // 人社: busy, one a day for 12 days of m2 and one in m3.
    for day in 1..=12 {
        list.push(g(RST, R1, at(m2, day, 14, 0)));
    }
    list.push(g(RST, R2, at(m3, 2, 8, 0)));
    // 住建: many applications, on two days only.
    for i in 0..10 {
        list.push(g(ZJ, Z1, at(m3, 3, 10, i)));
        list.push(g(ZJ, Z1, at(m3, 4, 10, i)));
    }
    list
}

async fn usage_report(backend: Backend) {
    let store = &backend.store;
    let list = generated();
    let raw = sqlx::AnyPool::connect(&backend.url).await.unwrap();
    let mut body = common::scjg_application();
    let mut ids = Vec::new();
    for (n, a) in list.iter().enumerate() {
        let id = format!("TB-USAGE-{n:04}");
        body["id"] = Value::String(id.clone());
        let text = body.to_string();
        store
            .accept_application(&NewApplication {
                id: &id,
                item_code: a.item,
                item_version: 1,
                department: &a.item[..18],
                system_id: a.system,
                body: &text,
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
        sqlx::query("UPDATE applications SET accepted_at = $1, updated_at = $1 WHERE id = $2")
            .bind(a.accepted_at)
            .bind(&id)
            .execute(&raw)
            .await
            .unwrap();
        ids.push(id);
    }
    // Case events from 市场监管: on m3's 21st (a day with no application) for its application of
    // m3's 7th, and one today, outside the period.
    let m3 = month_from_now(-1);
    let events = [
        ("EV-USAGE-1", 7usize, at(m3, 21, 10, 0)),
        ("EV-USAGE-2", 7usize, tongban::clock::now_millis()),
    ];
    let mut event = common::read_json("examples/messages/case-events.json")[0].clone();
    for (event_id, index, received_at) in events {
        event["event_id"] = Value::String(event_id.into());
        event["application_id"] = Value::String(ids[index].clone());
        event["occurred_at"] = Value::String(
            cst()
                .timestamp_millis_opt(received_at)
                .unwrap()
                .to_rfc3339(),
        );
        assert!(common::record_event(store, &event.to_string()).await);
        sqlx::query("UPDATE case_events SET received_at = $1 WHERE event_id = $2")
            .bind(received_at)
            .bind(event_id)
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;
    let event_days: Vec<(&str, i64)> = vec![(SCJG, events[0].2), (SCJG, events[1].2)];

    let dir = configuration();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = InProcessHub::start_with_store(dir.path(), store, listener, async |store: &Store| {
        Callers {
            platform: common::api_key(store, Role::Platform, None).await,
            admin: common::api_key(store, Role::Admin, None).await,
            finance: common::api_key(store, Role::Finance, None).await,
        }
    })
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let get = async |query: &str, secret: &str| {
        let answer = http
            .get(format!("{}/api/v1/reports/usage{query}", hub.base))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let digest = answer
            .headers()
            .get("tongban-content-sha256")
            .map(|v| v.to_str().unwrap().to_string());
        (status, digest, answer.text().await.unwrap())
    };

    // ---- what the test expects, from its own inputs ----
    let months: Vec<String> = (-3..=-1).map(|n| month_text(month_from_now(n))).collect();
    let (start, end) = (
        at(month_from_now(-3), 1, 0, 0),
        at(month_from_now(0), 1, 0, 0),
    );
    let in_period: Vec<&Generated> = list
        .iter()
        .filter(|a| a.accepted_at >= start && a.accepted_at < end)
        .collect();
    let province = in_period.len() as i64;
    struct Expected {
        applications: i64,
        per_month: BTreeMap<String, i64>,
        items: BTreeSet<&'static str>,
        days: BTreeSet<chrono::NaiveDate>,
    }
    let expected = |system: &str| {
        let mine: Vec<&&Generated> = in_period.iter().filter(|a| a.system == system).collect();
        let mut per_month: BTreeMap<String, i64> = months.iter().map(|m| (m.clone(), 0)).collect();
        for a in &mine {
            *per_month.get_mut(&month_of(a.accepted_at)).unwrap() += 1;
        }
        let mut days: BTreeSet<chrono::NaiveDate> =
            mine.iter().map(|a| day_of(a.accepted_at)).collect();
        days.extend(
            event_days
                .iter()
                .filter(|(s, t)| *s == system && *t >= start && *t < end)
                .map(|(_, t)| day_of(*t)),
        );
        Expected {
            applications: mine.len() as i64,
            per_month,
            items: mine.iter().map(|a| a.item).collect(),
            days,
        }
    };
    let month_count = months.len() as i64;
    let little_used = |e: &Expected| {
        e.applications < PER_MONTH * month_count
            || (e.days.len() as i64) < DAYS_PER_MONTH * month_count
    };

    // ---- the report as JSON ----
    let query = format!("?from={}&to={}", months[0], months[2]);
    let (status, digest, text) = get(&query, &hub.callers.finance).await;
    assert_eq!(status, 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["period"]["from"], months[0]);
    assert_eq!(report["period"]["to"], months[2]);
    assert_eq!(report["period"]["months"], 3);
    assert_eq!(report["period"]["includes_current_month"], false);
    assert!(report["generated_at"].as_str().unwrap().ends_with("+08:00"));
    let line = |system: &str| {
        report["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["system"] == system)
            .cloned()
            .unwrap_or_else(|| panic!("{system}: {report:#}"))
    };
    let listed: BTreeSet<String> = report["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["system"].as_str().unwrap().to_string())
        .collect();
    let every: BTreeSet<String> = [
        SCJG,
        RST,
        ZJ,
        WJW,
        "dl-ga-hukou",
        "ln-mz-old-registry",
        SCJG_OLD,
        RST_LEGACY,
    ]
    .map(String::from)
    .into();
    assert_eq!(listed, every, "every system on the inventory, {GONE} not");
    for system in [SCJG, RST, ZJ, WJW, SCJG_OLD, RST_LEGACY] {
        let e = expected(system);
        let l = line(system);
        assert_eq!(l["applications"], e.applications, "{system}: {l:#}");
        for (month, n) in &e.per_month {
            assert_eq!(
                l["applications_per_month"][month], *n,
                "{system} in {month}: {l:#}"
            );
        }
        assert_eq!(
            l["applications_per_month"].as_object().unwrap().len(),
            3,
            "{l:#}"
        );
        assert_eq!(l["items_handled"], e.items.len(), "{system}: {l:#}");
        let codes: BTreeSet<&str> = l["item_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(codes, e.items, "{system}");
        assert_eq!(l["active_days"], e.days.len(), "{system}: {l:#}");
        assert_eq!(
            l["share"].as_f64(),
            Some(e.applications as f64 / province as f64),
            "{system}: {l:#}"
        );
        assert_eq!(l["little_used"], little_used(&e), "{system}: {l:#}");
        assert_eq!(
            l["little_used_reasons"].as_array().unwrap().is_empty(),
            !little_used(&e),
            "{l:#}"
        );
    }
    // The figures the flags turn on, as generated: 市场监管 (SCJG) and 人社 busy enough; 住建 has
    // the applications but on two days only; 卫健 nothing.
    let scjg = expected(SCJG);
    assert_eq!(
        scjg.applications, 12,
        "the application before the period is left out"
    );
    assert_eq!(
        scjg.per_month[&months[0]], 3,
        "00:10 CST on the first counts"
    );
    assert_eq!(
        scjg.days.len(),
        7,
        "six days with applications and one with an event"
    );
    assert!(!little_used(&expected(SCJG)) && !little_used(&expected(RST)));
    let zj = line(ZJ);
    assert_eq!(zj["little_used"], true);
    assert_eq!(
        zj["little_used_reasons"].as_array().unwrap().len(),
        1,
        "{zj:#}"
    );
    assert!(
        zj["little_used_reasons"][0]
            .as_str()
            .unwrap()
            .contains("little_used_active_days_per_month"),
        "{zj:#}"
    );
    assert_eq!(
        line(WJW)["little_used_reasons"].as_array().unwrap().len(),
        2
    );

    // Replaceable: every item handled by another system that is not to be retired.
    let replaceable = |system: &str| line(system)["replaceable"].as_bool().unwrap();
    let alternatives = |system: &str| -> BTreeMap<String, Vec<String>> {
        line(system)["alternatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["item"].as_str().unwrap().to_string(),
                    a["systems"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    };
    assert!(replaceable(SCJG_OLD));
    assert_eq!(
        alternatives(SCJG_OLD),
        BTreeMap::from([
            (F1.to_string(), vec![SCJG.to_string()]),
            (F2.to_string(), vec![SCJG.to_string()]),
        ])
    );
    assert!(!replaceable(SCJG), "{F3} only it handles");
    assert_eq!(
        alternatives(SCJG),
        BTreeMap::from([
            (F1.to_string(), vec![SCJG_OLD.to_string()]),
            (F2.to_string(), vec![SCJG_OLD.to_string()]),
            (F3.to_string(), vec![]),
        ])
    );
    assert!(
        replaceable(RST_LEGACY),
        "人社's own system does what it does"
    );
    assert!(
        !replaceable(RST),
        "the only other system with its items is to be retired"
    );
    assert_eq!(alternatives(RST)[R1], Vec::<String>::new());
    assert!(!replaceable(ZJ) && !replaceable(WJW));
    assert!(
        !replaceable("ln-mz-old-registry"),
        "a system with no item is not called replaceable"
    );

    // The province: every application in the period, to any system.
    let p = &report["province"];
    assert_eq!(p["applications"], province);
    for month in &months {
        let n = in_period
            .iter()
            .filter(|a| &month_of(a.accepted_at) == month)
            .count();
        assert_eq!(p["applications_per_month"][month], n, "{month}: {p:#}");
    }
    let gone = in_period.iter().filter(|a| a.system == GONE).count();
    assert_eq!(p["applications_to_unlisted_systems"], gone);
    let items: BTreeSet<&str> = in_period.iter().map(|a| a.item).collect();
    assert_eq!(p["items_handled"], items.len());
    let mut days: BTreeSet<chrono::NaiveDate> =
        in_period.iter().map(|a| day_of(a.accepted_at)).collect();
    days.insert(day_of(events[0].2));
    assert_eq!(p["active_days"], days.len());
    assert_eq!(p["systems"], every.len());
    let little: usize = every
        .iter()
        .filter(|s| line(s)["little_used"] == true)
        .count();
    assert_eq!(p["little_used_systems"], little);
    assert_eq!(p["replaceable_systems"], 2);
    assert!(
        !text.contains("applicant") && !text.contains("TB-USAGE"),
        "no applicant or application in the report"
    );
    let json_digest = digest.expect("a digest");

    // ---- as CSV: a row per system, its digest in the header and the audit log ----
    let (status, digest, csv) = get(&format!("{query}&format=csv"), &hub.callers.finance).await;
    assert_eq!(status, 200, "{csv}");
    let digest = digest.expect("a digest");
    use sha2::Digest;
    let computed: String = sha2::Sha256::digest(csv.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, computed);
    let mut lines = csv.lines();
    let first = lines.next().unwrap();
    assert!(
        first.starts_with(&format!(
            "# usage report,period {}..{},generated ",
            months[0], months[2]
        )),
        "{csv}"
    );
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), every.len(), "{csv}");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let row = rows
        .iter()
        .find(|r| r.starts_with(&format!("{SCJG},")))
        .unwrap();
    // Its names hold no comma: split plainly up to the flags.
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells[column("applications")], scjg.applications.to_string());
    for month in &months {
        assert_eq!(
            cells[column(month)],
            scjg.per_month[month].to_string(),
            "{month}: {row}"
        );
    }
    assert_eq!(cells[column("active_days")], scjg.days.len().to_string());
    assert_eq!(cells[column("items_handled")], scjg.items.len().to_string());
    assert_eq!(
        cells[column("share")],
        (scjg.applications as f64 / province as f64).to_string()
    );
    assert_eq!(cells[column("little_used")], "false");
    assert_eq!(cells[column("replaceable")], "false");
    let (_, audit) = {
        let answer = http
            .get(format!("{}/api/v1/audit?limit=100", hub.base))
            .bearer_auth(&hub.callers.admin)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.json::<Value>().await.unwrap())
    };
    let audit = audit.to_string();
    assert!(
        audit.contains(&format!(
            "usage report, period {}..{}",
            months[0], months[2]
        )),
        "{audit}"
    );
    assert!(audit.contains(&format!("csv, sha256 {digest}")), "{audit}");
    assert!(
        audit.contains(&format!("json, sha256 {json_digest}")),
        "{audit}"
    );

    // ---- the default period, and who may read it ----
    let (status, _, text) = get("", &hub.callers.admin).await;
    assert_eq!(status, 200, "{text}");
    let default: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(default["period"]["from"], month_text(month_from_now(-12)));
    assert_eq!(default["period"]["to"], month_text(month_from_now(-1)));
    assert_eq!(default["period"]["months"], 12);
    let reviewer = ISSUER.staff_token("reviewer-1", &["reviewer"]);
    assert_eq!(get(&query, &reviewer).await.0, 200);
    let supervisor = ISSUER.staff_token("supervisor-1", &["supervisor"]);
    assert_eq!(get(&query, &supervisor).await.0, 403);
    assert_eq!(get(&query, &hub.callers.platform).await.0, 403);

    // ---- bad parameters: every problem at once ----
    let problems = async |query: &str| -> BTreeSet<String> {
        let (status, _, text) = get(query, &hub.callers.finance).await;
        assert_eq!(status, 400, "{query}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["parameter"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        problems("?from=2026-13&to=last&format=pdf&year=2026").await,
        ["from", "to", "format", "year"].map(String::from).into()
    );
    // Reversed.
    let reversed = problems(&format!("?from={}&to={}", months[2], months[0])).await;
    assert_eq!(reversed, ["from"].map(String::from).into());
    // Too long and past the current month, both said.
    let (status, _, text) = get(
        &format!(
            "?from={}&to={}",
            month_text(month_from_now(-40)),
            month_text(month_from_now(1))
        ),
        &hub.callers.finance,
    )
    .await;
    assert_eq!(status, 400);
    let problem: Value = serde_json::from_str(&text).unwrap();
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{problem:#}");
    assert!(text.contains("at most 36"), "{text}");
    assert!(text.contains("after the current month"), "{text}");

    hub.stop(Duration::from_secs(20)).await;
}
