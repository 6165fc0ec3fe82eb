//! Encodings that never corrupt: every CJK unified ideograph (the basic block, Extensions A and
//! B) written into XML in GBK, GB18030 and UTF-8, as text and as CDATA, reads back as itself,
//! and GBK output holds only codes GBK decoders define (CP936, as Python's and glibc's `gbk`
//! read it: `tests/it/fixtures/cp936-defined.txt`). What an encoding lacks is a character
//! reference outside any CDATA section.

use crate::common;
use encoding_rs::Encoding;
use serde_json::Value;
use std::collections::HashSet;
use tongban::mapping::xml::{self, XmlDocument};
use tongban::mapping::{Node, XmlFormat};

fn format(encoding: &'static Encoding) -> XmlFormat {
    XmlFormat {
        root: "Doc".into(),
        namespaces: Vec::new(),
        default_namespace: None,
        soap: None,
        encoding,
        declaration: true,
    }
}

fn written(text: &str, encoding: &'static Encoding, cdata: bool) -> Vec<u8> {
    let mut root = Node::named("Doc");
    let mut field = Node::named("Text");
    field.value = Some(Value::String(text.to_owned()));
    field.cdata = cdata;
    root.children.push(field);
    xml::write(&XmlDocument { root, header: None }, &format(encoding))
}

fn read_back(bytes: &[u8], encoding: &'static Encoding) -> String {
    let doc = xml::parse(bytes, &format(encoding), usize::MAX).expect("well-formed");
    match &doc.root.children[0].value {
        Some(Value::String(s)) => s.clone(),
        other => panic!("no text: {other:?}"),
    }
}

/// The two-byte codes CP936 defines, from the fixture.
fn cp936() -> HashSet<u16> {
    let text = common::read_text("tests/it/fixtures/cp936-defined.txt");
    let mut codes = HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let lead = u8::from_str_radix(parts.next().unwrap(), 16).unwrap();
        for range in parts {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (a, b) = (
                u8::from_str_radix(a, 16).unwrap(),
                u8::from_str_radix(b, 16).unwrap(),
            );
            codes.extend((a..=b).map(|t| u16::from_be_bytes([lead, t])));
        }
    }
    codes
}

/// Every two-byte code in `bytes` (GBK output: ASCII or lead 0x81–0xFE and a trail).
fn two_byte_codes(bytes: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            i += 1;
        } else {
            codes.push(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
    }
    codes
}

#[test]
fn every_cjk_ideograph_survives_every_encoding_as_text_and_as_cdata() {
    let defined = cp936();
    let blocks = [0x4E00..=0x9FFF, 0x3400..=0x4DBF, 0x20000..=0x2A6DF];
    let ideographs: Vec<char> = blocks
        .into_iter()
        .flatten()
        .filter_map(char::from_u32)
        .collect();
    for encoding in [encoding_rs::GBK, encoding_rs::GB18030, encoding_rs::UTF_8] {
        for cdata in [false, true] {
            for chunk in ideographs.chunks(2048) {
                // A `]]>` among them, which a CDATA section cannot hold as it is.
                let text: String = chunk.iter().collect::<String>() + "]]>";
                let bytes = written(&text, encoding, cdata);
                assert_eq!(
                    read_back(&bytes, encoding),
                    text,
                    "{} cdata={cdata}, from U+{:04X}",
                    encoding.name(),
                    u32::from(chunk[0])
                );
                if encoding == encoding_rs::GBK {
                    let foreign: Vec<String> = two_byte_codes(&bytes)
                        .into_iter()
                        .filter(|c| !defined.contains(c))
                        .map(|c| format!("{c:04X}"))
                        .collect();
                    assert!(
                        foreign.is_empty(),
                        "GBK output holds codes GBK decoders refuse: {foreign:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn what_an_encoding_lacks_is_a_reference_outside_cdata() {
    // 䶮 (U+4DAE) is a two-byte code in GB18030 that GBK decoders refuse; 𠀋 (U+2000B) is in
    // GB18030 only; 张 is in both.
    let gbk_text = written("张䶮", encoding_rs::GBK, false);
    let (decoded, _, _) = encoding_rs::GBK.decode(&gbk_text);
    assert!(decoded.contains("<Text>张&#19886;</Text>"), "{decoded}");
    let gbk_cdata = written("张𠀋李", encoding_rs::GBK, true);
    let (decoded, _, _) = encoding_rs::GBK.decode(&gbk_cdata);
    assert!(
        decoded.contains("<Text><![CDATA[张]]>&#131083;<![CDATA[李]]></Text>"),
        "{decoded}"
    );
    // GB18030 holds both as they are.
    let gb18030 = written("张䶮𠀋", encoding_rs::GB18030, true);
    let (decoded, _, _) = encoding_rs::GB18030.decode(&gb18030);
    assert!(
        decoded.contains("<Text><![CDATA[张䶮𠀋]]></Text>"),
        "{decoded}"
    );
    // The euro sign is GBK's 0x80 only to some decoders: written as a reference.
    let euro = written("€", encoding_rs::GBK, false);
    assert!(!euro.contains(&0x80), "{euro:?}");
    assert_eq!(read_back(&euro, encoding_rs::GBK), "€");
}
