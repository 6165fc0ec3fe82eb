//! Legacy XML: hostile-input parsing into a [`Node`] tree (no DTDs, no entities beyond XML's own,
//! bounded size and depth, GBK/GB18030 decoded), and printing a tree back in the declared
//! encoding, optionally inside a SOAP 1.1 or 1.2 envelope.

use super::tree::Node;
use encoding_rs::Encoding;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use serde_json::Value;
use std::collections::HashMap;

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The prefix the hub gives the SOAP envelope namespace, in paths and in what it writes.
pub const SOAP_PREFIX: &str = "soap";

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }
}

/// How a mapping's XML looks.
#[derive(Debug, Clone)]
pub struct XmlFormat {
    /// The payload element (the document element, or the SOAP Body's child).
    pub root: String,
    /// Prefix → namespace URI, as the mapping names them.
    pub namespaces: Vec<(String, String)>,
    pub default_namespace: Option<String>,
    pub soap: Option<SoapVersion>,
    /// The encoding documents are written in.
    pub encoding: &'static Encoding,
    /// Whether to write an `<?xml …?>` declaration.
    pub declaration: bool,
}

/// A parsed legacy document: the payload element and, in SOAP, the Header element.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlDocument {
    pub root: Node,
    pub header: Option<Node>,
}

/// A SOAP fault found where a payload was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    pub code: String,
    pub reason: String,
}

/// Why a legacy XML document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Encoding(String),
    #[error("not well-formed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("document type declarations (DTDs) are not accepted")]
    Dtd,
    #[error("entity `&{0};` is not one of XML's predefined entities")]
    Entity(String),
    #[error("elements nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("namespace prefix `{0}` is not declared")]
    UnknownPrefix(String),
    #[error("the document element is `{found}`, expected `{expected}`")]
    Root { found: String, expected: String },
    #[error("SOAP fault {}: {}", .0.code, .0.reason)]
    Fault(SoapFault),
    #[error("no document element")]
    Empty,
}

/// Reads the declared encoding and turns the bytes into UTF-8 text.
pub fn decode(bytes: &[u8]) -> Result<String, XmlError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return encoding
            .decode_without_bom_handling_and_without_replacement(&bytes[bom_len..])
            .map(|c| c.into_owned())
            .ok_or_else(|| XmlError::Encoding(format!("not valid {}", encoding.name())));
    }
    let encoding = match declared_encoding(bytes) {
        None => encoding_rs::UTF_8,
        Some(label) => Encoding::for_label(label.as_bytes())
            .ok_or_else(|| XmlError::Encoding(format!("unknown encoding `{label}`")))?,
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or_else(|| {
            XmlError::Encoding(format!(
                "the bytes are not valid {} (as the document declares)",
                encoding.name()
            ))
        })
}

/// What says which encoding a document is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFrom {
    ByteOrderMark,
    Declaration,
    /// Neither: XML's default, UTF-8.
    Default,
}

/// The encoding [`decode`] reads `bytes` in, and what says so; `None` when the declaration
/// names an encoding nobody knows (which [`decode`] reports).
pub fn encoding_of(bytes: &[u8]) -> Option<(&'static Encoding, EncodingFrom)> {
    if let Some((encoding, _)) = Encoding::for_bom(bytes) {
        return Some((encoding, EncodingFrom::ByteOrderMark));
    }
    match declared_encoding(bytes) {
        None => Some((encoding_rs::UTF_8, EncodingFrom::Default)),
        Some(label) => {
            Encoding::for_label(label.as_bytes()).map(|e| (e, EncodingFrom::Declaration))
        }
    }
}

/// The `encoding` of an `<?xml …?>` declaration, read from ASCII-compatible bytes.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..bytes.len().min(200))?;
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// Parses a legacy document, hostile or not: never panics, and reports the first problem.
pub fn parse(bytes: &[u8], format: &XmlFormat, max_bytes: usize) -> Result<XmlDocument, XmlError> {
    if bytes.len() > max_bytes {
        return Err(XmlError::TooLarge { limit: max_bytes });
    }
    let text = decode(bytes)?;
    let names = Names::new(format);
    let top = parse_tree(&text, &names)?;
    match format.soap {
        None => {
            if top.name != format.root {
                return Err(XmlError::Root {
                    found: top.name,
                    expected: format.root.clone(),
                });
            }
            Ok(XmlDocument {
                root: top,
                header: None,
            })
        }
        Some(_) => unwrap_envelope(top, &format.root),
    }
}

fn unwrap_envelope(envelope: Node, root: &str) -> Result<XmlDocument, XmlError> {
    let expected = format!("{SOAP_PREFIX}:Envelope");
    if envelope.name != expected {
        return Err(XmlError::Root {
            found: envelope.name,
            expected,
        });
    }
    let mut header = None;
    let mut body = None;
    for child in envelope.children {
        if child.name == format!("{SOAP_PREFIX}:Header") {
            header = Some(child);
        } else if child.name == format!("{SOAP_PREFIX}:Body") {
            body = Some(child);
        }
    }
    let body = body.ok_or_else(|| XmlError::Root {
        found: "an Envelope without a Body".into(),
        expected: format!("{SOAP_PREFIX}:Body"),
    })?;
    let payload = body.children.into_iter().next().ok_or(XmlError::Empty)?;
    if payload.name == format!("{SOAP_PREFIX}:Fault") {
        return Err(XmlError::Fault(fault_of(&payload)));
    }
    if payload.name != root {
        return Err(XmlError::Root {
            found: payload.name,
            expected: root.to_string(),
        });
    }
    Ok(XmlDocument {
        root: payload,
        header,
    })
}

/// The code and reason of a SOAP 1.1 (`faultcode`, `faultstring`) or 1.2 (`Code/Value`,
/// `Reason/Text`) fault.
pub fn fault_of(fault: &Node) -> SoapFault {
    let find = |path: &[&str]| -> Option<String> {
        let mut node = fault;
        for step in path {
            node = node
                .children
                .iter()
                .find(|c| c.name == *step || c.name.rsplit(':').next() == Some(step))?;
        }
        node.text().map(|t| t.trim().to_string())
    };
    SoapFault {
        code: find(&["faultcode"])
            .or_else(|| find(&["Code", "Value"]))
            .unwrap_or_else(|| "unknown".into()),
        reason: find(&["faultstring"])
            .or_else(|| find(&["Reason", "Text"]))
            .unwrap_or_default(),
    }
}

/// How namespace URIs become the names paths use.
struct Names {
    by_uri: HashMap<String, String>,
    default_namespace: Option<String>,
}

impl Names {
    fn new(format: &XmlFormat) -> Names {
        let mut by_uri: HashMap<String, String> = format
            .namespaces
            .iter()
            .map(|(p, u)| (u.clone(), p.clone()))
            .collect();
        if let Some(soap) = format.soap {
            by_uri.insert(soap.namespace().to_string(), SOAP_PREFIX.to_string());
        }
        Names {
            by_uri,
            default_namespace: format.default_namespace.clone(),
        }
    }

    fn name(
        &self,
        resolved: ResolveResult<'_>,
        local: &[u8],
        attribute: bool,
    ) -> Result<String, XmlError> {
        let local = String::from_utf8_lossy(local).into_owned();
        match resolved {
            ResolveResult::Bound(ns) => {
                let uri = String::from_utf8_lossy(ns.as_ref()).into_owned();
                if !attribute && self.default_namespace.as_deref() == Some(uri.as_str()) {
                    Ok(local)
                } else if let Some(prefix) = self.by_uri.get(&uri) {
                    Ok(format!("{prefix}:{local}"))
                } else {
                    Ok(format!("{{{uri}}}{local}"))
                }
            }
            ResolveResult::Unbound if !attribute && self.default_namespace.is_some() => {
                Ok(format!("{{}}{local}"))
            }
            ResolveResult::Unbound => Ok(local),
            ResolveResult::Unknown(prefix) => Err(XmlError::UnknownPrefix(
                String::from_utf8_lossy(&prefix).into_owned(),
            )),
        }
    }
}

fn parse_tree(text: &str, names: &Names) -> Result<Node, XmlError> {
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = true;
    let malformed = |reader: &NsReader<&[u8]>, e: quick_xml::Error| XmlError::Malformed {
        position: reader.error_position(),
        message: e.to_string(),
    };
    // Text of each open element, kept apart from the element until it closes.
    let mut stack: Vec<(Node, String)> = Vec::new();
    let mut top: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let (element_name, event) = match reader.read_resolved_event() {
            // The resolved namespace borrows the reader: turn it into a name right away.
            Ok((resolved, event)) => {
                let name = match &event {
                    Event::Start(start) => {
                        Some(names.name(resolved, start.local_name().as_ref(), false))
                    }
                    _ => None,
                };
                (name, event)
            }
            Err(e) => return Err(malformed(&reader, e)),
        };
        match event {
            Event::Start(start) => {
                if top.is_some() {
                    return Err(XmlError::Malformed {
                        position: reader.buffer_position(),
                        message: "content after the document element".into(),
                    });
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = element_name.unwrap_or(Err(XmlError::Empty))?;
                let mut node = Node::named(name);
                node.attrs = attributes(&reader, &start, names)?;
                stack.push((node, String::new()));
            }
            Event::End(_) => {
                let (mut node, text) = stack.pop().ok_or(XmlError::Empty)?;
                if !(text.is_empty() || (!node.children.is_empty() && text.trim().is_empty())) {
                    node.value = Some(Value::String(text));
                }
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(node),
                    None => top = Some(node),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| malformed(&reader, e.into()))?;
                match stack.last_mut() {
                    Some((_, text)) => text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => {
                        return Err(XmlError::Malformed {
                            position: reader.buffer_position(),
                            message: "text outside the document element".into(),
                        });
                    }
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| malformed(&reader, e.into()))?;
                let Some((node, text)) = stack.last_mut() else {
                    return Err(XmlError::Malformed {
                        position: reader.buffer_position(),
                        message: "CDATA outside the document element".into(),
                    });
                };
                node.cdata = true;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| malformed(&reader, e))?
                        .filter(|c| *c != '\0')
                        .ok_or_else(|| XmlError::Entity(String::from_utf8_lossy(&r).into_owned()))?
                } else {
                    let name = r.decode().map_err(|e| malformed(&reader, e.into()))?;
                    match name.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(XmlError::Entity(other.to_string())),
                    }
                };
                match stack.last_mut() {
                    Some((_, text)) => text.push(c),
                    None => {
                        return Err(XmlError::Malformed {
                            position: reader.buffer_position(),
                            message: "reference outside the document element".into(),
                        });
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            // expand_empty_elements turns these into Start and End; refuse rather than trust it.
            Event::Empty(_) => {
                return Err(XmlError::Malformed {
                    position: reader.buffer_position(),
                    message: "unexpected empty-element event".into(),
                });
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed {
            position: reader.buffer_position(),
            message: "the document ends inside an element".into(),
        });
    }
    top.ok_or(XmlError::Empty)
}

fn attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    names: &Names,
) -> Result<Vec<(String, String)>, XmlError> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| XmlError::Malformed {
            position: reader.buffer_position(),
            message: e.to_string(),
        })?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolve_attribute(key);
        let name = names.name(resolved, local.as_ref(), true)?;
        let value = attr.unescape_value().map_err(|e| match e {
            quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(
                _,
                name,
            )) => XmlError::Entity(name),
            other => XmlError::Malformed {
                position: reader.buffer_position(),
                message: other.to_string(),
            },
        })?;
        attrs.push((name, value.into_owned()));
    }
    Ok(attrs)
}

/// Prints a document in the format's encoding, inside a SOAP envelope when the format says so.
pub fn write(doc: &XmlDocument, format: &XmlFormat) -> Vec<u8> {
    let mut out = String::new();
    if format.declaration {
        out.push_str(&format!(
            "<?xml version=\"1.0\" encoding=\"{}\"?>\n",
            format.encoding.name().to_ascii_uppercase()
        ));
    }
    let mut declarations = String::new();
    if let Some(soap) = format.soap {
        declarations.push_str(&format!(" xmlns:{SOAP_PREFIX}=\"{}\"", soap.namespace()));
    }
    for (prefix, uri) in &format.namespaces {
        declarations.push_str(&format!(" xmlns:{prefix}=\"{}\"", escape(uri)));
    }
    if let Some(uri) = &format.default_namespace {
        declarations.push_str(&format!(" xmlns=\"{}\"", escape(uri)));
    }
    match format.soap {
        None => write_node(&mut out, &doc.root, 0, &declarations),
        Some(_) => {
            out.push_str(&format!("<{SOAP_PREFIX}:Envelope{declarations}>\n"));
            if let Some(header) = doc.header.as_ref().filter(|h| !h.children.is_empty()) {
                out.push_str(&format!("  <{SOAP_PREFIX}:Header>\n"));
                for child in &header.children {
                    write_node(&mut out, child, 2, "");
                }
                out.push_str(&format!("  </{SOAP_PREFIX}:Header>\n"));
            }
            out.push_str(&format!("  <{SOAP_PREFIX}:Body>\n"));
            write_node(&mut out, &doc.root, 2, "");
            out.push_str(&format!(
                "  </{SOAP_PREFIX}:Body>\n</{SOAP_PREFIX}:Envelope>\n"
            ));
        }
    }
    if format.encoding == encoding_rs::UTF_8 {
        out.into_bytes()
    } else {
        let (bytes, _, _) = format.encoding.encode(&out);
        bytes.into_owned()
    }
}

fn write_node(out: &mut String, node: &Node, depth: usize, declarations: &str) {
    let indent = "  ".repeat(depth);
    out.push_str(&indent);
    out.push('<');
    out.push_str(&node.name);
    out.push_str(declarations);
    for (name, value) in &node.attrs {
        out.push_str(&format!(" {name}=\"{}\"", escape(value)));
    }
    let text = node.text();
    if node.children.is_empty() && text.is_none() {
        out.push_str("/>\n");
        return;
    }
    out.push('>');
    if let Some(text) = &text {
        if node.cdata {
            out.push_str("<![CDATA[");
            out.push_str(&text.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        } else {
            out.push_str(&escape(text));
        }
    }
    if !node.children.is_empty() {
        out.push('\n');
        for child in &node.children {
            write_node(out, child, depth + 1, "");
        }
        out.push_str(&indent);
    }
    out.push_str(&format!("</{}>\n", node.name));
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(soap: Option<SoapVersion>) -> XmlFormat {
        XmlFormat {
            root: "ns:申请".into(),
            namespaces: vec![("ns".into(), "urn:example:food".into())],
            default_namespace: None,
            soap,
            encoding: encoding_rs::GB18030,
            declaration: true,
        }
    }

    #[test]
    fn reads_namespaces_by_uri_not_by_the_documents_prefix() {
        let xml = r#"<x:申请 xmlns:x="urn:example:food" x:版本="2" 类型="A"><x:名称> 食品 &amp; 药品 </x:名称><x:备注><![CDATA[<b>粗体</b>]]></x:备注></x:申请>"#;
        let doc = parse(xml.as_bytes(), &format(None), 1 << 20).unwrap();
        assert_eq!(doc.root.name, "ns:申请");
        assert_eq!(doc.root.attr("ns:版本"), Some("2"));
        assert_eq!(doc.root.attr("类型"), Some("A"));
        assert_eq!(doc.root.children[0].text().unwrap(), " 食品 & 药品 ");
        assert_eq!(doc.root.children[1].text().unwrap(), "<b>粗体</b>");
        assert!(doc.root.children[1].cdata);
    }

    #[test]
    fn gb18030_round_trips_through_soap() {
        let mut root = Node::named("ns:申请");
        let mut name = Node::named("ns:名称");
        name.value = Some(Value::String("沈阳市和平区某某餐饮店".into()));
        root.children.push(name);
        let mut header = Node::named("soap:Header");
        let mut key = Node::named("ns:幂等键");
        key.value = Some(Value::String("A-1".into()));
        header.children.push(key);
        let doc = XmlDocument {
            root,
            header: Some(header),
        };
        let f = format(Some(SoapVersion::V11));
        let bytes = write(&doc, &f);
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "written as GB18030, not UTF-8"
        );
        let back = parse(&bytes, &f, 1 << 20).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn soap_faults_are_reported() {
        let xml = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>证件号码错误</faultstring></s:Fault></s:Body></s:Envelope>"#
        );
        let err = parse(xml.as_bytes(), &format(Some(SoapVersion::V11)), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            XmlError::Fault(SoapFault {
                code: "s:Client".into(),
                reason: "证件号码错误".into()
            })
        );
    }

    #[test]
    fn hostile_documents_are_refused() {
        let f = format(None);
        type Expect = fn(&XmlError) -> bool;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (
                r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><ns:申请 xmlns:ns="urn:example:food">&lol2;</ns:申请>"#.as_bytes().to_vec(),
                |e| matches!(e, XmlError::Dtd),
            ),
            (
                r#"<ns:申请 xmlns:ns="urn:example:food">&xxe;</ns:申请>"#.as_bytes().to_vec(),
                |e| matches!(e, XmlError::Entity(n) if n == "xxe"),
            ),
            (
                r#"<ns:申请 xmlns:ns="urn:example:food" a="&xxe;"/>"#.as_bytes().to_vec(),
                |e| matches!(e, XmlError::Entity(_)),
            ),
            (
                format!("<ns:申请 xmlns:ns=\"urn:example:food\">{}{}</ns:申请>", "<a>".repeat(100), "</a>".repeat(100)).into_bytes(),
                |e| matches!(e, XmlError::TooDeep),
            ),
            (vec![b'<'; 2 << 20], |e| matches!(e, XmlError::TooLarge { .. })),
            (b"<ns:a xmlns:ns=\"urn:example:food\"><b></ns:a>".to_vec(), |e| matches!(e, XmlError::Malformed { .. })),
            (b"<q:a/>".to_vec(), |e| matches!(e, XmlError::UnknownPrefix(p) if p == "q")),
            (b"<?xml version=\"1.0\" encoding=\"GBK\"?><a>\xff\xff</a>".to_vec(), |e| matches!(e, XmlError::Encoding(_))),
            (b"<?xml version=\"1.0\" encoding=\"EBCDIC-X\"?><a/>".to_vec(), |e| matches!(e, XmlError::Encoding(_))),
            (b"".to_vec(), |e| matches!(e, XmlError::Empty)),
            (b"<a/><b/>".to_vec(), |e| matches!(e, XmlError::Malformed { .. })),
            (b"<other/>".to_vec(), |e| matches!(e, XmlError::Root { .. })),
            (b"<a>&#0;</a>".to_vec(), |e| matches!(e, XmlError::Entity(_) | XmlError::Malformed { .. })),
        ];
        for (input, expected) in cases {
            let err = parse(&input, &f, 1 << 20).expect_err("hostile input is refused");
            assert!(
                expected(&err),
                "{err:?} for {}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_panic_on_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse(&bytes, &format(None), 1 << 20);
            let _ = parse(&bytes, &format(Some(SoapVersion::V12)), 1 << 20);
        }

        #[test]
        fn no_panic_on_xmlish_text(text in "[<>/a-c:=\"'&;#x0-9 !\\[\\]CDATA?-]{0,200}") {
            let _ = parse(text.as_bytes(), &format(None), 1 << 20);
        }
    }
}
