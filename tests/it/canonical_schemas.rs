//! The canonical message schemas (application, case event, result) accept the examples in
//! `examples/messages/` and reject each kind of broken message at the JSON pointer of the fault.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use tongban::config::Config;
use tongban::ids;
use tongban::schema::Violation;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::load(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("the repository configuration must compile: {e}"))
    })
}

fn read_json(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

fn application() -> Value {
    read_json("examples/messages/application.json")
}

fn case_events() -> Vec<Value> {
    match read_json("examples/messages/case-events.json") {
        Value::Array(events) => events,
        other => panic!("case-events.json must be an array, not {other}"),
    }
}

/// The example event whose node has this name.
fn event(name: &str) -> Value {
    case_events()
        .into_iter()
        .find(|e| e["node"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} event in case-events.json"))
}

fn result() -> Value {
    read_json("examples/messages/result.json")
}

fn validate(schema: &str, instance: &Value) -> Vec<Violation> {
    config().schemas.validate(schema, instance)
}

/// Sets the value at `pointer` (whose parent must exist), or removes it when `value` is `None`.
fn set(doc: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    let parent = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"));
    match (parent, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_string(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key)
                .unwrap_or_else(|| panic!("nothing at {pointer}"));
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        (other, _) => panic!("{pointer}: parent is {other}"),
    }
}

/// `doc` with each `(pointer, value)` applied by [`set`].
fn mutated(mut doc: Value, changes: &[(&str, Option<Value>)]) -> Value {
    for (pointer, value) in changes {
        set(&mut doc, pointer, value.clone());
    }
    doc
}

/// Whether a violation at `got` belongs to the fault expected at `want`: the same place, or
/// inside it (a fault in a nested value). The root contains everything, so a fault expected at
/// the root accepts only violations at the root.
fn belongs(got: &str, want: &str) -> bool {
    got == want || (!want.is_empty() && got.starts_with(&format!("{want}/")))
}

/// Asserts that `instance` violates `schema` at every pointer of `expected`, and nowhere else
/// (except inside a non-root expected pointer).
#[track_caller]
fn assert_violations(schema: &str, instance: &Value, expected: &[&str]) {
    let violations = validate(schema, instance);
    let pointers: BTreeSet<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
    for want in expected {
        assert!(
            pointers.contains(want),
            "{schema}: expected a violation at `{want}`, got {violations:#?}"
        );
    }
    for got in &pointers {
        assert!(
            expected.iter().any(|want| belongs(got, want)),
            "{schema}: unexpected violation at `{got}` (expected only {expected:?}): {violations:#?}"
        );
    }
}

/// A citizen ID number with a right check character (张三, born 1985-03-12 in 沈阳市和平区).
const CITIZEN_ID: &str = "210102198503120033";
/// The same number with another check character.
const CITIZEN_ID_BAD_CHECK: &str = "210102198503120034";
/// The applicant enterprise's unified social credit code.
const ENTERPRISE_USCC: &str = "91210102MA0Y7K3L23";

// ---------------------------------------------------------------------------------------------
// The examples

#[test]
fn every_example_message_validates() {
    let app = application();
    assert_eq!(validate("application", &app), []);
    let events = case_events();
    assert!(events.len() >= 6, "{} events", events.len());
    for (i, event) in events.iter().enumerate() {
        assert_eq!(validate("case-event", event), [], "event {i}");
    }
    assert_eq!(validate("result", &result()), []);
}

#[test]
fn the_example_application_is_for_a_real_catalog_item_with_all_its_required_materials() {
    let app = application();
    let catalog = read_json("examples/province/catalog.json");
    let code = app["item"]["code"].as_str().unwrap();
    let item = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == code)
        .unwrap_or_else(|| panic!("{code} is not in the example catalog"));
    assert_eq!(app["item"]["name"], item["name"]);
    assert_eq!(app["item"]["type"], item["type"]);
    assert_eq!(app["item"]["version"], 1);

    let submitted: BTreeSet<&str> = app["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let catalog_materials = item["materials"].as_array().unwrap();
    for material in catalog_materials {
        let id = material["id"].as_str().unwrap();
        if material["required"] == true {
            assert!(submitted.contains(id), "required material {id} missing");
        }
    }
    for m in app["materials"].as_array().unwrap() {
        let listed = catalog_materials
            .iter()
            .find(|c| c["id"] == m["id"])
            .unwrap_or_else(|| panic!("material {} is not the item's", m["id"]));
        assert_eq!(m["name"], listed["name"]);
    }

    // The system that handles it is the repository's example adapter.
    let system = result()["system"].as_str().unwrap().to_string();
    assert!(
        config().adapters.contains_key(&system),
        "no adapter {system}"
    );
}

#[test]
fn the_example_messages_tell_one_consistent_story() {
    let app = application();
    let id = &app["id"];
    let events = case_events();
    let result = result();

    let names: Vec<&str> = events
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["补正", "受理", "审查", "特别程序", "决定", "办结"]);
    let mut times = Vec::new();
    for event in &events {
        assert_eq!(&event["application_id"], id);
        assert_eq!(event["system"], result["system"]);
        times.push(
            chrono::DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap()).unwrap(),
        );
    }
    assert!(times.is_sorted(), "events out of order");
    let submitted =
        chrono::DateTime::parse_from_rfc3339(app["submitted_at"].as_str().unwrap()).unwrap();
    assert!(submitted < times[0]);
    let event_ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(event_ids.len(), events.len(), "event ids repeat");

    // The supplement asks for one of the application's materials.
    let supplement = &event("补正")["supplement"]["materials"];
    for m in supplement.as_array().unwrap() {
        assert!(
            app["materials"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == *m)
        );
    }

    // The result answers the application, for its applicant, with an id that agrees with its
    // type code and issuer.
    assert_eq!(&result["application_id"], id);
    let license = &result["license"];
    assert_eq!(license["holder"]["name"], app["applicant"]["name"]);
    assert_eq!(
        license["holder"]["id_number"],
        app["applicant"]["id_number"]
    );
    let parsed = ids::check_elicense_id(license["id"].as_str().unwrap()).unwrap();
    assert_eq!(parsed.license_type, license["type_code"]);
    assert_eq!(parsed.issuer_uscc, license["issuer"]["uscc"]);
    assert_eq!(parsed.serial, license["number"]);
}

#[test]
fn the_example_identifiers_are_checksummed() {
    assert!(ids::check_citizen_id(CITIZEN_ID).is_ok());
    assert!(ids::check_citizen_id(CITIZEN_ID_BAD_CHECK).is_err());
    assert!(ids::check_uscc(ENTERPRISE_USCC).is_ok());
    assert!(
        ids::check_elicense_id(
            "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F"
        )
        .is_ok()
    );
}

#[test]
fn every_canonical_schema_is_loaded_with_its_id() {
    let docs: Vec<(&str, &Value)> = config().schemas.documents().collect();
    for name in ["application", "case-event", "result"] {
        let (_, doc) = docs
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("schema {name} not loaded"));
        assert_eq!(
            doc["$id"],
            format!("https://tongban.example/schemas/{name}.schema.json")
        );
        assert_eq!(
            doc["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Applications

#[test]
fn a_citizen_id_with_a_wrong_check_character_is_rejected() {
    let natural_person = json!({
        "kind": "1",
        "name": "张三",
        "id_type": "111",
        "id_number": CITIZEN_ID,
    });
    let good = mutated(application(), &[("/applicant", Some(natural_person))]);
    assert_eq!(validate("application", &good), []);

    let bad = mutated(
        good,
        &[("/applicant/id_number", Some(json!(CITIZEN_ID_BAD_CHECK)))],
    );
    assert_violations("application", &bad, &["/applicant/id_number"]);

    let bad_representative = mutated(
        application(),
        &[(
            "/applicant/legal_representative/id_number",
            Some(json!(CITIZEN_ID_BAD_CHECK)),
        )],
    );
    assert_violations(
        "application",
        &bad_representative,
        &["/applicant/legal_representative/id_number"],
    );
}

#[test]
fn the_id_number_format_follows_the_id_type() {
    // Kind 9 (other) may use either id type, so only the number's format is wrong here.
    let citizen_type_with_uscc = mutated(
        application(),
        &[
            ("/applicant/kind", Some(json!("9"))),
            ("/applicant/id_type", Some(json!("111"))),
        ],
    );
    assert_violations(
        "application",
        &citizen_type_with_uscc,
        &["/applicant/id_number"],
    );

    let uscc_type_with_citizen_id = mutated(
        application(),
        &[
            ("/applicant/kind", Some(json!("9"))),
            ("/applicant/id_number", Some(json!(CITIZEN_ID))),
        ],
    );
    assert_violations(
        "application",
        &uscc_type_with_citizen_id,
        &["/applicant/id_number"],
    );

    for (id_type, number) in [("111", CITIZEN_ID), ("001", ENTERPRISE_USCC)] {
        let other = mutated(
            application(),
            &[
                ("/applicant/kind", Some(json!("9"))),
                ("/applicant/id_type", Some(json!(id_type))),
                ("/applicant/id_number", Some(json!(number))),
            ],
        );
        assert_eq!(validate("application", &other), [], "kind 9, {id_type}");
    }
}

#[test]
fn the_id_type_follows_the_applicant_kind() {
    // A natural person with a USCC: the number is a valid USCC, only the type is wrong.
    let person_with_uscc = mutated(application(), &[("/applicant/kind", Some(json!("1")))]);
    assert_violations("application", &person_with_uscc, &["/applicant/id_type"]);

    // An enterprise, institution, organisation or government body with a citizen ID number.
    for kind in ["2", "3", "4", "5", "6"] {
        let organisation_with_citizen_id = mutated(
            application(),
            &[
                ("/applicant/kind", Some(json!(kind))),
                ("/applicant/id_type", Some(json!("111"))),
                ("/applicant/id_number", Some(json!(CITIZEN_ID))),
            ],
        );
        assert_violations(
            "application",
            &organisation_with_citizen_id,
            &["/applicant/id_type"],
        );
    }

    let unknown_kind = mutated(application(), &[("/applicant/kind", Some(json!("7")))]);
    assert_violations("application", &unknown_kind, &["/applicant/kind"]);
}

#[test]
fn a_material_is_either_submitted_or_shared_never_both_nor_neither() {
    let app = application();
    assert!(app["materials"][0]["digest"].is_object());
    assert!(app["materials"][1]["shared_result"].is_object());

    let both = mutated(
        app.clone(),
        &[(
            "/materials/1/digest",
            Some(app["materials"][0]["digest"].clone()),
        )],
    );
    assert_violations("application", &both, &["/materials/1"]);

    let neither = mutated(app.clone(), &[("/materials/0/digest", None)]);
    assert_violations("application", &neither, &["/materials/0"]);

    let upper_hex = mutated(
        app.clone(),
        &[(
            "/materials/0/digest/value",
            Some(json!(
                app["materials"][0]["digest"]["value"]
                    .as_str()
                    .unwrap()
                    .to_uppercase()
            )),
        )],
    );
    assert_violations("application", &upper_hex, &["/materials/0/digest/value"]);

    let md5 = mutated(
        app.clone(),
        &[("/materials/0/digest/algorithm", Some(json!("md5")))],
    );
    assert_violations("application", &md5, &["/materials/0/digest/algorithm"]);

    let bad_elicense = mutated(
        app.clone(),
        &[(
            "/materials/1/shared_result/elicense_id",
            Some(json!(
                "1.2.156.3005.2.11100000000013338W016.11210100MB1529370K.2101022025000318.001.Y"
            )),
        )],
    );
    assert_violations(
        "application",
        &bad_elicense,
        &["/materials/1/shared_result/elicense_id"],
    );

    let bad_trust = mutated(app, &[("/materials/2/trust_level", Some(json!("E")))]);
    assert_violations("application", &bad_trust, &["/materials/2/trust_level"]);
}

#[test]
fn application_fields_are_checked_one_by_one() {
    let cases: [(&str, Value); 9] = [
        ("/item/code", json!("11210100MB1529370J300011800200001")),
        ("/item/type", json!("99")),
        ("/item/version", json!(0)),
        ("/region", json!("010101")),
        ("/contact/phone", json!("1380000000")),
        ("/contact/email", json!("not an address")),
        ("/channel", json!("9")),
        ("/submitted_at", json!("2026-11-20 09:30")),
        ("/id", json!("has spaces")),
    ];
    for (pointer, value) in cases {
        let bad = mutated(application(), &[(pointer, Some(value))]);
        assert_violations("application", &bad, &[pointer]);
    }

    // A landline with its area code is a phone number too.
    for phone in ["024-23456789", "02423456789", "0411-8765432"] {
        let landline = mutated(application(), &[("/contact/phone", Some(json!(phone)))]);
        assert_eq!(validate("application", &landline), [], "{phone}");
    }

    // The hub assigns the id; a first submission has none. Region and form are optional too.
    let minimal = mutated(
        application(),
        &[
            ("/id", None),
            ("/region", None),
            ("/form", None),
            ("/applicant/legal_representative", None),
            ("/contact/address", None),
            ("/contact/email", None),
        ],
    );
    assert_eq!(validate("application", &minimal), []);
}

#[test]
fn required_application_fields_are_required() {
    for field in [
        "item",
        "applicant",
        "contact",
        "channel",
        "materials",
        "submitted_at",
    ] {
        let missing = mutated(application(), &[(&format!("/{field}"), None)]);
        assert_violations("application", &missing, &[""]);
    }
    let no_number = mutated(application(), &[("/applicant/id_number", None)]);
    assert_violations("application", &no_number, &["/applicant"]);
}

#[test]
fn unknown_properties_are_rejected_except_in_form_data() {
    for object in [
        "",
        "/item",
        "/applicant",
        "/contact",
        "/materials/0",
        "/materials/0/digest",
    ] {
        let extra = mutated(
            application(),
            &[(&format!("{object}/remark"), Some(json!("x")))],
        );
        assert_violations("application", &extra, &[object]);
    }
    let form = mutated(
        application(),
        &[("/form/anything", Some(json!({ "nested": [1, 2, 3] })))],
    );
    assert_eq!(validate("application", &form), []);
}

#[test]
fn three_independent_problems_are_all_reported() {
    let bad = mutated(
        application(),
        &[
            (
                "/applicant/legal_representative/id_number",
                Some(json!(CITIZEN_ID_BAD_CHECK)),
            ),
            ("/contact/phone", Some(json!("12345"))),
            (
                "/materials/1/digest",
                Some(json!({ "algorithm": "sha256", "value": "0".repeat(64) })),
            ),
            ("/remark", Some(json!("unexpected"))),
        ],
    );
    let violations = validate("application", &bad);
    assert!(violations.len() >= 3, "{violations:#?}");
    assert_violations(
        "application",
        &bad,
        &[
            "/applicant/legal_representative/id_number",
            "/contact/phone",
            "/materials/1",
            "",
        ],
    );
}

#[test]
fn violation_messages_do_not_quote_personal_data() {
    let bad = mutated(
        application(),
        &[(
            "/applicant/legal_representative/id_number",
            Some(json!(CITIZEN_ID_BAD_CHECK)),
        )],
    );
    for v in validate("application", &bad) {
        assert!(!v.message.contains(CITIZEN_ID_BAD_CHECK), "{v:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Case events

/// A result its node type does not allow (an end step that "accepts", a start step that does not
/// accept) is a fact the department reported, wrong but understood: the schema takes it, and the
/// case model flags it for e-supervision (`out_of_order`) instead of the hub refusing it.
#[test]
fn a_result_its_node_type_does_not_allow_is_taken_and_flagged_not_refused() {
    use tongban::model::{CaseEvent, NodeResult, NodeType};
    use tongban::supervision::case::{Effect, OutOfOrder};
    let allowed = [
        ("1", ["4", "5", "6"].as_slice()),
        ("2", ["0", "1", "5", "6", "7"].as_slice()),
        ("3", ["0", "1"].as_slice()),
        ("4", ["1", "2", "3", "4"].as_slice()),
    ];
    // 审查 has no conditional sections, so only the node's type and result matter.
    for (node_type, results) in allowed {
        for result in ["0", "1", "2", "3", "4", "5", "6", "7"] {
            let mut e = mutated(
                event("审查"),
                &[
                    ("/node/type", Some(json!(node_type))),
                    ("/node/result", Some(json!(result))),
                ],
            );
            // Results 5 and 6 need their details; give them so only the pairing is tested.
            if result == "5" {
                set(
                    &mut e,
                    "/supplement",
                    Some(event("补正")["supplement"].clone()),
                );
            }
            if result == "6" {
                set(
                    &mut e,
                    "/special_procedure",
                    Some(event("特别程序")["special_procedure"].clone()),
                );
            }
            assert_eq!(
                validate("case-event", &e),
                [],
                "type {node_type} result {result}"
            );
            let node = CaseEvent::from_json(&e).unwrap().node;
            assert_eq!(
                node.node_type.allows(node.result),
                results.contains(&result),
                "type {node_type} result {result}"
            );
        }
    }

    // The brief's example: an end step cannot "accept". It is taken, and flagged.
    let end_accepting = mutated(event("办结"), &[("/node/result", Some(json!("4")))]);
    assert_eq!(validate("case-event", &end_accepting), []);
    let mut case = tongban::supervision::case::Case::new("TB-1", "sy-scjg-food", "ITEM", 0);
    let applied = case.apply(&CaseEvent::from_json(&end_accepting).unwrap());
    assert_eq!(applied.effect, Effect::Ignored);
    assert_eq!(
        applied.out_of_order,
        [OutOfOrder::ResultNotAllowed {
            node_type: NodeType::End,
            result: NodeResult::Accepted
        }]
    );
}

/// DOMAIN.md asks for a reason with completion results 1–5. A completion without one still
/// closes the case: the schema takes it, and e-supervision raises `completion_without_reason`,
/// which it could not if the hub refused the message.
#[test]
fn the_completion_step_says_how_the_case_ended() {
    let without = mutated(event("办结"), &[("/completion", None)]);
    assert_violations("case-event", &without, &[""]);

    for result in ["0", "1", "2", "3", "4", "5", "6"] {
        for completion in [
            json!({ "result": result }),
            json!({ "result": result, "reason": "" }),
            json!({ "result": result, "reason": "申请人撤回申请" }),
        ] {
            let e = mutated(event("办结"), &[("/completion", Some(completion.clone()))]);
            assert_eq!(validate("case-event", &e), [], "{completion}");
        }
    }
    let unknown = mutated(
        event("办结"),
        &[("/completion", Some(json!({ "result": "7" })))],
    );
    assert_violations("case-event", &unknown, &["/completion/result"]);
    let long = mutated(
        event("办结"),
        &[(
            "/completion",
            Some(json!({ "result": "1", "reason": "理".repeat(2001) })),
        )],
    );
    assert_violations("case-event", &long, &["/completion/reason"]);
}

#[test]
fn a_supplement_request_lists_what_to_supplement() {
    let without = mutated(event("补正"), &[("/supplement", None)]);
    assert_violations("case-event", &without, &[""]);

    let nothing_listed = mutated(event("补正"), &[("/supplement/materials", Some(json!([])))]);
    assert_violations("case-event", &nothing_listed, &["/supplement/materials"]);

    let bad_id = mutated(
        event("补正"),
        &[("/supplement/materials/0", Some(json!("Premises Layout")))],
    );
    assert_violations("case-event", &bad_id, &["/supplement/materials/0"]);

    let no_reason = mutated(event("补正"), &[("/supplement/reason", None)]);
    assert_violations("case-event", &no_reason, &["/supplement"]);
}

#[test]
fn a_special_procedure_says_which_why_and_since_when() {
    let without = mutated(event("特别程序"), &[("/special_procedure", None)]);
    assert_violations("case-event", &without, &[""]);

    let unknown_kind = mutated(
        event("特别程序"),
        &[("/special_procedure/kind", Some(json!("7")))],
    );
    assert_violations("case-event", &unknown_kind, &["/special_procedure/kind"]);

    let no_start = mutated(
        event("特别程序"),
        &[("/special_procedure/started_at", None)],
    );
    assert_violations("case-event", &no_start, &["/special_procedure"]);

    let running = mutated(event("特别程序"), &[("/special_procedure/ended_at", None)]);
    assert_eq!(validate("case-event", &running), []);
}

#[test]
fn case_event_fields_are_checked_one_by_one() {
    let cases: [(&str, Value); 7] = [
        ("/system", json!("SY_SCJG")),
        ("/event_id", json!("")),
        ("/application_id", json!("TB 000123")),
        ("/node/name", json!("签收")),
        ("/node/type", json!("5")),
        ("/opinion", json!("意".repeat(2001))),
        ("/occurred_at", json!("2026-11-23")),
    ];
    for (pointer, value) in cases {
        let bad = mutated(event("受理"), &[(pointer, Some(value))]);
        assert_violations("case-event", &bad, &[pointer]);
    }
    for field in [
        "event_id",
        "application_id",
        "system",
        "node",
        "handler",
        "occurred_at",
    ] {
        let missing = mutated(event("受理"), &[(&format!("/{field}"), None)]);
        assert_violations("case-event", &missing, &[""]);
    }
    for object in ["", "/node", "/handler"] {
        let extra = mutated(
            event("受理"),
            &[(&format!("{object}/remark"), Some(json!("x")))],
        );
        assert_violations("case-event", &extra, &[object]);
    }
}

// ---------------------------------------------------------------------------------------------
// Results

#[test]
fn a_result_needs_a_valid_elicense_id() {
    let id = result()["license"]["id"].as_str().unwrap().to_string();
    let wrong_check = format!("{}A", &id[..id.len() - 1]);
    assert_ne!(wrong_check, id);
    for bad_id in [
        wrong_check.as_str(),
        "1.2.156.3005.2.11100000000013338W024.11210100MB1529370J.JY22101020001234.001.B",
        "JY22101020001234",
    ] {
        let bad = mutated(result(), &[("/license/id", Some(json!(bad_id)))]);
        assert_violations("result", &bad, &["/license/id"]);
    }
}

#[test]
fn the_holder_id_number_follows_its_type() {
    let uscc_as_citizen = mutated(result(), &[("/license/holder/id_type", Some(json!("111")))]);
    assert_violations("result", &uscc_as_citizen, &["/license/holder/id_number"]);

    let person = mutated(
        result(),
        &[(
            "/license/holder",
            Some(json!({ "name": "张三", "id_type": "111", "id_number": CITIZEN_ID })),
        )],
    );
    assert_eq!(validate("result", &person), []);

    let bad_person = mutated(
        person,
        &[(
            "/license/holder/id_number",
            Some(json!(CITIZEN_ID_BAD_CHECK)),
        )],
    );
    assert_violations("result", &bad_person, &["/license/holder/id_number"]);
}

#[test]
fn result_fields_are_checked_one_by_one() {
    let cases: [(&str, Value); 6] = [
        ("/license/issuer/uscc", json!("11210100MB1529370J")),
        ("/license/issued_on", json!("2026-11-31")),
        ("/license/valid_until", json!("2031/11/29")),
        ("/license/type_code", json!("食品经营")),
        ("/issued_at", json!("yesterday")),
        ("/system", json!("-leading-dash")),
    ];
    for (pointer, value) in cases {
        let bad = mutated(result(), &[(pointer, Some(value))]);
        assert_violations("result", &bad, &[pointer]);
    }
    for object in ["", "/license", "/license/issuer", "/license/holder"] {
        let extra = mutated(result(), &[(&format!("{object}/remark"), Some(json!("x")))]);
        assert_violations("result", &extra, &[object]);
    }
    let free_form = mutated(
        result(),
        &[("/license/data/anything", Some(json!([1, "二"])))],
    );
    assert_eq!(validate("result", &free_form), []);

    // A license valid indefinitely (长期有效) has no end date.
    let indefinite = mutated(result(), &[("/license/valid_until", None)]);
    assert_eq!(validate("result", &indefinite), []);
    let no_holder = mutated(result(), &[("/license/holder", None)]);
    assert_violations("result", &no_holder, &["/license"]);
}
