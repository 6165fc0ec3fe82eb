//! Legacy XML: hostile-input parsing into a [`Node`] tree (no DTDs, no entities beyond XML's own,
//! bounded size and depth, GBK/GB18030 decoded), and printing a tree back in the declared
//! encoding, optionally inside a SOAP 1.1 or 1.2 envelope.

use super::tree::Node;
use encoding_rs::Encoding;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU16, Ordering};

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
    /// A character XML 1.0 does not allow anywhere in a document (most control characters).
    #[error(
        "not well-formed XML at byte {position}: U+{code:04X} is not a character XML 1.0 allows"
    )]
    ForbiddenChar { position: usize, code: u32 },
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production): tab, newline, return and
/// everything from U+0020 except the surrogates and U+FFFE, U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character of `text` XML 1.0 does not allow, with its byte offset.
pub fn forbidden_char(text: &str) -> Option<(usize, char)> {
    // Nearly every text is all allowed characters: look at bytes first, chars only when a byte
    // below 0x20 or a possible U+FFFE/U+FFFF (0xEF 0xBF 0xBE/0xBF) is there.
    if !text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF)
    {
        return None;
    }
    text.char_indices().find(|&(_, c)| !is_xml_char(c))
}

/// Reads the declared encoding and turns the bytes into UTF-8 text (borrowed when they are
/// UTF-8 already).
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, XmlError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return encoding
            .decode_without_bom_handling_and_without_replacement(&bytes[bom_len..])
            .ok_or_else(|| XmlError::Encoding(format!("not valid {}", encoding.name())));
    }
    let encoding = match declared_encoding(bytes) {
        None => encoding_rs::UTF_8,
        Some(label) => Encoding::for_label(label.as_bytes())
            .ok_or_else(|| XmlError::Encoding(format!("unknown encoding `{label}`")))?,
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
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
    if let Some((position, c)) = forbidden_char(&text) {
        return Err(XmlError::ForbiddenChar {
            position,
            code: u32::from(c),
        });
    }
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

/// Whether `name` is the SOAP envelope's element `local` (`soap:Body`).
fn is_soap(name: &str, local: &str) -> bool {
    name.strip_prefix(SOAP_PREFIX)
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(local)
}

fn unwrap_envelope(envelope: Node, root: &str) -> Result<XmlDocument, XmlError> {
    if !is_soap(&envelope.name, "Envelope") {
        return Err(XmlError::Root {
            found: envelope.name,
            expected: format!("{SOAP_PREFIX}:Envelope"),
        });
    }
    let mut header = None;
    let mut body = None;
    for child in envelope.children {
        if is_soap(&child.name, "Header") {
            header = Some(child);
        } else if is_soap(&child.name, "Body") {
            body = Some(child);
        }
    }
    let body = body.ok_or_else(|| XmlError::Root {
        found: "an Envelope without a Body".into(),
        expected: format!("{SOAP_PREFIX}:Body"),
    })?;
    let payload = body.children.into_iter().next().ok_or(XmlError::Empty)?;
    if is_soap(&payload.name, "Fault") {
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
struct Names<'f> {
    /// Namespace URI and prefix; when a URI is given twice, the later prefix counts.
    by_uri: Vec<(&'f str, &'f str)>,
    default_namespace: Option<&'f str>,
}

impl<'f> Names<'f> {
    fn new(format: &'f XmlFormat) -> Names<'f> {
        let mut by_uri: Vec<(&str, &str)> = format
            .namespaces
            .iter()
            .map(|(p, u)| (u.as_str(), p.as_str()))
            .collect();
        if let Some(soap) = format.soap {
            by_uri.push((soap.namespace(), SOAP_PREFIX));
        }
        Names {
            by_uri,
            default_namespace: format.default_namespace.as_deref(),
        }
    }

    fn prefix(&self, uri: &[u8]) -> Option<&'f str> {
        self.by_uri
            .iter()
            .rev()
            .find(|(u, _)| u.as_bytes() == uri)
            .map(|(_, p)| *p)
    }

    fn name(
        &self,
        resolved: ResolveResult<'_>,
        local: &[u8],
        attribute: bool,
    ) -> Result<String, XmlError> {
        // Names come from UTF-8 text, so the lossy conversion never copies.
        let local = String::from_utf8_lossy(local);
        let joined = |parts: &[&str]| {
            let mut name = String::with_capacity(parts.iter().map(|p| p.len()).sum());
            parts.iter().for_each(|p| name.push_str(p));
            name
        };
        match resolved {
            ResolveResult::Bound(ns) => {
                let uri = ns.as_ref();
                if !attribute && self.default_namespace.map(str::as_bytes) == Some(uri) {
                    Ok(local.into_owned())
                } else if let Some(prefix) = self.prefix(uri) {
                    Ok(joined(&[prefix, ":", &local]))
                } else {
                    Ok(joined(&["{", &String::from_utf8_lossy(uri), "}", &local]))
                }
            }
            ResolveResult::Unbound if !attribute && self.default_namespace.is_some() => {
                Ok(joined(&["{}", &local]))
            }
            ResolveResult::Unbound => Ok(local.into_owned()),
            ResolveResult::Unknown(prefix) => Err(XmlError::UnknownPrefix(
                String::from_utf8_lossy(&prefix).into_owned(),
            )),
        }
    }
}

fn parse_tree(text: &str, names: &Names<'_>) -> Result<Node, XmlError> {
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
    // Buffers of text that was dropped (the indentation between elements), for reuse.
    let mut spare: Vec<String> = Vec::new();
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
                stack.push((node, spare.pop().unwrap_or_default()));
            }
            Event::End(_) => {
                let (mut node, mut text) = stack.pop().ok_or(XmlError::Empty)?;
                if !(text.is_empty() || (!node.children.is_empty() && text.trim().is_empty())) {
                    node.value = Some(Value::String(text));
                } else if text.capacity() > 0 {
                    text.clear();
                    spare.push(text);
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
                        .filter(|c| is_xml_char(*c))
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
    names: &Names<'_>,
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
///
/// The text is built in one buffer sized for a typical message, then encoded in one pass
/// ([`encode`]); nothing is formatted or escaped into a string of its own.
pub fn write(doc: &XmlDocument, format: &XmlFormat) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    let target = Target::of(format.encoding);
    if format.declaration {
        out.push_str("<?xml version=\"1.0\" encoding=\"");
        out.extend(
            format
                .encoding
                .name()
                .chars()
                .map(|c| c.to_ascii_uppercase()),
        );
        out.push_str("\"?>\n");
    }
    // The namespace declarations go on the outermost element.
    let declare = |out: &mut String| {
        if let Some(soap) = format.soap {
            push_declaration(out, Some(SOAP_PREFIX), soap.namespace());
        }
        for (prefix, uri) in &format.namespaces {
            push_declaration(out, Some(prefix), uri);
        }
        if let Some(uri) = &format.default_namespace {
            push_declaration(out, None, uri);
        }
    };
    match format.soap {
        None => write_node(&mut out, &doc.root, 0, Some(&declare), target),
        Some(_) => {
            out.push('<');
            out.push_str(SOAP_PREFIX);
            out.push_str(":Envelope");
            declare(&mut out);
            out.push_str(">\n");
            if let Some(header) = doc.header.as_ref().filter(|h| !h.children.is_empty()) {
                push_tag(&mut out, "  <", "Header>\n");
                for child in &header.children {
                    write_node(&mut out, child, 2, None, target);
                }
                push_tag(&mut out, "  </", "Header>\n");
            }
            push_tag(&mut out, "  <", "Body>\n");
            write_node(&mut out, &doc.root, 2, None, target);
            push_tag(&mut out, "  </", "Body>\n");
            push_tag(&mut out, "</", "Envelope>\n");
        }
    }
    encode(out, format.encoding)
}

/// `<open>soap:<rest>`, an envelope element's tag.
fn push_tag(out: &mut String, open: &str, rest: &str) {
    out.push_str(open);
    out.push_str(SOAP_PREFIX);
    out.push(':');
    out.push_str(rest);
}

/// ` xmlns:prefix="uri"`, or ` xmlns="uri"` without a prefix.
fn push_declaration(out: &mut String, prefix: Option<&str>, uri: &str) {
    out.push_str(" xmlns");
    if let Some(prefix) = prefix {
        out.push(':');
        out.push_str(prefix);
    }
    out.push_str("=\"");
    push_escaped(out, uri, Target::Everything);
    out.push('"');
}

fn write_node(
    out: &mut String,
    node: &Node,
    depth: usize,
    declarations: Option<&dyn Fn(&mut String)>,
    target: Target,
) {
    push_indent(out, depth);
    out.push('<');
    out.push_str(&node.name);
    if let Some(declare) = declarations {
        declare(out);
    }
    for (name, value) in &node.attrs {
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        push_escaped(out, value, target);
        out.push('"');
    }
    // XML values are text; another JSON scalar (never made by a mapping) prints as JSON.
    let printed;
    let text = match &node.value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            printed = other.to_string();
            Some(printed.as_str())
        }
    };
    if node.children.is_empty() && text.is_none() {
        out.push_str("/>\n");
        return;
    }
    out.push('>');
    if let Some(text) = text {
        if node.cdata {
            push_cdata(out, text, target);
        } else {
            push_escaped(out, text, target);
        }
    }
    if !node.children.is_empty() {
        out.push('\n');
        for child in &node.children {
            write_node(out, child, depth + 1, None, target);
        }
        push_indent(out, depth);
    }
    out.push_str("</");
    out.push_str(&node.name);
    out.push_str(">\n");
}

fn push_indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// `text` with XML's five special characters escaped, as `quick_xml::escape::escape` does,
/// appended to `out` run by run.
/// `text` as XML character data in CDATA sections, which cannot hold `]]>` (it ends one and the
/// next opens) nor a character reference: a character the target encoding lacks is written as a
/// reference between two sections, never as reference text inside one.
fn push_cdata(out: &mut String, text: &str, target: Target) {
    out.push_str("<![CDATA[");
    let mut pieces = text.split("]]>");
    let push_piece = |out: &mut String, piece: &str| {
        let mut rest = piece;
        while let Some((at, c)) = target.first_lacking(rest) {
            out.push_str(&rest[..at]);
            out.push_str("]]>");
            push_reference(out, c);
            out.push_str("<![CDATA[");
            rest = &rest[at + c.len_utf8()..];
        }
        out.push_str(rest);
    };
    if let Some(first) = pieces.next() {
        push_piece(out, first);
    }
    for piece in pieces {
        out.push_str("]]]]><![CDATA[>");
        push_piece(out, piece);
    }
    out.push_str("]]>");
}

/// `&#N;` for `c`.
fn push_reference(out: &mut String, c: char) {
    let _ = write!(out, "&#{};", u32::from(c));
}

/// `text` escaped as XML character data or an attribute value, with a character reference for
/// each character the target encoding lacks.
fn push_escaped(out: &mut String, text: &str, target: Target) {
    let mut rest = text;
    // By byte: the five are ASCII, and no byte of a multi-byte character is.
    while let Some(at) = rest
        .bytes()
        .position(|b| matches!(b, b'<' | b'>' | b'&' | b'\'' | b'"'))
    {
        push_held(out, &rest[..at], target);
        out.push_str(match rest.as_bytes()[at] {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\'' => "&apos;",
            _ => "&quot;",
        });
        rest = &rest[at + 1..];
    }
    push_held(out, rest, target);
}

/// `text` with a character reference for each character the target encoding lacks.
fn push_held(out: &mut String, text: &str, target: Target) {
    let mut rest = text;
    while let Some((at, c)) = target.first_lacking(rest) {
        out.push_str(&rest[..at]);
        push_reference(out, c);
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
}

/// What a document's encoding can hold, for writing what it cannot as character references
/// (the only way XML has, and one a CDATA section cannot use).
#[derive(Debug, Clone, Copy)]
enum Target {
    /// UTF-8 and GB18030: every character.
    Everything,
    /// GBK as the departments' decoders read it (CP936: Python's and glibc's `gbk`), not the
    /// WHATWG GBK encoder's output, which gives two-byte GB18030 codes GBK decoders refuse
    /// (`䶮` U+4DAE is `FE9F`) and writes `€` as the single byte 0x80.
    Gbk,
    /// Another encoding: asked per character.
    Other(&'static Encoding),
}

impl Target {
    fn of(encoding: &'static Encoding) -> Target {
        let encoding = encoding.output_encoding();
        if encoding == encoding_rs::UTF_8 || encoding == encoding_rs::GB18030 {
            Target::Everything
        } else if encoding == encoding_rs::GBK {
            Target::Gbk
        } else {
            Target::Other(encoding)
        }
    }

    /// The first character of `text` the encoding lacks, with its byte offset.
    fn first_lacking(self, text: &str) -> Option<(usize, char)> {
        match self {
            Target::Everything => None,
            // ASCII and the CJK unified ideographs of U+4E00–U+9FA5 are GBK's; look at
            // nothing else closely.
            Target::Gbk => text.char_indices().find(|&(_, c)| {
                !(c.is_ascii() || ('\u{4E00}'..='\u{9FA5}').contains(&c) || gbk_holds(c))
            }),
            Target::Other(encoding) => text.char_indices().find(|&(_, c)| {
                let mut buf = [0u8; 4];
                encoding.encode(c.encode_utf8(&mut buf)).2
            }),
        }
    }
}

/// Whether GBK as departments' decoders read it (CP936) holds `c`: encoding_rs's GBK encoder
/// gives it two bytes, and those are not in a range CP936 leaves undefined or user-defined
/// (`FE50`–`FEFE`, the user areas `AAA1`–`AFFE`, `F8A1`–`FEFE`, `A140`–`A7A0`) nor one of the
/// codes GB18030 added (`A2E3` €, `A8BF` ǹ, `A989`–`A995`).
fn gbk_holds(c: char) -> bool {
    if ('\u{E000}'..='\u{F8FF}').contains(&c) {
        return false;
    }
    let mut buf = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(c.encode_utf8(&mut buf));
    let [lead, trail] = bytes[..] else {
        return false;
    };
    if unmappable {
        return false;
    }
    let code = u16::from_be_bytes([lead, trail]);
    let user_defined = ((0xAA..=0xAF).contains(&lead) || (0xF8..=0xFE).contains(&lead))
        && trail >= 0xA1
        || (0xA1..=0xA7).contains(&lead) && (0x40..=0xA0).contains(&trail);
    !(lead == 0xFE
        || user_defined
        || code == 0xA2E3
        || code == 0xA8BF
        || (0xA989..=0xA995).contains(&code))
}

/// `text` in `encoding`, byte for byte what `encoding.encode(text)` gives (characters an
/// encoding lacks become numeric character references, as there), without copying UTF-8.
///
/// GBK and GB18030 find a Chinese character's code by searching encoding_rs's tables, which
/// made encoding most of the cost of a message. Here ASCII runs are copied as they are, a CJK
/// unified ideograph's two bytes are taken from a table, and everything else (and an ideograph
/// met for the first time, whose code the table then keeps) goes through encoding_rs.
pub fn encode(text: String, encoding: &'static Encoding) -> Vec<u8> {
    let encoding = encoding.output_encoding();
    if encoding == encoding_rs::UTF_8 {
        return text.into_bytes();
    }
    if encoding != encoding_rs::GB18030 && encoding != encoding_rs::GBK {
        return encoding.encode(&text).0.into_owned();
    }
    let bytes = text.as_bytes();
    // GBK/GB18030 take at most as many bytes as UTF-8 for ASCII and CJK; others may grow it.
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let ascii = ascii_prefix(&bytes[at..]);
        out.extend_from_slice(&bytes[at..at + ascii]);
        at += ascii;
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        let width = c.len_utf8();
        match hanzi_code(c) {
            Some(slot) => match slot.load(Ordering::Relaxed) {
                0 => {
                    let before = out.len();
                    encode_slowly(encoding, &text[at..at + width], &mut out);
                    if let [lead, trail] = out[before..] {
                        slot.store(u16::from_be_bytes([lead, trail]), Ordering::Relaxed);
                    }
                }
                code => {
                    let [lead, trail] = code.to_be_bytes();
                    out.push(lead);
                    out.push(trail);
                }
            },
            None => encode_slowly(encoding, &text[at..at + width], &mut out),
        }
        at += width;
    }
    out
}

/// How many bytes `bytes` starts with are ASCII, looked at eight at a time.
fn ascii_prefix(bytes: &[u8]) -> usize {
    let mut words = bytes.chunks_exact(8);
    let mut n = 0;
    for word in words.by_ref() {
        let word = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        if word & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..]
        .iter()
        .position(|b| !b.is_ascii())
        .unwrap_or(bytes.len() - n)
}

/// The first and last CJK unified ideographs GBK and GB18030 encode in two bytes, the same in
/// both (U+4E00 to U+9FA5).
const HANZI_FIRST: u32 = 0x4E00;
const HANZI_COUNT: usize = 0x9FA6 - 0x4E00;

/// The GBK/GB18030 code (lead byte high) of each CJK unified ideograph, as encoding_rs gives
/// it the first time the process meets the character; 0 until then (no code is 0: a lead byte
/// is at least 0x81).
static HANZI_CODES: [AtomicU16; HANZI_COUNT] = [const { AtomicU16::new(0) }; HANZI_COUNT];

fn hanzi_code(c: char) -> Option<&'static AtomicU16> {
    let index = usize::try_from(u32::from(c).checked_sub(HANZI_FIRST)?).ok()?;
    HANZI_CODES.get(index)
}

/// Appends `text` encoded by encoding_rs, with numeric character references for what the
/// encoding lacks (as `Encoding::encode`).
fn encode_slowly(encoding: &'static Encoding, text: &str, out: &mut Vec<u8>) {
    let mut encoder = encoding.new_encoder();
    let mut read = 0;
    loop {
        let needed = encoder
            .max_buffer_length_from_utf8_if_no_unmappables(text.len() - read)
            .unwrap_or(16);
        // Room for a numeric character reference (`&#1114111;`) besides.
        out.reserve(needed + 10);
        let (result, n, _) = encoder.encode_from_utf8_to_vec(&text[read..], out, true);
        read += n;
        if result == encoding_rs::CoderResult::InputEmpty {
            return;
        }
    }
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

        /// The fast encoder gives exactly encoding_rs's bytes, for any text: Chinese with
        /// punctuation, characters outside GBK (emoji, U+E5E5, the euro sign) and XML markup.
        #[test]
        fn the_fast_encoder_gives_encoding_rs_bytes(
            text in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[张王李赵沈阳市和平区餐饮、，。（）：《》“”…—·A-Za-z0-9<>&\"' \n😀€é¥\u{e5e5}\u{3000}\u{9fa5}\u{9fa6}\u{4e00}\u{4dff}\u{20000}]{0,60}",
            ]
        ) {
            for encoding in [encoding_rs::GB18030, encoding_rs::GBK, encoding_rs::UTF_8, encoding_rs::BIG5] {
                let expected = encoding.encode(&text).0.into_owned();
                proptest::prop_assert_eq!(encode(text.clone(), encoding), expected.clone(), "{}", encoding.name());
                // The second time, ideographs come from the table the first call filled.
                proptest::prop_assert_eq!(encode(text.clone(), encoding), expected, "{}", encoding.name());
            }
        }

        /// The writer prints any tree exactly as formatting each piece and encoding the whole
        /// with encoding_rs did.
        #[test]
        fn the_writer_gives_the_bytes_of_the_plain_writer(
            doc in document(),
            soap in proptest::prop_oneof![
                proptest::strategy::Just(None),
                proptest::strategy::Just(Some(SoapVersion::V11)),
                proptest::strategy::Just(Some(SoapVersion::V12)),
            ],
            declaration in proptest::prelude::any::<bool>(),
            default_namespace in proptest::option::of("urn:[a-z<&\"]{1,8}"),
            encoding in proptest::prop_oneof![
                proptest::strategy::Just(encoding_rs::GB18030),
                proptest::strategy::Just(encoding_rs::GBK),
                proptest::strategy::Just(encoding_rs::UTF_8),
            ],
        ) {
            let mut f = format(soap);
            f.declaration = declaration;
            f.default_namespace = default_namespace;
            f.encoding = encoding;
            f.namespaces.push(("q".into(), "urn:a&b\"<c>".into()));
            proptest::prop_assert_eq!(write(&doc, &f), plain::write(&doc, &f));
        }
    }

    /// Every CJK unified ideograph GBK and GB18030 encode in two bytes, from the table both
    /// before and after it holds the character, is encoded as encoding_rs encodes it.
    #[test]
    fn every_ideograph_is_encoded_as_encoding_rs_does() {
        let all: String = (HANZI_FIRST..HANZI_FIRST + HANZI_COUNT as u32)
            .filter_map(char::from_u32)
            .collect();
        assert_eq!(all.chars().count(), HANZI_COUNT);
        for encoding in [encoding_rs::GB18030, encoding_rs::GBK] {
            let expected = encoding.encode(&all).0.into_owned();
            assert_eq!(expected.len(), 2 * HANZI_COUNT, "two bytes each");
            assert_eq!(
                encode(all.clone(), encoding),
                expected,
                "{}",
                encoding.name()
            );
            assert_eq!(
                encode(all.clone(), encoding),
                expected,
                "{}",
                encoding.name()
            );
        }
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        "[沈阳市张三、，。A-Za-z0-9<>&\"' \\]\n😀€\u{e5e5}]{0,12}"
    }

    fn document() -> impl proptest::strategy::Strategy<Value = XmlDocument> {
        use proptest::prelude::*;
        let leaf = (
            "(ns:)?[名称类型a-z]{1,4}",
            proptest::collection::vec(("(ns:)?[编号a-z]{1,3}", text()), 0..3),
            proptest::option::of(prop_oneof![
                text().prop_map(Value::String),
                any::<i64>().prop_map(Value::from),
                Just(Value::Null),
            ]),
            any::<bool>(),
        )
            .prop_map(|(name, attrs, value, cdata)| Node {
                name,
                attrs,
                value,
                cdata,
                ..Node::default()
            });
        let tree = leaf.prop_recursive(4, 40, 5, |inner| {
            (inner.clone(), proptest::collection::vec(inner, 0..5)).prop_map(|(mut n, children)| {
                n.children = children;
                n
            })
        });
        (tree.clone(), proptest::option::of(tree))
            .prop_map(|(root, header)| XmlDocument { root, header })
    }

    /// The writer as it was first written: each piece formatted on its own, escaped with
    /// quick-xml and the whole encoded with `Encoding::encode`; the reference the writer
    /// must match byte for byte.
    mod plain {
        use super::super::*;
        use std::cell::Cell;

        thread_local! {
            /// What the document's encoding holds, for the pieces written while one is.
            static TARGET: Cell<Target> = const { Cell::new(Target::Everything) };
        }

        /// `text` with each character the encoding lacks as a character reference, or, inside
        /// CDATA, as a reference between two sections.
        fn held(text: &str, cdata: bool) -> String {
            let target = TARGET.with(Cell::get);
            let mut out = String::new();
            for c in text.chars() {
                if target.first_lacking(c.encode_utf8(&mut [0; 4])).is_some() {
                    if cdata {
                        out.push_str(&format!("]]>&#{};<![CDATA[", u32::from(c)));
                    } else {
                        out.push_str(&format!("&#{};", u32::from(c)));
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }

        pub fn write(doc: &XmlDocument, format: &XmlFormat) -> Vec<u8> {
            TARGET.with(|t| t.set(Target::of(format.encoding)));
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
                    let pieces: Vec<String> = text.split("]]>").map(|p| held(p, true)).collect();
                    out.push_str(&pieces.join("]]]]><![CDATA[>"));
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
            held(&quick_xml::escape::escape(text), false)
        }
    }
}
