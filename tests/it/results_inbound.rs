//! Results (电子证照) a department system shares, on SQLite and PostgreSQL, through the real API
//! router and the inbound path every way in shares: kept when they answer a completed
//! application of the sending system, issued by its department to the applicant, with an
//! e-license id that agrees with the license; refused otherwise with every problem at once,
//! nothing stored, the refusal recorded (whichever way it came) and audited. A newer version
//! supersedes the current one, the issuing system revokes with a reason, and another system
//! cannot; every version is kept and readable with its state.

use crate::common;
use crate::on_both_backends;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use serde_json::{Value, json};
use tongban::auth::Role;
use tongban::config::Config;
use tongban::ids::mod37_36_check_char;
use tongban::model::{MessageKind, Via};
use tongban::seal::credential::{StatusPurpose, listed, status_entry};
use tongban::service::inbound::{self, InboundError, Received};
use tongban::store::{NewApplication, Store};

pub(crate) const SCJG: &str = "sy-scjg-food";
pub(crate) const RST: &str = "ln-rst-card";
pub(crate) const DEPARTMENT: &str = "11210100MB1529370K";
/// Another department (the 人社厅's USCC): valid, but not 市场监管's.
pub(crate) const OTHER_DEPARTMENT: &str = "11210000001756420G";
pub(crate) const TYPE_CODE: &str = "11100000000013338W024";
/// The example application's applicant, a company.
pub(crate) const APPLICANT: &str = "91210102MA0Y7K3L23";
/// Another valid USCC, for a holder who is not the applicant.
pub(crate) const STRANGER: &str = "91350100M000100Y43";
pub(crate) const XML: &str = "text/xml; charset=utf-8";

pub(crate) struct Rig {
    pub(crate) api: TestApi,
    pub(crate) scjg: String,
    pub(crate) rst: String,
    pub(crate) supervisor: String,
    pub(crate) platform: String,
    pub(crate) issuer: Issuer,
}

pub(crate) async fn rig(store: &Store) -> Rig {
    rig_with(store, |_| {}).await
}

/// A rig over the repository's configuration with `change` made to it.
pub(crate) async fn rig_with(store: &Store, change: impl FnOnce(&mut Config)) -> Rig {
    let issuer = Issuer::new();
    let mut config = common::config();
    issuer.install(&mut config);
    change(&mut config);
    let api = TestApi::over(config, store).await;
    Rig {
        scjg: common::api_key(store, Role::System, Some(SCJG)).await,
        rst: common::api_key(store, Role::System, Some(RST)).await,
        platform: common::api_key(store, Role::Platform, None).await,
        supervisor: issuer.staff_token("supervisor-1", &["supervisor"]),
        api,
        issuer,
    }
}

/// A valid e-license id of the 食品经营许可证 type.
pub(crate) fn license_id(issuer: &str, serial: &str, version: &str) -> String {
    let payload = format!("{TYPE_CODE}{issuer}{serial}{version}");
    let check = mod37_36_check_char(payload.as_bytes()).unwrap();
    format!("1.2.156.3005.2.{TYPE_CODE}.{issuer}.{serial}.{version}.{check}")
}

/// The 市场监管 system's licence in its own XML, for `application`, with `id`, the license's
/// type code, issuer and holder as given.
pub(crate) fn licence(
    application: &str,
    id: &str,
    type_code: &str,
    issuer: &str,
    holder: &str,
) -> String {
    common::read_text("mappings/tests/scjg-food-result/food-license.legacy.xml")
        .replace(
            "1.2.156.3005.2.11100000000013338W024.11210100MB1529370K.JY22101020001234.001.B",
            id,
        )
        .replace("TB-210102-20261120-000123", application)
        .replace(
            &format!("<sp:证照类型代码>{TYPE_CODE}</sp:证照类型代码>"),
            &format!("<sp:证照类型代码>{type_code}</sp:证照类型代码>"),
        )
        .replace(
            &format!("<sp:统一社会信用代码>{DEPARTMENT}</sp:统一社会信用代码>"),
            &format!("<sp:统一社会信用代码>{issuer}</sp:统一社会信用代码>"),
        )
        .replace(APPLICANT, holder)
}

/// A licence as it should be: the applicant's, issued by the department.
pub(crate) fn good_licence(application: &str, id: &str) -> String {
    licence(application, id, TYPE_CODE, DEPARTMENT, APPLICANT)
}

impl Rig {
    /// The example application, accepted now and routed to `system`.
    pub(crate) async fn application(&self, id: &str, system: &str) {
        let mut body = common::read_json("examples/messages/application.json");
        body["id"] = json!(id);
        let item = body["item"]["code"].as_str().unwrap().to_string();
        self.api
            .store
            .accept_application(&NewApplication {
                id,
                item_code: &item,
                item_version: 1,
                department: DEPARTMENT,
                system_id: system,
                body: &body.to_string(),
                idempotency: None,
                identity: None,
                message: None,
            })
            .await
            .unwrap();
    }

    /// The system reports the application's 办结: 出证办结 when `granted`, 退回办结 otherwise.
    pub(crate) async fn complete(&self, id: &str, granted: bool) {
        let (fixture, example, event) = if granted {
            (
                "complete",
                "TB-210102-20261120-000123",
                "SYSCJG-SP-2026-004217-06",
            )
        } else {
            (
                "returned",
                "TB-210103-20261202-000071",
                "SYSCJG-SP-2026-004388-02",
            )
        };
        let xml = common::read_text(&format!(
            "mappings/tests/scjg-food-event/{fixture}.legacy.xml"
        ))
        .replace(example, id)
        .replace(event, &format!("{id}-done"));
        let (status, body) = self
            .send(
                Method::POST,
                &format!("/api/v1/systems/{SCJG}/events"),
                &self.scjg,
                XML,
                xml,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &str,
        credential: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", common::bearer(credential));
        if !body.is_empty() {
            request = request.header("content-type", content_type);
        }
        self.api.send(request.body(Body::from(body)).unwrap()).await
    }

    pub(crate) async fn post_result(&self, xml: String) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/api/v1/systems/{SCJG}/results"),
            &self.scjg,
            XML,
            xml,
        )
        .await
    }

    pub(crate) async fn revoke(
        &self,
        system: &str,
        credential: &str,
        license: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/api/v1/systems/{system}/results/{license}/revocation"),
            credential,
            "application/json",
            body.to_string(),
        )
        .await
    }

    pub(crate) async fn get(&self, uri: &str, credential: &str) -> (StatusCode, Value) {
        self.send(Method::GET, uri, credential, "", String::new())
            .await
    }

    async fn stored(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for id in ["R-1", "R-2", "R-3", "R-OTHER"] {
            for r in self.api.store.result_records_of(id).await.unwrap() {
                all.push((r.license_id, r.state.as_str().to_owned()));
            }
        }
        all
    }

    /// The audit records of the results webhook and revocations, as (outcome, detail).
    async fn audited(&self, action: &str) -> Vec<(String, String)> {
        self.api
            .store
            .audit_records()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.action == action)
            .map(|r| (r.outcome, r.detail))
            .collect()
    }
}

const RESULTS_ACTION: &str = "POST /api/v1/systems/{id}/results";
const REVOKE_ACTION: &str = "POST /api/v1/systems/{id}/results/{license_id}/revocation";

async fn a_result_answering_a_completed_application_is_kept_and_shown_with_its_state(
    store: &Store,
) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    rig.complete("R-1", true).await;
    let id = license_id(DEPARTMENT, "JY22101020000001", "001");
    let (status, body) = rig.post_result(good_licence("R-1", &id)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    let (status, body) = rig.post_result(good_licence("R-1", &id)).await;
    assert_eq!(
        (status, &body["received"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    assert_eq!(rig.stored().await, [(id.clone(), "valid".to_string())]);

    let (status, app) = rig.get("/api/v1/applications/R-1", &rig.supervisor).await;
    assert_eq!(status, StatusCode::OK, "{app:#}");
    let results = app["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{app:#}");
    assert_eq!(results[0]["license_id"], json!(id));
    assert_eq!(results[0]["state"], json!("valid"));
    assert_eq!(results[0]["version"], json!(1));
    for reader in [&rig.scjg, &rig.supervisor] {
        let (status, shown) = rig.get(&format!("/api/v1/results/{id}"), reader).await;
        assert_eq!(status, StatusCode::OK, "{shown:#}");
        assert_eq!(shown["current"]["license_id"], json!(id));
        assert_eq!(shown["versions"].as_array().unwrap().len(), 1);
        // Masked, but for the sealed credential its own issuing system reads.
        let mut masked = shown.clone();
        for pointer in ["/result", "/current", "/versions/0"] {
            let version = masked.pointer_mut(pointer).unwrap();
            version.as_object_mut().unwrap().remove("credential");
        }
        assert!(!masked.to_string().contains(APPLICANT), "{shown:#}");
    }
    // Another system does not read it; nobody reads a license never received.
    let (status, _) = rig.get(&format!("/api/v1/results/{id}"), &rig.rst).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let unknown = license_id(DEPARTMENT, "NEVER", "001");
    let (status, _) = rig
        .get(&format!("/api/v1/results/{unknown}"), &rig.supervisor)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_result_with_many_problems_is_refused_with_every_one_nothing_stored(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    // Issued by another department (the id agrees with that issuer), with a type code the id
    // does not carry, to someone who is not the applicant.
    let id = license_id(OTHER_DEPARTMENT, "JY22101020000002", "001");
    let xml = licence(
        "R-1",
        &id,
        "11100000000013338W099",
        OTHER_DEPARTMENT,
        STRANGER,
    );
    let (status, problem) = rig.post_result(xml).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    let detail = problem["detail"].as_str().unwrap();
    let expected = [
        "the e-license id's type code is not the license's type_code",
        "the license's issuer (license.issuer.uscc) is not the department of system `sy-scjg-food`",
        "the holder (license.holder) is not the applicant of application R-1 (ID number differs)",
    ];
    let mut at = 0;
    for e in expected {
        let found = detail[at..]
            .find(e)
            .unwrap_or_else(|| panic!("`{e}` after byte {at}, in order: {detail}"));
        at += found + e.len();
    }
    assert!(
        !detail.contains(STRANGER) && !detail.contains(APPLICANT),
        "{detail}"
    );
    assert!(rig.stored().await.is_empty());

    // Recorded for events_refused, as a result by webhook, and audited with the reasons.
    let refusals = store.refusals(Some(SCJG), 10).await.unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        (refusals[0].kind.as_str(), refusals[0].via.as_str()),
        ("result", "webhook")
    );
    assert_eq!(refusals[0].reasons.len(), 3, "{refusals:?}");
    let audited = rig.audited(RESULTS_ACTION).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, "refused 422");
    assert!(audited[0].1.contains("3 reasons"), "{audited:?}");
    assert!(!audited[0].1.contains(STRANGER), "{audited:?}");
}

async fn results_for_no_application_another_systems_or_by_another_system_are_refused(
    store: &Store,
) {
    let rig = rig(store).await;
    rig.application("R-OTHER", RST).await;
    let id = license_id(DEPARTMENT, "JY22101020000003", "001");
    let (status, problem) = rig.post_result(good_licence("R-NONE", &id)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no application with this id was routed through the hub"),
        "{problem:#}"
    );
    let (status, problem) = rig.post_result(good_licence("R-OTHER", &id)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the application was routed to another system"),
        "{problem:#}"
    );
    // Another system's key on this system's webhook.
    let (status, _) = rig
        .send(
            Method::POST,
            &format!("/api/v1/systems/{SCJG}/results"),
            &rig.rst,
            XML,
            good_licence("R-OTHER", &id),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(rig.stored().await.is_empty());
    assert_eq!(store.refusals(Some(SCJG), 10).await.unwrap().len(), 2);
    let outcomes: Vec<String> = rig
        .audited(RESULTS_ACTION)
        .await
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| o.ends_with("403")), "{outcomes:?}");
}

async fn a_wrong_check_character_or_a_completion_granting_nothing_is_refused(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    rig.application("R-2", SCJG).await;
    rig.complete("R-1", true).await;
    rig.complete("R-2", false).await;
    let id = license_id(DEPARTMENT, "JY22101020000004", "001");
    let check = id.chars().last().unwrap();
    let wrong = format!(
        "{}{}",
        &id[..id.len() - 1],
        if check == '0' { '1' } else { '0' }
    );
    let (status, problem) = rig.post_result(good_licence("R-1", &wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert!(problem.to_string().contains("elicense-id"), "{problem:#}");
    let (status, problem) = rig.post_result(good_licence("R-2", &id)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("application R-2 was completed as 退回办结 (1), which grants no license"),
        "{problem:#}"
    );
    assert!(rig.stored().await.is_empty());
    let refusals = store.refusals(Some(SCJG), 10).await.unwrap();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!(rig.audited(RESULTS_ACTION).await.len(), 2);
}

async fn a_license_id_again_with_other_content_is_refused_and_the_first_kept(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    rig.complete("R-1", true).await;
    let id = license_id(DEPARTMENT, "JY22101020000005", "001");
    let (status, _) = rig.post_result(good_licence("R-1", &id)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let changed = good_licence("R-1", &id).replace("食品经营许可证", "食品生产许可证");
    let (status, problem) = rig.post_result(changed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("was sent before with different content"),
        "{problem:#}"
    );
    let kept = store.result_records_of("R-1").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].body.contains("食品经营许可证"), "{}", kept[0].body);
    assert_eq!(store.refusals(Some(SCJG), 10).await.unwrap().len(), 1);
}

async fn a_new_version_supersedes_and_the_issuer_alone_revokes_with_a_reason(store: &Store) {
    let rig = rig(store).await;
    for id in ["R-1", "R-2", "R-3"] {
        rig.application(id, SCJG).await;
        rig.complete(id, true).await;
    }
    let serial = "JY22101020000006";
    let v1 = license_id(DEPARTMENT, serial, "001");
    let v2 = license_id(DEPARTMENT, serial, "002");
    let v3 = license_id(DEPARTMENT, serial, "003");
    assert_eq!(
        rig.post_result(good_licence("R-1", &v1)).await.0,
        StatusCode::ACCEPTED
    );
    // A renewal: version 2 answers another application and supersedes version 1.
    assert_eq!(
        rig.post_result(good_licence("R-2", &v2)).await.0,
        StatusCode::ACCEPTED
    );
    let (_, shown) = rig.get(&format!("/api/v1/results/{v1}"), &rig.scjg).await;
    assert_eq!(shown["result"]["state"], json!("superseded"), "{shown:#}");
    assert_eq!(shown["result"]["superseded_by"], json!(v2));
    assert!(shown["result"]["state_at"].is_string(), "{shown:#}");
    assert_eq!(shown["current"]["license_id"], json!(v2));
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);

    // Another system revokes neither on its own path nor on this one's.
    let reason = json!({"reason": "许可事项发生变化，依法撤销"});
    assert_eq!(
        rig.revoke(RST, &rig.rst, &v2, reason.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        rig.revoke(SCJG, &rig.rst, &v2, reason.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    // A revocation says why; a superseded version is not the one to revoke.
    let (status, problem) = rig
        .revoke(SCJG, &rig.scjg, &v2, json!({"reason": " "}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_eq!(
        rig.revoke(SCJG, &rig.scjg, &v1, reason.clone()).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        rig.stored().await,
        [
            (v1.clone(), "superseded".to_string()),
            (v2.clone(), "valid".to_string())
        ]
    );

    let (status, revoked) = rig.revoke(SCJG, &rig.scjg, &v2, reason.clone()).await;
    assert_eq!(status, StatusCode::OK, "{revoked:#}");
    assert_eq!(revoked["state"], json!("revoked"));
    assert_eq!(revoked["reason"], json!("许可事项发生变化，依法撤销"));
    assert_eq!(
        rig.revoke(SCJG, &rig.scjg, &v2, reason).await.0,
        StatusCode::CONFLICT
    );
    let (_, app) = rig.get("/api/v1/applications/R-2", &rig.supervisor).await;
    assert_eq!(app["results"][0]["state"], json!("revoked"), "{app:#}");
    // A revoked license takes no new version.
    let (status, problem) = rig.post_result(good_licence("R-3", &v3)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"].as_str().unwrap().contains("revoked"),
        "{problem:#}"
    );

    let audited = rig.audited(REVOKE_ACTION).await;
    let outcomes: Vec<&str> = audited.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes.len(), 6, "{audited:?}");
    assert_eq!(
        outcomes.iter().filter(|o| o.ends_with("403")).count(),
        2,
        "{audited:?}"
    );
    assert!(
        audited
            .iter()
            .any(|(o, d)| o.starts_with("ok") && d.contains(&v2) && d.contains("依法撤销")),
        "{audited:?}"
    );
}

async fn an_older_version_after_a_newer_one_is_refused(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    rig.complete("R-1", true).await;
    let serial = "JY22101020000007";
    let v1 = license_id(DEPARTMENT, serial, "001");
    let v2 = license_id(DEPARTMENT, serial, "002");
    assert_eq!(
        rig.post_result(good_licence("R-1", &v2)).await.0,
        StatusCode::ACCEPTED
    );
    let (status, problem) = rig.post_result(good_licence("R-1", &v1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("older than version 002"),
        "{problem:#}"
    );
    assert_eq!(rig.stored().await, [(v2, "valid".to_string())]);
}

/// A result that overtakes its application's completion is kept, awaiting it: the completion
/// makes it valid when it grants a license, and revokes it (saying why) when it grants none;
/// its issuer may revoke it meanwhile.
async fn a_result_before_its_completion_is_kept_awaiting_and_settled_by_it(store: &Store) {
    let rig = rig(store).await;
    for id in ["R-1", "R-2", "R-3"] {
        rig.application(id, SCJG).await;
    }
    let ids: Vec<String> = ["JY22101020000011", "JY22101020000012", "JY22101020000013"]
        .iter()
        .map(|serial| license_id(DEPARTMENT, serial, "001"))
        .collect();
    for (application, id) in ["R-1", "R-2", "R-3"].iter().zip(&ids) {
        let (status, body) = rig.post_result(good_licence(application, id)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    }
    let awaiting = "awaiting_completion".to_string();
    assert_eq!(
        rig.stored().await,
        ids.iter()
            .map(|id| (id.clone(), awaiting.clone()))
            .collect::<Vec<_>>()
    );
    let (status, shown) = rig
        .get(&format!("/api/v1/results/{}", ids[0]), &rig.supervisor)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown:#}");
    assert_eq!(shown["current"]["state"], json!(awaiting), "{shown:#}");

    rig.complete("R-1", true).await;
    rig.complete("R-2", false).await;
    let (status, body) = rig
        .revoke(SCJG, &rig.scjg, &ids[2], json!({ "reason": "错发" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let states: Vec<(String, String)> = rig.stored().await;
    assert_eq!(
        states,
        [
            (ids[0].clone(), "valid".to_string()),
            (ids[1].clone(), "revoked".to_string()),
            (ids[2].clone(), "revoked".to_string()),
        ]
    );
    let revoked = store.result_records_of("R-2").await.unwrap();
    assert_eq!(
        revoked[0].state_reason.as_deref(),
        Some("application R-2 was completed as 退回办结 (1), which grants no license")
    );
    // Nothing was refused on the way.
    assert!(store.refusals(Some(SCJG), 10).await.unwrap().is_empty());
}

/// Polled and queued results meet the same checks, and their refusals are recorded the same
/// way, by the way they came.
async fn results_by_poll_and_queue_are_checked_and_their_refusals_recorded(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    rig.application("R-2", SCJG).await;
    rig.complete("R-1", true).await;
    let config = common::config();
    let events = common::recorder(store);
    let receive = |body: String, via: Via| {
        let (config, events) = (&config, &events);
        async move {
            inbound::receive(
                config,
                store,
                events,
                SCJG,
                MessageKind::Result,
                body.as_bytes(),
                via,
                None,
            )
            .await
        }
    };
    let good = license_id(DEPARTMENT, "JY22101020000008", "001");
    let stranger = licence(
        "R-1",
        &license_id(DEPARTMENT, "JY2210102000000X", "001"),
        TYPE_CODE,
        DEPARTMENT,
        STRANGER,
    );
    let early_id = license_id(DEPARTMENT, "JY22101020000009", "001");
    let early = good_licence("R-2", &early_id);
    match receive(stranger, Via::Poll).await {
        Err(InboundError::Refused(_, reasons)) => assert!(
            reasons
                .iter()
                .any(|r| r.contains("is not the applicant of application R-1")),
            "{reasons:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Off a queue before its application's completion (events come over another queue): kept,
    // awaiting it, not refused and lost.
    assert!(matches!(
        receive(early, Via::Queue).await,
        Ok(Received::New)
    ));
    assert!(matches!(
        receive(good_licence("R-1", &good), Via::Poll).await,
        Ok(Received::New)
    ));
    assert_eq!(
        rig.stored().await,
        [
            (good, "valid".to_string()),
            (early_id, "awaiting_completion".to_string())
        ]
    );
    let refusals = store.refusals(Some(SCJG), 10).await.unwrap();
    let seen: Vec<(&str, &str)> = refusals
        .iter()
        .map(|r| (r.kind.as_str(), r.via.as_str()))
        .collect();
    assert_eq!(seen, [("result", "poll")]);
    assert!(
        refusals.iter().all(|r| r
            .reasons
            .iter()
            .all(|t| !t.contains(STRANGER) && !t.contains(APPLICANT))),
        "{refusals:?}"
    );
}

impl Rig {
    /// A stream read to its end (`follow=false` in `uri`) as `key`'s caller: status and text.
    pub(crate) async fn stream(&self, uri: &str, key: &str) -> (StatusCode, String) {
        self.api
            .send_text(
                Request::get(uri)
                    .header("authorization", common::bearer(key))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    }

    /// The sealed credential of `license` as its issuing system reads it.
    pub(crate) async fn credential(&self, license: &str) -> Value {
        let (status, shown) = self
            .get(&format!("/api/v1/results/{license}"), &self.scjg)
            .await;
        assert_eq!(status, StatusCode::OK, "{shown:#}");
        let version = shown["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["license_id"] == license)
            .unwrap();
        assert_eq!(version["sealed"], json!(true), "{version:#}");
        version["credential"].clone()
    }

    /// Whether the hub's status list of `purpose` has the bit of `credential` set, read as a
    /// verifier reads it: the list fetched without credentials, its seal checked.
    pub(crate) async fn listed(&self, credential: &Value, purpose: StatusPurpose) -> bool {
        let (list, bit) = status_entry(credential, purpose).expect("a status entry");
        let path = list.strip_prefix(common::TEST_PUBLIC_URL).unwrap();
        let (status, list_credential) = self
            .api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{list_credential:#}");
        let controller = self.controller().await;
        tongban::seal::verify_with_controller(&list_credential, &controller)
            .expect("the status list's seal verifies");
        listed(&list_credential, purpose, bit).unwrap()
    }

    pub(crate) async fn controller(&self) -> Value {
        let (status, controller) = self
            .api
            .send(
                Request::get("/api/v1/seal/controller")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{controller:#}");
        controller
    }
}

/// A stored result is sealed as a credential of its department that verifies with the hub's
/// published key (by the hub and independently), and its status lists follow it: suspended
/// while it awaits its completion, clear once valid, revoked once superseded or revoked.
async fn a_stored_result_is_sealed_and_its_status_lists_follow_it(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    let first = license_id(DEPARTMENT, "JY22101020000009", "001");
    let (status, body) = rig.post_result(good_licence("R-1", &first)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    let credential = rig.credential(&first).await;
    assert_eq!(
        credential["issuer"]["id"],
        json!(format!("urn:uscc:{DEPARTMENT}"))
    );
    assert_eq!(
        credential["credentialSubject"]["license"]["id"],
        json!(first)
    );
    assert_eq!(credential["id"], json!(format!("urn:elicense:{first}")));
    let controller = rig.controller().await;
    let method = tongban::seal::verify_with_controller(&credential, &controller)
        .expect("the sealed result verifies with the published key");
    let multikey = method.rsplit_once('#').unwrap().1;
    assert!(crate::seal::verifies_independently(&credential, multikey));
    // The JWKS publishes the same key under the verification method's id.
    let (_, jwks) = rig
        .api
        .send(
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == json!(method) && k["crv"] == "Ed25519"),
        "{jwks:#}"
    );
    // Awaiting its completion: suspended, not revoked; the completion clears it.
    assert!(rig.listed(&credential, StatusPurpose::Suspension).await);
    assert!(!rig.listed(&credential, StatusPurpose::Revocation).await);
    rig.complete("R-1", true).await;
    assert!(!rig.listed(&credential, StatusPurpose::Suspension).await);
    assert!(!rig.listed(&credential, StatusPurpose::Revocation).await);

    // A new version revokes the one it supersedes; a revocation revokes it too.
    let second = license_id(DEPARTMENT, "JY22101020000009", "002");
    let (status, body) = rig.post_result(good_licence("R-1", &second)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    let newer = rig.credential(&second).await;
    assert_ne!(
        status_entry(&newer, StatusPurpose::Revocation),
        status_entry(&credential, StatusPurpose::Revocation)
    );
    assert!(rig.listed(&credential, StatusPurpose::Revocation).await);
    assert!(!rig.listed(&newer, StatusPurpose::Revocation).await);
    let (status, body) = rig
        .revoke(
            SCJG,
            &rig.scjg,
            &second,
            json!({ "reason": "经营场所已注销" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(rig.listed(&newer, StatusPurpose::Revocation).await);

    // Supervisors see that it is sealed, not the credential (it names the holder in clear).
    let (_, shown) = rig
        .get(&format!("/api/v1/results/{second}"), &rig.supervisor)
        .await;
    assert_eq!(shown["result"]["sealed"], json!(true));
    assert!(shown["result"].get("credential").is_none(), "{shown:#}");
    // A list no credential is in yet is not served.
    let (status, _) = rig
        .api
        .send(
            Request::get("/api/v1/seal/status/revocation/7")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every change to a result is on the platform's results stream, in order, in the transaction
/// that made it: stored awaiting its completion, settled by it, superseded by a new version,
/// revoked with the reason; nothing else, and no holder.
async fn every_change_to_a_result_is_on_the_platforms_results_stream(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    let first = license_id(DEPARTMENT, "JY22101020000011", "001");
    let second = license_id(DEPARTMENT, "JY22101020000011", "002");
    assert_eq!(
        rig.post_result(good_licence("R-1", &first)).await.0,
        StatusCode::ACCEPTED
    );
    rig.complete("R-1", true).await;
    assert_eq!(
        rig.post_result(good_licence("R-1", &second)).await.0,
        StatusCode::ACCEPTED
    );
    let (status, body) = rig
        .revoke(
            SCJG,
            &rig.scjg,
            &second,
            json!({ "reason": "许可证已注销" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");

    let (status, text) = rig
        .stream("/api/v1/results/stream?follow=false", &rig.platform)
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains(APPLICANT), "{text}");
    let entries: Vec<Value> = text
        .split("\n\n")
        .filter(|frame| frame.contains("event: result"))
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(!text.contains("event: event"), "{text}");
    let seen: Vec<(Value, Value)> = entries
        .iter()
        .map(|e| (e["state"].clone(), e["license_id"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("awaiting_completion"), json!(first)),
            (json!("valid"), Value::Null),
            (json!("valid"), json!(second)),
            (json!("revoked"), json!(second)),
        ],
        "{text}"
    );
    assert_eq!(entries[1]["settled_by"], json!("办结"));
    assert_eq!(entries[2]["supersedes"], json!(first));
    assert_eq!(entries[3]["reason"], json!("许可证已注销"));
    // The application view stays masked, for the platform too: credentials go out with the
    // holder's own token only.
    for reader in [&rig.platform, &rig.supervisor] {
        let (_, app) = rig.get("/api/v1/applications/R-1", reader).await;
        assert_eq!(app["results"][0]["sealed"], json!(true), "{app:#}");
        assert!(app["results"][0].get("credential").is_none(), "{app:#}");
    }
    // Only results on this stream.
    let (status, _) = rig
        .stream(
            "/api/v1/results/stream?follow=false&kind=event",
            &rig.platform,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

on_both_backends!(
    every_change_to_a_result_is_on_the_platforms_results_stream,
    a_stored_result_is_sealed_and_its_status_lists_follow_it,
    a_result_before_its_completion_is_kept_awaiting_and_settled_by_it,
    a_result_answering_a_completed_application_is_kept_and_shown_with_its_state,
    a_result_with_many_problems_is_refused_with_every_one_nothing_stored,
    results_for_no_application_another_systems_or_by_another_system_are_refused,
    a_wrong_check_character_or_a_completion_granting_nothing_is_refused,
    a_license_id_again_with_other_content_is_refused_and_the_first_kept,
    a_new_version_supersedes_and_the_issuer_alone_revokes_with_a_reason,
    an_older_version_after_a_newer_one_is_refused,
    results_by_poll_and_queue_are_checked_and_their_refusals_recorded,
);
