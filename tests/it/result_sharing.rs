//! Result sharing on SQLite and PostgreSQL, through the real API router: another department's
//! system gets a holder's sealed, valid results of a type for a configured purpose, the
//! negative list (`sharing.toml`) refuses naming its rule or withholds an item's results, bad
//! queries list every problem and record nothing, and the holder (through the platform, with
//! their own token) sees their results and every access, never their ID in clear elsewhere.

use crate::common;
use crate::on_both_backends;
use crate::results_inbound::{
    APPLICANT, DEPARTMENT, OTHER_DEPARTMENT, RST, Rig, SCJG, TYPE_CODE, good_licence, license_id,
    rig, rig_with,
};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tongban::config::{Share, SharingRule};
use tongban::store::Store;

/// The 无犯罪记录证明 type, shared only with 公安 and 人社 for license checks.
const NO_CRIME: &str = "11100000000012998X021";
/// The 失业登记 type, never shared.
const UNEMPLOYMENT: &str = "111000000000190374027";
const ZJ: &str = "dl-zj-permit";
const DISPUTE_OVERDUE: tongban::model::Rule = tongban::model::Rule::DisputeOverdue;
const RESULT_UNSETTLED: tongban::model::Rule = tongban::model::Rule::ResultUnsettled;

fn query(license_type: &str, purpose: &str) -> Value {
    json!({
        "holder": { "id_type": "001", "id_number": APPLICANT },
        "license_type": license_type,
        "purpose": purpose,
    })
}

impl Rig {
    /// The example application R-1, completed, with a valid sealed food license; its id.
    async fn licensed(&self) -> String {
        self.application("R-1", SCJG).await;
        self.complete("R-1", true).await;
        let id = license_id(DEPARTMENT, "JY22101020000100", "001");
        let (status, body) = self.post_result(good_licence("R-1", &id)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
        id
    }

    async fn ask(&self, key: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/api/v1/sharing/queries",
            key,
            "application/json",
            body.to_string(),
        )
        .await
    }

    /// `method path` as the platform with `applicant`'s token, with `body` as JSON if given.
    async fn for_user(
        &self,
        method: Method,
        path: &str,
        applicant: &Value,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", common::bearer(&self.platform))
            .header("tongban-user-token", self.issuer.token_for(applicant, 3));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.api.send(request.unwrap()).await
    }

    /// `GET path` as the platform on behalf of the example application's applicant.
    async fn as_holder(&self, path: &str) -> (StatusCode, Value) {
        let app = common::read_json("examples/messages/application.json");
        self.for_user(Method::GET, path, &app, None).await
    }

    async fn accesses(&self) -> Vec<Value> {
        let (status, body) = self.as_holder("/api/v1/me/accesses").await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        body["accesses"].as_array().unwrap().clone()
    }
}

/// Another department's system gets the holder's sealed license for a configured purpose; the
/// access is on the holder's log at once, with who, which and why; the holder lists their
/// results with the credential.
async fn a_department_gets_a_sealed_result_and_the_holder_sees_the_access(store: &Store) {
    let rig = rig(store).await;
    let license = rig.licensed().await;
    assert!(rig.accesses().await.is_empty());

    let (status, answer) = rig.ask(&rig.rst, query(TYPE_CODE, "license-check")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{answer:#}");
    assert_eq!(results[0]["license_id"], json!(license));
    let credential = &results[0]["credential"];
    let controller = rig.controller().await;
    tongban::seal::verify_with_controller(credential, &controller)
        .expect("the shared credential verifies");
    assert_eq!(answer["withheld_by"], json!([]));

    let accesses = rig.accesses().await;
    assert_eq!(accesses.len(), 1, "{accesses:#?}");
    let access = &accesses[0];
    assert_eq!(access["department"]["uscc"], json!(OTHER_DEPARTMENT));
    assert_eq!(
        access["department"]["name"],
        json!("辽宁省人力资源和社会保障厅")
    );
    assert_eq!(access["system"], json!(RST));
    assert_eq!(access["license_id"], json!(license));
    assert_eq!(access["purpose"], json!("license-check"));
    assert_eq!(access["purpose_text"], json!("核验证照真伪与有效性"));

    let (status, mine) = rig.as_holder("/api/v1/me/results").await;
    assert_eq!(status, StatusCode::OK, "{mine:#}");
    let mine = mine["results"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["state"], json!("valid"));
    assert_eq!(mine[0]["credential"], *credential);

    // The audit record of the query names neither the holder's ID nor their name.
    let audited: Vec<String> = store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "POST /api/v1/sharing/queries")
        .map(|r| format!("{} {}", r.outcome, r.detail))
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].contains("shared 1 result(s)"), "{audited:?}");
    assert!(!audited[0].contains(APPLICANT), "{audited:?}");

    // Revoked, it is no longer shared (and no access is recorded for nothing).
    let (status, body) = rig
        .revoke(
            SCJG,
            &rig.scjg,
            &license,
            json!({ "reason": "许可证已注销" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, answer) = rig.ask(&rig.rst, query(TYPE_CODE, "license-check")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(answer["results"], json!([]));
    assert_eq!(rig.accesses().await.len(), 1);
    // The holder still sees it, revoked.
    let (_, mine) = rig.as_holder("/api/v1/me/results").await;
    assert_eq!(mine["results"][0]["state"], json!("revoked"));
    assert_eq!(mine["next"], Value::Null);
    // Another license of the holder: two versions in all, one page each.
    let newer = license_id(DEPARTMENT, "JY22101020000200", "001");
    assert_eq!(
        rig.post_result(good_licence("R-1", &newer)).await.0,
        StatusCode::ACCEPTED
    );
    let (_, first) = rig.as_holder("/api/v1/me/results?limit=1").await;
    assert_eq!(first["results"][0]["license_id"], json!(license));
    let next = first["next"].as_str().unwrap();
    let (_, second) = rig
        .as_holder(&format!("/api/v1/me/results?limit=1&after={next}"))
        .await;
    assert_eq!(
        second["results"][0]["license_id"],
        json!(newer),
        "{second:#}"
    );
    let (status, _) = rig.as_holder("/api/v1/me/results?after=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A query without a purpose, with an unknown one, a holder ID that is not valid and a license
/// type that is not one gets every problem at once and records nothing; the holder ID is never
/// quoted back.
async fn a_bad_query_gets_every_problem_and_records_nothing(store: &Store) {
    let rig = rig(store).await;
    rig.licensed().await;
    let bad_id = "91210102MA0Y7K3L24";
    let (status, problem) = rig
        .ask(
            &rig.rst,
            json!({
                "holder": { "id_type": "001", "id_number": bad_id },
                "license_type": "food license",
                "extra": 1,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(pointers, ["/extra"], "{problem:#}");
    let (status, problem) = rig
        .ask(
            &rig.rst,
            json!({
                "holder": { "id_type": "001", "id_number": bad_id },
                "license_type": "food license",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(
        pointers,
        ["/holder/id_number", "/license_type", "/purpose"],
        "{problem:#}"
    );
    assert!(!problem.to_string().contains(bad_id), "{problem:#}");
    let (status, problem) = rig.ask(&rig.rst, query(TYPE_CODE, "curiosity")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert!(
        problem.to_string().contains("not a configured purpose"),
        "{problem:#}"
    );
    // Only department systems ask.
    let (status, _) = rig
        .ask(&rig.supervisor, query(TYPE_CODE, "license-check"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(rig.accesses().await.is_empty());
}

/// The negative list: a type shared only with named departments for a named purpose is refused
/// to others (naming the rule), and to them for another purpose; a type never shared is
/// refused to all; a rule on an item withholds that item's results and says which rule.
async fn the_negative_list_refuses_naming_the_rule_and_withholds_an_items_results(store: &Store) {
    let rig = rig_with(store, |config| {
        let item = common::read_json("examples/messages/application.json")["item"]["code"]
            .as_str()
            .unwrap()
            .to_owned();
        config.sharing.rules.push(SharingRule {
            id: "food-item-zj-only".into(),
            license_types: vec![],
            items: vec![item],
            share: Share::Only {
                departments: vec!["11210200MB1960357L".into()],
                purposes: vec![],
            },
            note: String::new(),
        });
    })
    .await;
    rig.licensed().await;
    let refused = |(status, problem): (StatusCode, Value), rule: &str, says: &str| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem:#}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("rule `{rule}`")), "{detail}");
        assert!(detail.contains(says), "{detail}");
    };
    refused(
        rig.ask(&rig.scjg, query(NO_CRIME, "license-check")).await,
        "no-crime-police-and-employment",
        "only with the departments it names",
    );
    refused(
        rig.ask(&rig.rst, query(NO_CRIME, "joint-approval")).await,
        "no-crime-police-and-employment",
        "only for the purposes license-check",
    );
    refused(
        rig.ask(&rig.rst, query(UNEMPLOYMENT, "license-check"))
            .await,
        "unemployment-never",
        "never shares it",
    );
    // Allowed for 人社 checking: nothing held of that type, so nothing, and no access.
    let (status, answer) = rig.ask(&rig.rst, query(NO_CRIME, "license-check")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(answer["results"], json!([]));

    // The food license answers an item only 住建 may have results of.
    let (status, answer) = rig.ask(&rig.rst, query(TYPE_CODE, "license-check")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(answer["results"], json!([]));
    assert_eq!(answer["withheld_by"], json!(["food-item-zj-only"]));
    assert!(rig.accesses().await.is_empty());
    let zj = common::api_key(store, tongban::auth::Role::System, Some(ZJ)).await;
    let (status, answer) = rig.ask(&zj, query(TYPE_CODE, "license-check")).await;
    assert_eq!(status, StatusCode::OK, "{answer:#}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 1, "{answer:#}");
    assert_eq!(rig.accesses().await.len(), 1);
}

/// The access log pages newest first with `next`, and a cursor that is not one is refused.
async fn the_access_log_pages_newest_first(store: &Store) {
    let rig = rig(store).await;
    rig.licensed().await;
    for purpose in ["license-check", "joint-approval", "material-reuse"] {
        let (status, answer) = rig.ask(&rig.rst, query(TYPE_CODE, purpose)).await;
        assert_eq!(status, StatusCode::OK, "{answer:#}");
    }
    let (_, first) = rig.as_holder("/api/v1/me/accesses?limit=2").await;
    let purposes = |page: &Value| -> Vec<String> {
        page["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["purpose"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(purposes(&first).len(), 2, "{first:#}");
    let next = first["next"].as_str().unwrap();
    let (_, second) = rig
        .as_holder(&format!("/api/v1/me/accesses?limit=2&before={next}"))
        .await;
    let mut all = purposes(&first);
    all.extend(purposes(&second));
    all.sort();
    assert_eq!(all, ["joint-approval", "license-check", "material-reuse"]);
    assert_eq!(second["next"], Value::Null);
    let (status, _) = rig.as_holder("/api/v1/me/accesses?before=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without the user's token the platform sees nobody's log.
    let (status, _) = rig.get("/api/v1/me/accesses", &rig.platform.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The example application changed into one for the 食品经营许可 change (变更), whose catalog
/// item requires the current 食品经营许可证 (`food_license`, shared by the license type): with
/// `food_license` submitted as a file when `submit_license`, without it otherwise.
fn change_application(submit_license: bool) -> Value {
    const CHANGE: &str = "11210100MB1529370K300011800200002";
    let catalog = common::read_json("examples/province/catalog.json");
    let item = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == CHANGE)
        .unwrap();
    let mut app = common::read_json("examples/messages/application.json");
    app.as_object_mut().unwrap().remove("id");
    app["item"] = json!({
        "code": CHANGE,
        "version": item["version"].as_i64().unwrap_or(1),
        "name": item["name"],
        "type": item["type"],
    });
    let file = |id: &str, name: &str| {
        json!({
            "id": id, "name": name, "trust_level": "C",
            "digest": { "algorithm": "sha256", "value": "7295b0cfec33d0e1e14c1ddbdd4a098b6fcf96dc3c35607372597ce15bc766ac" },
        })
    };
    let mut materials = vec![
        file("application_form", "变更申请书"),
        file("change_proof", "变更证明"),
    ];
    if submit_license {
        materials.push(file("food_license", "食品经营许可证正、副本"));
    }
    app["materials"] = json!(materials);
    app
}

impl Rig {
    async fn submit(&self, app: &Value) -> (StatusCode, Value) {
        self.for_user(Method::POST, "/api/v1/applications", app, Some(app))
            .await
    }
}

/// A required material the applicant did not submit, whose license type they hold a valid
/// result of, is attached by reference (第十三条) and the application goes on, the access on
/// the holder's log with the application in its detail; one submitted anyway is accepted and
/// counted; without the license the material is missing as before.
async fn a_material_the_applicant_holds_is_attached_by_reference(store: &Store) {
    let rig = rig(store).await;
    // No license yet: the material is missing.
    let (status, problem) = rig.submit(&change_application(false)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert!(
        problem
            .to_string()
            .contains("required material `food_license`"),
        "{problem:#}"
    );
    let license = rig.licensed().await;

    let (status, answer) = rig.submit(&change_application(false)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(
        answer["materials_shared"],
        json!([{ "id": "food_license", "elicense_id": license }])
    );
    let id = answer["id"].as_str().unwrap();
    // The application the system gets carries the material by reference.
    let stored = store.application(id).await.unwrap().unwrap();
    let body: Value = serde_json::from_str(&stored.body).unwrap();
    let attached = body["materials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "food_license")
        .unwrap();
    assert_eq!(attached["shared_result"]["elicense_id"], json!(license));
    assert_eq!(attached["trust_level"], json!("A"));
    let accesses = rig.accesses().await;
    assert_eq!(accesses.len(), 1, "{accesses:#?}");
    assert_eq!(accesses[0]["purpose"], json!("material-reuse"));
    assert_eq!(accesses[0]["system"], json!(SCJG));
    assert_eq!(accesses[0]["department"]["uscc"], json!(DEPARTMENT));
    assert_eq!(
        accesses[0]["detail"],
        json!(format!("material `food_license` for application {id}"))
    );

    // Submitted as a file although sharing could supply it: accepted, and said so.
    let (status, answer) = rig.submit(&change_application(true)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(answer["materials_shared"], json!([]));
    assert_eq!(
        answer["materials_submitted_though_shareable"],
        json!(["food_license"])
    );
    assert_eq!(rig.accesses().await.len(), 1);
}

impl Rig {
    async fn post_as_holder(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let app = common::read_json("examples/messages/application.json");
        self.for_user(Method::POST, path, &app, Some(&body)).await
    }

    async fn answer(&self, dispute: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/api/v1/systems/{SCJG}/disputes/{dispute}"),
            &self.scjg,
            "application/json",
            body.to_string(),
        )
        .await
    }

    /// The supervision engine over the rig's store.
    fn engine(&self) -> tongban::workers::engine::Engine {
        let config = common::config();
        tongban::workers::engine::Engine::new(
            self.api.store.clone(),
            config.hub.supervision.calendar.clone(),
            config.hub.supervision.thresholds.clone(),
        )
    }

    /// The open alerts of `rule` of the 市场监管 system after `engine`'s round at `at`.
    async fn alerts_at(
        &self,
        engine: &mut tongban::workers::engine::Engine,
        at: i64,
        rule: tongban::model::Rule,
    ) -> Vec<tongban::store::AlertRecord> {
        engine.step(at).await.unwrap();
        self.api
            .store
            .alerts(&tongban::store::AlertQuery {
                system: Some(SCJG.into()),
                rule: Some(rule),
                open: Some(true),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

/// The holder disputes an access and a license; the issuing system lists them, takes one up and
/// resolves it (an outcome it claims must show in the license), the holder sees the outcome,
/// every change is on the feed, and a dispute left past its working-day limit raises
/// `dispute_overdue` until it is resolved.
async fn a_dispute_goes_to_the_issuing_system_and_its_outcome_to_the_holder(store: &Store) {
    let rig = rig(store).await;
    let license = rig.licensed().await;
    let (status, _) = rig.ask(&rig.rst, query(TYPE_CODE, "license-check")).await;
    assert_eq!(status, StatusCode::OK);
    let access = rig.accesses().await[0]["id"].as_str().unwrap().to_owned();

    // Every problem at once; a license the holder does not hold is not found.
    let (status, problem) = rig.post_as_holder("/api/v1/me/disputes", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem:#}");
    assert_eq!(
        problem["errors"].as_array().unwrap().len(),
        2,
        "{problem:#}"
    );
    let stranger = license_id(DEPARTMENT, "NOTYOURS", "001");
    let (status, _) = rig
        .post_as_holder(
            "/api/v1/me/disputes",
            json!({ "license_id": stranger, "reason": "不是我的" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, of_access) = rig
        .post_as_holder(
            "/api/v1/me/disputes",
            json!({ "access_id": access, "reason": "人社未经我同意调取我的证照" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{of_access:#}");
    assert_eq!(of_access["license_id"], json!(license));
    assert_eq!(of_access["system"], json!(SCJG));
    assert_eq!(of_access["state"], json!("open"));
    let (status, of_license) = rig
        .post_as_holder(
            "/api/v1/me/disputes",
            json!({ "license_id": license, "reason": "经营场所地址有误" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{of_license:#}");
    let first = of_access["id"].as_str().unwrap();
    let second = of_license["id"].as_str().unwrap();

    // The system lists its own; another system may not.
    let (status, listed) = rig
        .get(
            &format!("/api/v1/systems/{SCJG}/disputes?state=open"),
            &rig.scjg,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed:#}");
    assert_eq!(listed["disputes"].as_array().unwrap().len(), 2);
    let (status, _) = rig
        .get(&format!("/api/v1/systems/{SCJG}/disputes"), &rig.rst)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Past its due time, unresolved: a yellow card for the system, until resolved.
    let due = chrono::DateTime::parse_from_rfc3339(of_access["due_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let opened = tongban::clock::now_millis();
    assert!(
        due > opened + 7 * 86_400_000,
        "ten working days: {of_access:#}"
    );
    let mut engine = rig.engine();
    assert!(
        rig.alerts_at(&mut engine, due - 1000, DISPUTE_OVERDUE)
            .await
            .is_empty()
    );
    let overdue = rig
        .alerts_at(&mut engine, due + 1000, DISPUTE_OVERDUE)
        .await;
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert!(overdue[0].evidence.contains(first), "{overdue:?}");

    let (status, body) = rig.answer(first, json!({ "state": "investigating" })).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["state"], json!("investigating"));
    // A revocation claimed while the license is valid; a rejection without its reason.
    let (status, body) = rig
        .answer(first, json!({ "state": "resolved", "outcome": "revoked" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:#}");
    let (status, body) = rig
        .answer(first, json!({ "state": "resolved", "outcome": "rejected" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let (status, body) = rig
        .answer(
            first,
            json!({ "state": "resolved", "outcome": "rejected", "answer": "核验为法定职责，已告知申请人" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let (status, _) = rig.answer(first, json!({ "state": "investigating" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The license disputed: revoked, then the dispute resolved as revoked.
    let (status, _) = rig
        .revoke(
            SCJG,
            &rig.scjg,
            &license,
            json!({ "reason": "地址有误，撤销重发" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = rig
        .answer(second, json!({ "state": "resolved", "outcome": "revoked" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert!(
        rig.alerts_at(&mut engine, due + 2000, DISPUTE_OVERDUE)
            .await
            .is_empty()
    );

    // The holder sees both outcomes.
    let (status, mine) = rig.as_holder("/api/v1/me/disputes").await;
    assert_eq!(status, StatusCode::OK, "{mine:#}");
    let outcomes: Vec<(Value, Value)> = mine["disputes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].clone(), d["outcome"].clone()))
        .collect();
    assert!(
        outcomes.contains(&(json!(first), json!("rejected"))),
        "{mine:#}"
    );
    assert!(
        outcomes.contains(&(json!(second), json!("revoked"))),
        "{mine:#}"
    );

    // Every change is on the feed (kind dispute), and supervisors list them.
    let (status, text) = rig
        .stream(
            "/api/v1/supervision/stream?follow=false&kind=dispute",
            &rig.supervisor,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.matches("event: dispute").count(), 5, "{text}");
    // The platform follows them too, to tell the holder an outcome at once.
    let (status, text) = rig
        .stream(
            "/api/v1/results/stream?follow=false&kind=dispute",
            &rig.platform,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.matches("event: dispute").count(), 5, "{text}");
    assert!(text.contains("\"outcome\":\"revoked\""), "{text}");
    let (status, all) = rig
        .get("/api/v1/supervision/disputes", &rig.supervisor)
        .await;
    assert_eq!(status, StatusCode::OK, "{all:#}");
    assert_eq!(all["disputes"].as_array().unwrap().len(), 2);
}

/// A system with `disputes_url` gets a notice of each change to its disputes, in order; one it
/// refuses is sent again, and nothing is skipped.
async fn dispute_notices_reach_the_system_in_order_and_again_after_a_failure(store: &Store) {
    use common::mock::{Mock, Mode};
    let mock = Mock::start(false, Mode::Fail500).await;
    let url = format!("{}/disputes", mock.base());
    let with_url = |config: &mut tongban::config::Config| {
        config.adapters.get_mut(SCJG).unwrap().outbound.disputes_url = Some(url.clone());
    };
    let rig = rig_with(store, with_url).await;
    let license = rig.licensed().await;
    let (status, dispute) = rig
        .post_as_holder(
            "/api/v1/me/disputes",
            json!({ "license_id": license, "reason": "证照信息有误" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dispute:#}");
    let id = dispute["id"].as_str().unwrap();
    let (status, _) = rig.answer(id, json!({ "state": "investigating" })).await;
    assert_eq!(status, StatusCode::OK);

    let mut config = common::config();
    with_url(&mut config);
    let adapter = &config.adapters[SCJG];
    let client = reqwest::Client::new();
    let notices = tongban::workers::notify::Notices::disputes(adapter).expect("a disputes_url");
    assert_eq!(notices.url, url);
    let step = || tongban::workers::notify::step(&client, store, &notices);
    assert!(step().await.is_err(), "the system refuses");
    mock.set_mode(Mode::Ok);
    assert_eq!(step().await.unwrap(), 2);
    assert_eq!(step().await.unwrap(), 0, "nothing twice");
    let got = mock.receptions();
    assert_eq!(got.len(), 3, "one refused, then both");
    let notices: Vec<Value> = got[1..]
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(notices[0]["dispute"]["id"], json!(id));
    assert_eq!(
        (
            &notices[0]["dispute"]["state"],
            &notices[1]["dispute"]["state"]
        ),
        (&json!("open"), &json!("investigating"))
    );
    assert_eq!(
        notices[1]["routing_key"],
        json!(format!("dispute.{SCJG}.investigating"))
    );
    assert!(notices[0]["seq"].as_i64() < notices[1]["seq"].as_i64());
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).unwrap()["seq"],
        notices[0]["seq"],
        "the refused notice is the one sent again"
    );
}

/// A result left awaiting its application's completion longer than the record hold raises
/// `result_unsettled` for its system, and the completion resolves it.
async fn a_result_left_awaiting_its_completion_is_flagged_until_settled(store: &Store) {
    let rig = rig(store).await;
    rig.application("R-1", SCJG).await;
    let license = license_id(DEPARTMENT, "JY22101020000300", "001");
    assert_eq!(
        rig.post_result(good_licence("R-1", &license)).await.0,
        StatusCode::ACCEPTED
    );
    let config = common::config();
    let hold = i64::from(config.hub.supervision.thresholds.record_hold_hours) * 3_600_000;
    let now = tongban::clock::now_millis();
    let mut engine = rig.engine();
    assert!(
        rig.alerts_at(&mut engine, now + hold - 60_000, RESULT_UNSETTLED)
            .await
            .is_empty()
    );
    let raised = rig
        .alerts_at(&mut engine, now + hold + 60_000, RESULT_UNSETTLED)
        .await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(raised[0].evidence.contains(&license), "{raised:?}");
    rig.complete("R-1", true).await;
    assert!(
        rig.alerts_at(&mut engine, now + hold + 120_000, RESULT_UNSETTLED)
            .await
            .is_empty()
    );
}

on_both_backends!(
    a_result_left_awaiting_its_completion_is_flagged_until_settled,
    dispute_notices_reach_the_system_in_order_and_again_after_a_failure,
    a_dispute_goes_to_the_issuing_system_and_its_outcome_to_the_holder,
    a_material_the_applicant_holds_is_attached_by_reference,
    a_department_gets_a_sealed_result_and_the_holder_sees_the_access,
    a_bad_query_gets_every_problem_and_records_nothing,
    the_negative_list_refuses_naming_the_rule_and_withholds_an_items_results,
    the_access_log_pages_newest_first,
);

/// `sharing.toml` is compiled with the rest of the configuration, every problem at once with
/// its line.
#[test]
fn sharing_toml_errors_are_listed_together_with_their_lines() {
    let dir = common::config_copy();
    std::fs::write(
        dir.path().join("sharing.toml"),
        r#"[purposes]
license-check = "核验"
"Bad Code" = "x"

[[rule]]
id = "a"
license_types = ["lowercase"]
share = "only"

[[rule]]
id = "a"
items = ["not-an-item"]
share = "never"
departments = ["11210000001756420X"]
purposes = ["unknown"]
"#,
    )
    .unwrap();
    let errors = tongban::config::Config::load(dir.path())
        .unwrap_err()
        .to_string();
    for expected in [
        "a purpose code is 1-64 lowercase letters",
        "`lowercase` is not a license type code",
        "`only` names the departments it shares with",
        "rule id `a` is used above",
        "`not-an-item` is not an item code",
        "is not a department's USCC",
        "no purpose `unknown` in [purposes]",
        "`never` shares with nobody",
    ] {
        assert!(errors.contains(expected), "`{expected}` in:\n{errors}");
    }
    assert!(errors.contains("sharing.toml:7"), "{errors}");
}
