//! XML 1.0 forbids most control characters: an application holding one is refused at once with
//! each field's pointer (it could only fail at delivery), a mapping never writes one into a
//! system's XML, and an inbound XML document with one, raw or as a character reference, is
//! not well-formed.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Issuer;
use common::api::TestApi;
use tongban::auth::Role;

#[tokio::test]
async fn an_application_holding_control_characters_is_refused_naming_each_field() {
    let issuer = Issuer::new();
    let served = TestApi::new(&issuer).await;
    let platform = common::api_key(&served.store, Role::Platform, None).await;
    let mut app = common::scjg_application();
    app["contact"]["address"] = "辽宁省沈阳市\u{1}和平区".into();
    app["contact"]["name"] = "张三\u{1f}".into();
    // Tab, newline and return are text.
    app["form"]["premises"] = "辽宁省沈阳市和平区示例路 1 号\n1 层\t（东）\r".into();
    let token = issuer.token_for(&app, 3);
    let request = Request::post("/api/v1/applications")
        .header("content-type", "application/json")
        .header("authorization", common::bearer(&platform))
        .header("tongban-user-token", token)
        .body(Body::from(app.to_string()))
        .unwrap();
    let (status, body) = served.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let errors = body["errors"].as_array().unwrap();
    let named = |pointer: &str, code: &str| {
        errors
            .iter()
            .any(|e| e["pointer"] == pointer && e["message"].as_str().unwrap().contains(code))
    };
    assert!(named("/contact/address", "U+0001"), "{body}");
    assert!(named("/contact/name", "U+001F"), "{body}");
    assert!(
        !errors.iter().any(|e| e["pointer"] == "/form/premises"),
        "{body}"
    );
    // The refusal quotes no value.
    assert!(!body.to_string().contains("和平区"), "{body}");
}

#[test]
fn a_mapping_never_writes_a_control_character_into_xml() {
    let config = common::config();
    let mapping = &config.mappings["scjg-food-application"];
    let mut app = common::read_json("examples/messages/application.json");
    app["contact"]["address"] = "示例路\u{7}1 号".into();
    let errors = mapping.to_legacy(&app).expect_err("no BEL in XML");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "/contact/address");
    assert_eq!(errors[0].path, "/contact/address");
    assert!(errors[0].message.contains("U+0007"), "{}", errors[0]);
}

#[test]
fn an_inbound_xml_document_with_a_forbidden_character_is_not_well_formed() {
    let config = common::config();
    let mapping = &config.mappings["scjg-food-event"];
    let good = common::read_text("mappings/tests/scjg-food-event/accept.legacy.xml");
    mapping
        .to_canonical(good.as_bytes())
        .expect("the sample maps");
    // Anywhere in the document, mapped or not: raw, or as a character reference.
    let at_end = good.trim_end().to_string() + "\u{0}";
    let in_text = good.replacen('>', ">\u{1}", 2);
    let as_reference = good.replacen('>', ">&#x1;", 2);
    for (what, broken) in [
        ("a NUL after the document", at_end),
        ("U+0001 in text", in_text),
        ("&#x1;", as_reference),
    ] {
        let errors = mapping.to_canonical(broken.as_bytes()).expect_err(what);
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        assert_eq!(errors[0].field, "(document)", "{what}");
        assert!(
            errors[0].message.contains("U+0000")
                || errors[0].message.contains("U+0001")
                || errors[0].message.contains("&#x1;"),
            "{what}: {}",
            errors[0]
        );
    }
}
