//! The mapping engine on the repository's own files: every mapping test case passes, example
//! mappings round-trip arbitrary text and times (property tests), hostile XML is refused
//! cleanly, and the README's worked example works exactly as written.

use crate::common;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::Value;
use std::path::Path;
use tongban::config::Config;
use tongban::mapping::cases;

#[test]
fn every_mapping_test_case_passes_and_every_mapping_has_cases() {
    let config = common::config();
    let reports = cases::run_all(&config.dir, &config.mappings);
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}/{}:\n{}", r.mapping, r.case, r.failures.join("\n")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for name in config.mappings.keys() {
        assert!(
            reports.iter().any(|r| &r.mapping == name),
            "mapping {name} has no test cases in mappings/tests/{name}/"
        );
    }
}

/// A case whose expected errors are wrong fails, with the difference explained.
#[test]
fn a_wrong_expectation_fails_with_an_explanation() {
    let dir = common::config_copy();
    let tests = dir.path().join("mappings/tests/scjg-food-event");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        tests.join("wrong.legacy.xml"),
        r#"<sp:办件环节 xmlns:sp="http://spjy.scjg.shenyang.gov.cn/ws/2019"><sp:流水号>1</sp:流水号></sp:办件环节>"#,
    )
    .unwrap();
    std::fs::write(
        tests.join("wrong.errors.json"),
        r#"[{"field": "/event_id", "path": "sp:流水号"}]"#,
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap();
    let reports = cases::run_all(&config.dir, &config.mappings);
    let wrong = reports
        .iter()
        .find(|r| r.case == "wrong")
        .expect("the case ran");
    assert!(!wrong.passed());
    let text = wrong.failures.join("\n");
    assert!(text.contains("expected but not reported"), "{text}");
    assert!(
        text.contains("/application_id"),
        "the unexpected errors are listed: {text}"
    );
}

fn mapping(name: &str) -> std::sync::Arc<tongban::mapping::Mapping> {
    common::config()
        .mappings
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("mapping {name}"))
}

#[test]
fn hostile_xml_is_refused_with_a_document_error_and_nothing_else() {
    let m = mapping("scjg-food-application");
    let ns = "http://spjy.scjg.shenyang.gov.cn/ws/2019";
    let envelope = |body: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sp="{ns}"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "billion laughs",
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">]>{}"#,
                envelope("<sp:提交申请>&lol1;</sp:提交申请>")
            )
            .into_bytes(),
            "DTD",
        ),
        (
            "external entity",
            envelope(r#"<sp:提交申请><sp:申请编号>&xxe;</sp:申请编号></sp:提交申请>"#).into_bytes(),
            "entity",
        ),
        (
            "deep nesting",
            envelope(&format!("<sp:提交申请>{}{}</sp:提交申请>", "<sp:x>".repeat(200), "</sp:x>".repeat(200))).into_bytes(),
            "deeper",
        ),
        (
            "oversized",
            envelope(&format!("<sp:提交申请><sp:申请编号>{}</sp:申请编号></sp:提交申请>", "A".repeat(5 << 20))).into_bytes(),
            "larger",
        ),
        ("malformed", envelope("<sp:提交申请><sp:申请编号></sp:提交申请>").into_bytes(), "well-formed"),
        ("not XML", b"\x00\x01\x02garbage".to_vec(), "well-formed"),
        (
            "SOAP fault",
            envelope("<soap:Fault><faultcode>soap:Server</faultcode><faultstring>系统维护</faultstring></soap:Fault>").into_bytes(),
            "SOAP fault",
        ),
        ("wrong encoding", b"<?xml version=\"1.0\" encoding=\"GBK\"?><a>\x81</a>".to_vec(), "GBK"),
        ("JSON instead", b"{\"id\": 1}".to_vec(), "well-formed"),
    ];
    for (what, input, expected) in cases {
        let errors = m.to_canonical(&input).expect_err(what);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert_eq!(errors[0].field, "(document)", "{what}");
        assert!(
            errors[0].message.contains(expected),
            "{what}: {}",
            errors[0].message
        );
    }
}

proptest! {
    #[test]
    fn no_panic_on_any_bytes_for_any_mapping(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for m in common::config().mappings.values() {
            let _ = m.to_canonical(&bytes);
        }
    }
}

/// Free text as people type it: CJK, Latin, digits, XML's special characters, a character
/// outside GBK; no leading or trailing whitespace.
fn free_text() -> impl Strategy<Value = String> {
    "[张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段漕钱汤尹黎易常武乔贺赖龚文A-Za-z0-9<>&\"'(),.;:、，。（）号路楼室 😀]{1,40}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("not empty after trimming", |s| !s.is_empty())
}

fn datetime() -> impl Strategy<Value = String> {
    (
        2000i32..2035,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+08:00")
        })
}

/// Keys whose values are free text or times, which every mapping must carry through unchanged.
const TEXT_KEYS: &[&str] = &[
    "name",
    "address",
    "opinion",
    "reason",
    "premises",
    "business_format",
];

fn leaves(value: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, format!("{pointer}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{pointer}/{i}"), out);
            }
        }
        other => out.push((pointer, other.clone())),
    }
}

/// Canonical → legacy → canonical gives back the same document, for the example documents of
/// every mapping with their free text and times replaced by generated ones.
#[test]
fn example_mappings_round_trip_generated_text_and_times() {
    let config = common::config();
    let mut checked = 0;
    for (name, m) in &config.mappings {
        let folder = config.dir.join("mappings/tests").join(name);
        for base in canonical_cases(&folder) {
            let mut all = Vec::new();
            leaves(&base, String::new(), &mut all);
            // `/node/name` is a code (受理, 审查, …), not free text.
            let texts: Vec<String> = all
                .iter()
                .filter(|(p, _)| !p.starts_with("/node/"))
                .filter(|(p, v)| {
                    v.is_string() && TEXT_KEYS.contains(&p.rsplit('/').next().unwrap_or(""))
                })
                .map(|(p, _)| p.clone())
                .collect();
            let times: Vec<String> = all
                .iter()
                .filter(|(p, v)| v.is_string() && p.ends_with("_at"))
                .map(|(p, _)| p.clone())
                .collect();
            let mut runner = TestRunner::new(ProptestConfig {
                cases: 32,
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            let strategy = (
                proptest::collection::vec(free_text(), texts.len()),
                proptest::collection::vec(datetime(), times.len()),
            );
            runner
                .run(&strategy, |(new_texts, new_times)| {
                    let mut doc = base.clone();
                    for (p, t) in texts.iter().zip(new_texts) {
                        *doc.pointer_mut(p).unwrap() = Value::String(t);
                    }
                    for (p, t) in times.iter().zip(new_times) {
                        *doc.pointer_mut(p).unwrap() = Value::String(t);
                    }
                    // Some generated values break a schema limit; those are not mappable input.
                    prop_assume!(config.schemas.validate(&m.canonical, &doc).is_empty());
                    let legacy = m
                        .to_legacy(&doc)
                        .map_err(|e| TestCaseError::fail(format!("{name}: to legacy: {e:?}")))?;
                    let back = m.to_canonical(&legacy).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{name}: back: {e:?}\n{}",
                            String::from_utf8_lossy(&legacy)
                        ))
                    })?;
                    prop_assert_eq!(back, doc, "{} did not round-trip", name);
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "round trips were checked for {checked} documents only"
    );
}

fn canonical_cases(folder: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".canonical.json"))
        // A one-way case (`read.`, `write.`) holds what the mapping cannot take both ways.
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.contains(".read.") && !name.contains(".write.")
        })
        .filter(|p| {
            // Cases that expect errors hold invalid documents on purpose.
            let errors = p
                .to_string_lossy()
                .replace(".canonical.json", ".errors.json");
            !Path::new(&errors).exists()
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

/// The code block that follows `after` in the README.
fn readme_block(readme: &str, after: &str) -> String {
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README has `{after}`"));
    let rest = &readme[start..];
    let open = rest.find("```").unwrap();
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let close = body_start + rest[body_start..].find("```").unwrap();
    rest[body_start..close]
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_worked_example_works_as_written() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let sample = readme_block(&readme, "大连市公安局's 户政 system takes applications");
    let mapping_toml = readme_block(&readme, "1. Write `mappings/hz-application.toml`");
    let adapter_toml = readme_block(&readme, "5. Add the adapter");

    let dir = common::config_copy();
    std::fs::write(
        dir.path().join("mappings/hz-application.toml"),
        &mapping_toml,
    )
    .unwrap();
    std::fs::write(dir.path().join("adapters/dl-ga-hz.toml"), &adapter_toml).unwrap();
    let config =
        Config::load(dir.path()).unwrap_or_else(|e| panic!("the worked example passes check: {e}"));
    let m = config.mappings.get("hz-application").unwrap();

    let (gbk, _, _) = encoding_rs::GBK.encode(&sample);
    let canonical = m.to_canonical(&gbk).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(canonical["applicant"]["name"], "李四");
    assert_eq!(canonical["applicant"]["kind"], "1");
    assert_eq!(canonical["submitted_at"], "2026-11-21T10:00:00+08:00");
    assert_eq!(canonical["materials"][0]["trust_level"], "A");
    assert_eq!(canonical["item"]["type"], "07");
    let legacy = m.to_legacy(&canonical).unwrap();
    assert!(std::str::from_utf8(&legacy).is_err(), "written in GBK");
    assert_eq!(m.to_canonical(&legacy).unwrap(), canonical);
    // 姓名 is read into both names, so both are written to it: an application whose contact is
    // not its applicant cannot go out under one of the two names.
    let mut other_contact = canonical.clone();
    other_contact["contact"]["name"] = "王五".into();
    let errors = m
        .to_legacy(&other_contact)
        .expect_err("two names for one element");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "/contact/name");
    assert!(
        errors[0].message.contains("/applicant/name")
            && errors[0].message.contains("different value"),
        "{}",
        errors[0]
    );

    let broken = sample
        .replace("210202199001011232", "210202199001011233")
        .replace("类型=\"01\"", "类型=\"07\"")
        .replace("<hz:姓名>李四</hz:姓名>", "")
        .replace("2026-11-21 10:00:00", "20261121");
    let (broken, _, _) = encoding_rs::GBK.encode(&broken);
    let errors = m
        .to_canonical(&broken)
        .expect_err("the broken sample fails");
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort();
    // The missing 姓名 is reported for both fields that read it.
    assert_eq!(
        fields,
        vec![
            "/applicant/id_number",
            "/applicant/kind",
            "/applicant/name",
            "/contact/name",
            "/submitted_at"
        ],
        "{errors:#?}"
    );
    for e in &errors {
        assert!(e.path.starts_with("hz:"), "{e}");
        assert_eq!(e.mapping, "mappings/hz-application.toml");
    }

    let mut wrong = mapping_toml.replace("/applicant/name", "/applicant/nickname");
    wrong = wrong.replace("table = \"kind\"", "table = \"kinds\"");
    std::fs::write(dir.path().join("mappings/hz-application.toml"), wrong).unwrap();
    let errors = Config::load(dir.path())
        .expect_err("check finds the mistakes")
        .0;
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("hz-application.toml") && m.contains("nickname")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("hz-application.toml") && m.contains("no table `kinds`")),
        "{messages:#?}"
    );
}

/// A system whose clock writes UTC: `timezone` on the mapping (or one field) says so, instead of
/// editing the system's clock. Its times read as the instants they are, and are written back
/// in its own offset.
#[test]
fn a_mapping_reads_and_writes_times_in_the_systems_timezone() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let sample = readme_block(&readme, "大连市公安局's 户政 system takes applications");
    let mapping_toml = readme_block(&readme, "1. Write `mappings/hz-application.toml`");
    let load = |toml: &str| {
        let dir = common::config_copy();
        std::fs::write(dir.path().join("mappings/hz-application.toml"), toml).unwrap();
        (Config::load(dir.path()), dir)
    };
    let (gbk, _, _) = encoding_rs::GBK.encode(&sample);

    let utc = format!("timezone = \"UTC\"\n{mapping_toml}");
    let (config, _dir) = load(&utc);
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    let m = config.mappings.get("hz-application").unwrap();
    let canonical = m.to_canonical(&gbk).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(canonical["submitted_at"], "2026-11-21T18:00:00+08:00");
    let legacy = m.to_legacy(&canonical).unwrap();
    let (text, _, _) = encoding_rs::GBK.decode(&legacy);
    assert!(text.contains("2026-11-21 10:00:00"), "{text}");

    // One field may differ from the mapping: here the field says China time again.
    let field = utc.replacen(
        "format = \"yyyy-MM-dd HH:mm:ss\"",
        "format = \"yyyy-MM-dd HH:mm:ss\"\ntimezone = \"+08:00\"",
        1,
    );
    assert_ne!(field, utc, "the sample has a time format to override");
    let (config, _dir) = load(&field);
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    let m = config.mappings.get("hz-application").unwrap();
    let canonical = m.to_canonical(&gbk).unwrap();
    assert_eq!(canonical["submitted_at"], "2026-11-21T10:00:00+08:00");

    // A timezone that is not one is reported at its line, as is one on a field without times.
    let wrong = format!("timezone = \"Asia/Shanghai\"\n{mapping_toml}").replacen(
        "constant = \"07\"",
        "constant = \"07\"\ntimezone = \"UTC\"",
        1,
    );
    let (loaded, _dir) = load(&wrong);
    let errors = loaded.expect_err("two mistakes").0;
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.line == Some(1) && e.message.contains("`Asia/Shanghai` is not a timezone")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("timezone") && m.contains("`datetime` only")),
        "{messages:#?}"
    );
}

/// The identity assertion where the system's own code looks for it: a field with `source =
/// "assertion"` writes the attempt's assertion at its legacy path, in the SOAP Header with
/// `header = true` (in the system's own namespace) or in a JSON body; nothing when there is
/// none. A source that is not one, or an assertion field with a canonical side, is an error.
#[test]
fn a_mapping_places_the_identity_assertion_where_the_system_reads_it() {
    let dir = common::config_copy();
    let append = |file: &str, field: &str| {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n[[field]]\n{field}\n")).unwrap();
    };
    append(
        "mappings/scjg-food-application.toml",
        "source = \"assertion\"\nlegacy = \"sp:Auth/sp:Token\"\nheader = true",
    );
    append(
        "mappings/rst-card-application.toml",
        "source = \"assertion\"\nlegacy = \"auth/token\"",
    );
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));

    let soap = &config.mappings["scjg-food-application"];
    let app = common::read_json("examples/messages/application.json");
    let written = soap
        .to_legacy_with_header(&app, Vec::new(), Some("h.p.s"))
        .unwrap();
    let (text, _, _) = encoding_rs::GB18030.decode(&written);
    let header = &text[text.find("Header>").expect("a SOAP Header")..text.find("Body>").unwrap()];
    assert!(
        header.contains("<sp:Auth>") && header.contains("<sp:Token>h.p.s</sp:Token>"),
        "{text}"
    );
    let without = soap.to_legacy_with_header(&app, Vec::new(), None).unwrap();
    let (text, _, _) = encoding_rs::GB18030.decode(&without);
    assert!(!text.contains("sp:Auth"), "{text}");
    // Reading the system's documents is as before: the assertion is not canonical data.
    assert_eq!(soap.to_canonical(&written).unwrap(), app);

    let json = &config.mappings["rst-card-application"];
    let card = common::read_json("mappings/tests/rst-card-application/card-online.canonical.json");
    let written = json
        .to_legacy_with_header(&card, Vec::new(), Some("h.p.s"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let found = body
        .pointer("/auth/token")
        .or_else(|| {
            body.as_object()
                .and_then(|o| o.values().find_map(|v| v.pointer("/auth/token")))
        })
        .cloned();
    assert_eq!(found, Some("h.p.s".into()), "{body}");

    // Mistakes are reported at compile time.
    append(
        "mappings/scjg-food-event.toml",
        "source = \"assertion\"\ncanonical = \"/opinion\"\nlegacy = \"sp:Token\"",
    );
    append(
        "mappings/rst-card-event.toml",
        "source = \"password\"\nlegacy = \"token\"",
    );
    let errors = Config::load(dir.path()).expect_err("two mistakes").0;
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("scjg-food-event") && m.contains("drop canonical")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("rst-card-event") && m.contains("unknown source `password`")),
        "{messages:#?}"
    );
}

/// `when`: a field applies only when other values say so, in both directions. Conditions on
/// canonical values (`/node/name`) and legacy ones (`sp:环节/@名称`, a value or a list) see the
/// fields without conditions, read or written first; a field whose condition fails is neither
/// read nor written, nor missing when required.
#[test]
fn a_field_applies_only_when_its_conditions_hold_both_ways() {
    let dir = common::config_copy();
    let path = dir.path().join("mappings/scjg-food-event.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{text}
[[field]]
canonical = \"/opinion\"
legacy = \"sp:办结意见\"
required = true
when = {{ \"/node/name\" = \"办结\" }}

[[field]]
canonical = \"/opinion\"
legacy = \"sp:结论\"
when = {{ \"sp:环节/@名称\" = [\"决定\", \"办结\"] }}
"
        ),
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = &config.mappings["scjg-food-event"];
    let case = |name: &str| {
        (
            common::read_text(&format!("mappings/tests/scjg-food-event/{name}.legacy.xml")),
            common::read_json(&format!(
                "mappings/tests/scjg-food-event/{name}.canonical.json"
            )),
        )
    };
    let decoded = |bytes: Vec<u8>| encoding_rs::GB18030.decode(&bytes).0.into_owned();

    // 受理: neither applies. Writing leaves both out; reading ignores a 结论 there.
    let (accept_xml, accept) = case("accept");
    let written = decoded(m.to_legacy(&accept).unwrap());
    assert!(
        !written.contains("办结意见") && !written.contains("结论"),
        "{written}"
    );
    let with_conclusion =
        accept_xml.replace("</sp:办件环节>", "<sp:结论>不算</sp:结论></sp:办件环节>");
    assert_eq!(m.to_canonical(with_conclusion.as_bytes()).unwrap(), accept);

    // 办结: the first applies when writing (the canonical step is 办结), and is required.
    let (complete_xml, mut complete) = case("complete");
    complete["opinion"] = "准予许可。".into();
    let written = decoded(m.to_legacy(&complete).unwrap());
    assert!(
        written.contains("<sp:办结意见>准予许可。</sp:办结意见>"),
        "{written}"
    );
    // Reading a 办结 without it: required, so missing is an error naming the field.
    let errors = m
        .to_canonical(complete_xml.as_bytes())
        .expect_err("办结意见 is required on 办结");
    assert!(
        errors.iter().any(|e| e.path.contains("办结意见")),
        "{errors:#?}"
    );
    // With it, and with a 结论 (the legacy condition holds on 办结): the conclusion is the opinion.
    let full = complete_xml.replace(
        "</sp:办件环节>",
        "<sp:办结意见>准予许可。</sp:办结意见><sp:结论>许可</sp:结论></sp:办件环节>",
    );
    let read = m.to_canonical(full.as_bytes()).unwrap();
    assert_eq!(read["opinion"], "许可");

    // A condition with no value to hold is an error at compile time.
    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[\"决定\", \"办结\"]", "[]");
    std::fs::write(&path, broken).unwrap();
    let errors = Config::load(dir.path()).expect_err("an empty list").0;
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("non-empty list of values")),
        "{errors:#?}"
    );
}

/// Many-to-one tables: `also` reads more legacy values as a code, which writes back the value
/// `values` declares; a mapping whose writes could not be told apart is an error; a pointer
/// mapped twice without `when` is reported at the second field's line.
#[test]
fn a_table_reads_several_legacy_values_as_one_code_and_writes_the_declared_one() {
    let dir = common::config_copy();
    let path = dir.path().join("mappings/scjg-food-event.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = "values = { \"0\" = \"不同意\", \"1\" = \"同意\", \"2\" = \"不受理\", \"3\" = \"不予受理\", \"4\" = \"受理\", \"5\" = \"补齐补正\", \"6\" = \"特别程序\", \"7\" = \"退回\" }";
    assert!(text.contains(line));
    let many = text.replace(
        line,
        &format!("{line}\nalso = {{ \"4\" = [\"已受理\", \"予以受理\"] }}"),
    );
    std::fs::write(&path, &many).unwrap();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = &config.mappings["scjg-food-event"];
    let xml = common::read_text("mappings/tests/scjg-food-event/accept.legacy.xml");
    let canonical = common::read_json("mappings/tests/scjg-food-event/accept.canonical.json");
    for said in ["受理", "已受理", "予以受理"] {
        let legacy = xml.replace("结果=\"受理\"", &format!("结果=\"{said}\""));
        assert_eq!(
            m.to_canonical(legacy.as_bytes()).unwrap(),
            canonical,
            "{said}"
        );
    }
    let written = encoding_rs::GB18030
        .decode(&m.to_legacy(&canonical).unwrap())
        .0
        .into_owned();
    assert!(
        written.contains("结果=\"受理\""),
        "the declared value is written: {written}"
    );

    // `also` for a code without a declared value, or a value read as two codes: errors.
    for (wrong, says) in [
        ("also = { \"9\" = [\"x\"] }", "no entry in `values`"),
        ("also = { \"4\" = [\"同意\"] }", "given for both"),
    ] {
        std::fs::write(&path, text.replace(line, &format!("{line}\n{wrong}"))).unwrap();
        let errors = Config::load(dir.path()).expect_err(wrong).0;
        assert!(
            errors.iter().any(|e| e.message.contains(says)),
            "{wrong}: {errors:#?}"
        );
    }

    // The same pointer twice, neither with `when`: at the second field's line.
    let twice = format!("{text}\n[[field]]\ncanonical = \"/opinion\"\nlegacy = \"sp:别的意见\"\n");
    std::fs::write(&path, &twice).unwrap();
    let errors = Config::load(dir.path()).expect_err("mapped twice").0;
    let error = errors
        .iter()
        .find(|e| e.message.contains("mapped twice"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    let expected_line = twice.lines().count() - 1;
    assert_eq!(error.line, Some(expected_line), "{error}");
}

/// `schemas/adapter.schema.json` (for editors) agrees with what `tongban check` accepts: every
/// adapter in the repository validates against it, and a broken one does not.
#[test]
fn the_adapter_schema_accepts_every_repository_adapter() {
    let config = common::config();
    let mut checked = 0;
    for entry in std::fs::read_dir(common::repo().join("adapters")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let json = serde_json::to_value(&table).unwrap();
        let violations = config.schemas.validate("adapter", &json);
        assert!(violations.is_empty(), "{}: {violations:?}", path.display());
        let mut broken = json.clone();
        broken["outbound"]["protocol"] = Value::String("ftp".into());
        broken["department"]["uscc"] = Value::String("11210100MB1529370J".into());
        let pointers: Vec<String> = config
            .schemas
            .validate("adapter", &broken)
            .into_iter()
            .map(|v| v.pointer)
            .collect();
        assert!(
            pointers.contains(&"/outbound/protocol".to_string()),
            "{pointers:?}"
        );
        assert!(
            pointers.contains(&"/department/uscc".to_string()),
            "{pointers:?}"
        );
        checked += 1;
    }
    assert!(checked >= 1);
}

/// A system that says one fact in two codes: a node code and a conclusion code together give
/// the node's result (a table keyed by both places), and a group of fields (the completion)
/// applies only on 办结, in both directions; an unknown pair is an error naming it, and a
/// table keyed by two places used with one path is an error at its line.
#[test]
fn a_table_keyed_by_two_places_and_a_group_under_one_condition_work_both_ways() {
    let dir = common::config_copy();
    let path = dir.path().join("mappings/zz-combined-event.toml");
    let mapping = r#"canonical = "case-event"
format = "xml"

[xml]
root = "BanJian"

[tables.step]
values = { "受理" = "01", "审查" = "02", "办结" = "09" }

[tables.step_type]
values = { "1" = "01", "2" = "02", "3" = "09" }

[tables.step_result]
values = { "4" = ["01", ""], "1" = ["09", "1"], "0" = ["09", "2"] }
also = { "1" = [["02", ""], ["09", "3"]] }

[tables.completion]
values = { "0" = "1", "1" = "2" }
also = { "0" = ["3"] }

[[field]]
canonical = "/system"
constant = "zz-combined"

[[field]]
canonical = "/event_id"
legacy = "LSH"
required = true

[[field]]
canonical = "/application_id"
legacy = "SQBH"
required = true

[[field]]
canonical = "/node/name"
legacy = "HuanJie/@dm"
table = "step"
required = true

[[field]]
canonical = "/node/type"
legacy = "HuanJie/@dm"
table = "step_type"
required = true

[[field]]
canonical = "/node/result"
legacy = ["HuanJie/@dm", "JieLun/@dm"]
table = "step_result"
required = true

[[field]]
when = { "/node/name" = "办结" }

[[field.group]]
canonical = "/completion/result"
legacy = "JieLun/@dm"
table = "completion"
required = true

[[field.group]]
canonical = "/completion/reason"
legacy = "JieLun/YuanYin"

[[field]]
canonical = "/handler/name"
legacy = "JBR"
required = true

[[field]]
canonical = "/occurred_at"
legacy = "SJ"
type = "datetime"
required = true
"#;
    std::fs::write(&path, mapping).unwrap();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = &config.mappings["zz-combined-event"];
    let legacy = |step: &str, conclusion: &str| {
        format!(
            "<BanJian><LSH>E1</LSH><SQBH>TB-1</SQBH><HuanJie dm=\"{step}\"/>{conclusion}<JBR>孙七</JBR><SJ>2026-11-30T16:00:00+08:00</SJ></BanJian>"
        )
    };

    // 受理: no conclusion at all, and no completion read.
    let accepted = m.to_canonical(legacy("01", "").as_bytes()).unwrap();
    assert_eq!(accepted["node"]["name"], "受理");
    assert_eq!(accepted["node"]["type"], "1");
    assert_eq!(accepted["node"]["result"], "4");
    assert!(accepted.get("completion").is_none(), "{accepted}");
    // Written back: the conclusion is left out, as the system does.
    let written = String::from_utf8(m.to_legacy(&accepted).unwrap()).unwrap();
    assert!(written.contains("<HuanJie dm=\"01\"/>"), "{written}");
    assert!(!written.contains("JieLun"), "{written}");

    // 办结 refused: both codes give the result, the group reads the completion.
    let done = legacy(
        "09",
        "<JieLun dm=\"2\"><YuanYin>材料不实</YuanYin></JieLun>",
    );
    let refused = m.to_canonical(done.as_bytes()).unwrap();
    assert_eq!(refused["node"]["name"], "办结");
    assert_eq!(refused["node"]["result"], "0");
    assert_eq!(refused["completion"]["result"], "1");
    assert_eq!(refused["completion"]["reason"], "材料不实");
    let written = String::from_utf8(m.to_legacy(&refused).unwrap()).unwrap();
    for part in [
        "<HuanJie dm=\"09\"/>",
        "<JieLun dm=\"2\">",
        "<YuanYin>材料不实</YuanYin>",
    ] {
        assert!(written.contains(part), "{part} in {written}");
    }
    // A pair the table lists under `also` reads as its code and writes the declared pair.
    let approved = m
        .to_canonical(legacy("09", "<JieLun dm=\"3\"/>").as_bytes())
        .unwrap();
    assert_eq!(approved["node"]["result"], "1");
    assert_eq!(approved["completion"]["result"], "0");
    let written = String::from_utf8(m.to_legacy(&approved).unwrap()).unwrap();
    assert!(written.contains("<JieLun dm=\"1\"/>"), "{written}");

    // A pair it does not list is an error naming the pair; so is a completion missing on 办结.
    let errors = m
        .to_canonical(legacy("09", "<JieLun dm=\"7\"/>").as_bytes())
        .expect_err("(09, 7) is no step result");
    assert!(
        errors.iter().any(|e| e.field == "/node/result"
            && e.path == "HuanJie/@dm + JieLun/@dm"
            && e.message.contains("(09, 7) is not in table")
            && e.message.contains("(01, \"\")")),
        "{errors:#?}"
    );
    // Canonical facts that disagree (a 受理 result on 审查) cannot be written as one code pair.
    let mut wrong = accepted.clone();
    wrong["node"]["name"] = "审查".into();
    wrong["node"]["type"] = "2".into();
    let errors = m.to_legacy(&wrong).expect_err("审查 with the 受理 result");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("writes the same legacy place")),
        "{errors:#?}"
    );

    // A table keyed by two places with one path, and lists of different lengths: errors at
    // their lines.
    let broken = mapping.replace(
        "legacy = [\"HuanJie/@dm\", \"JieLun/@dm\"]",
        "legacy = \"HuanJie/@dm\"",
    );
    std::fs::write(&path, broken).unwrap();
    let errors = Config::load(dir.path()).expect_err("one path").0;
    let error = errors
        .iter()
        .find(|e| e.to_string().contains("keyed by 2 legacy values"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert!(
        error.to_string().contains("zz-combined-event.toml:48:"),
        "{error}"
    );
    std::fs::write(
        &path,
        mapping.replace("[\"09\", \"2\"]", "[\"09\", \"2\", \"x\"]"),
    )
    .unwrap();
    let errors = Config::load(dir.path())
        .expect_err("lists of two lengths")
        .0;
    assert!(
        errors.iter().any(|e| e
            .to_string()
            .contains("(one per legacy place), so this must be one too")),
        "{errors:#?}"
    );
}

/// A case-event mapping with a completion group and an opinion under conditions between
/// fields without one.
const ORDERED_EVENT: &str = r#"canonical = "case-event"
format = "xml"

[xml]
root = "BanJian"

[tables.step]
values = { "受理" = "01", "办结" = "09" }

[tables.step_type]
values = { "1" = "01", "3" = "09" }

[tables.step_result]
values = { "4" = "01", "1" = "09" }

[tables.completion]
values = { "0" = "1" }

[[field]]
canonical = "/system"
constant = "zz-ordered"

[[field]]
canonical = "/event_id"
legacy = "LSH"
required = true

[[field]]
canonical = "/application_id"
legacy = "SQBH"
required = true

[[field]]
canonical = "/node/name"
legacy = "HuanJie/@dm"
table = "step"
required = true

[[field]]
canonical = "/node/type"
legacy = "HuanJie/@dm"
table = "step_type"
required = true

[[field]]
canonical = "/node/result"
legacy = "HuanJie/@dm"
table = "step_result"
required = true

[[field]]
when = { "/node/name" = "办结" }

[[field.group]]
canonical = "/completion/result"
legacy = "JieLun/@dm"
table = "completion"
required = true

[[field]]
canonical = "/opinion"
legacy = "YiJian"
when = { "HuanJie/@dm" = "09" }

[[field]]
canonical = "/handler/name"
legacy = "JBR"
required = true

[[field]]
canonical = "/occurred_at"
legacy = "SJ"
type = "datetime"
required = true
"#;

/// A field under a condition is written where the file lists it, not after the fields without
/// one: a system that checks its documents against a schema with a fixed element order (an
/// XSD `sequence`) gets the elements in that order, whatever applies.
#[test]
fn a_field_under_a_condition_is_written_where_the_file_lists_it() {
    let dir = common::config_copy();
    let path = dir.path().join("mappings/zz-ordered-event.toml");
    std::fs::write(&path, ORDERED_EVENT).unwrap();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = &config.mappings["zz-ordered-event"];
    let done = serde_json::json!({
        "event_id": "E9", "application_id": "TB-1", "system": "zz-ordered",
        "node": {"name": "办结", "type": "3", "result": "1"},
        "completion": {"result": "0"},
        "opinion": "准予许可。",
        "handler": {"name": "孙七"},
        "occurred_at": "2026-11-30T16:00:00+08:00"
    });
    let written = String::from_utf8(m.to_legacy(&done).unwrap()).unwrap();
    let order: Vec<usize> = ["<HuanJie", "<JieLun", "<YiJian", "<JBR", "<SJ"]
        .iter()
        .map(|name| {
            written
                .find(name)
                .unwrap_or_else(|| panic!("{name} in {written}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "the elements in the file's order: {written}"
    );
    assert_eq!(m.to_canonical(written.as_bytes()).unwrap(), done);

    // Where no condition holds, the rest keeps its order and nothing is left behind.
    let mut accepted = done.clone();
    accepted["node"] = serde_json::json!({"name": "受理", "type": "1", "result": "4"});
    let object = accepted.as_object_mut().unwrap();
    object.remove("completion");
    object.remove("opinion");
    let written = String::from_utf8(m.to_legacy(&accepted).unwrap()).unwrap();
    assert!(
        !written.contains("JieLun") && !written.contains("YiJian"),
        "{written}"
    );
    assert!(written.find("<JBR").unwrap() < written.find("<SJ").unwrap());
    assert_eq!(m.to_canonical(written.as_bytes()).unwrap(), accepted);
}

/// A field that fails is reported once: not again as the schema's finding that an object above
/// it is missing (the completion a 办结 needs, when its code is not in the table).
#[test]
fn a_field_that_fails_is_not_reported_again_as_a_missing_object_above_it() {
    let dir = common::config_copy();
    std::fs::write(
        dir.path().join("mappings/zz-ordered-event.toml"),
        ORDERED_EVENT,
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let m = &config.mappings["zz-ordered-event"];
    let errors = m
        .to_canonical(
            "<BanJian><LSH>E9</LSH><SQBH>TB-1</SQBH><HuanJie dm=\"09\"/><JieLun dm=\"7\"/><JBR>孙七</JBR><SJ>2026-11-30T16:00:00+08:00</SJ></BanJian>"
                .as_bytes(),
        )
        .expect_err("no completion 7");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "/completion/result");
    assert!(errors[0].message.contains("not in table"), "{errors:#?}");

    // The same for a node code not in the table: the node is not reported missing too.
    let errors = m
        .to_canonical(
            "<BanJian><LSH>E9</LSH><SQBH>TB-1</SQBH><HuanJie dm=\"08\"/><JBR>孙七</JBR><SJ>2026-11-30T16:00:00+08:00</SJ></BanJian>"
                .as_bytes(),
        )
        .expect_err("no node 08");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["/node/name", "/node/type", "/node/result"],
        "{errors:#?}"
    );
}
