//! Evaluating a compiled mapping, as a pure function either way: legacy bytes to canonical
//! JSON (validated against the canonical schema) and canonical JSON to legacy bytes, every
//! field error returned at once.

use super::compiler::{Condition, ConditionOn, Field, Format, LegacyType, Mapping, Shape};
use super::tree::{LegacyPath, Node, Selected, element_at, select};
use super::{convert, json, xml};
use serde_json::{Map, Value};
use std::fmt::{self, Write as _};

/// Largest legacy document a mapping reads.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// One problem found while mapping a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MapError {
    /// The mapping file, e.g. `mappings/scjg-food-application.toml`.
    pub mapping: String,
    /// The mapping's field the problem is about (its canonical pointer, `[]` marking array
    /// items), or `(document)` for the document as a whole.
    pub field: String,
    /// Where in the input: a legacy path (`材料清单/材料[2]/名称`) when reading legacy, a JSON
    /// pointer when reading canonical.
    pub path: String,
    pub message: String,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: field `{}` at `{}`: {}",
            self.mapping, self.field, self.path, self.message
        )
    }
}

impl Mapping {
    /// The media type of this mapping's legacy documents, with their charset.
    pub fn content_type(&self) -> String {
        match &self.format {
            Format::Xml(x) => format!(
                "application/xml; charset={}",
                x.encoding.name().to_ascii_uppercase()
            ),
            Format::Json { .. } => "application/json".to_string(),
        }
    }

    fn error(&self, field: &str, path: impl Into<String>, message: impl Into<String>) -> MapError {
        MapError {
            mapping: self.file.clone(),
            field: field.to_string(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// Legacy bytes → canonical JSON, validated against the canonical schema. Every problem is
    /// returned, each naming the field and where in the legacy document it is.
    pub fn to_canonical(&self, input: &[u8]) -> Result<Value, Vec<MapError>> {
        let (root, header) = match &self.format {
            Format::Xml(x) => {
                let doc = xml::parse(input, x, MAX_INPUT_BYTES)
                    .map_err(|e| vec![self.error("(document)", "", e.to_string())])?;
                (doc.root, doc.header)
            }
            Format::Json { root } => (
                json::parse(input, root, MAX_INPUT_BYTES)
                    .map_err(|e| vec![self.error("(document)", "", e.to_string())])?,
                None,
            ),
        };
        let mut out = Value::Object(Map::new());
        let mut errors = Vec::new();
        let mut failed = Vec::new();
        self.read_fields(
            &self.fields,
            &root,
            header.as_ref(),
            "",
            "",
            &mut out,
            &mut errors,
            &mut failed,
        );
        // The schema sees what could be read, so its own findings (a bad check digit, a rule
        // across fields) come in the same answer; those about fields already reported do not.
        for v in self.schemas.validate(&self.canonical, &out) {
            if failed
                .iter()
                .any(|f| already_reported(f, &v.pointer, &v.message))
            {
                continue;
            }
            let mut segs: Vec<String> = v.pointer.split('/').skip(1).map(str::to_string).collect();
            segs.extend(required_member(&v.message));
            let (field, path) = locate(&self.fields, &segs, &root)
                .unwrap_or_else(|| ("(schema)".to_string(), v.pointer.clone()));
            errors.push(self.error(
                &field,
                path,
                format!(
                    "{} ({} at {})",
                    v.message,
                    self.canonical,
                    display_pointer(&v.pointer)
                ),
            ));
        }
        // No store keeps a NUL in text (PostgreSQL refuses it), and no legacy system means one:
        // a message carrying one is refused as it stands, never half-stored or retried.
        let nuls = if holds_nul(&out) {
            crate::schema::nul_pointers(&out)
        } else {
            Vec::new()
        };
        for (pointer, _) in nuls {
            let segs: Vec<String> = pointer.split('/').skip(1).map(unescape_token).collect();
            let (field, path) = locate(&self.fields, &segs, &root)
                .unwrap_or_else(|| ("(document)".to_string(), pointer.clone()));
            errors.push(self.error(
                &field,
                path,
                format!(
                    "holds a NUL character (U+0000), which the hub does not accept ({} at {})",
                    self.canonical,
                    display_pointer(&pointer).replace('\0', "\\u0000")
                ),
            ));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Canonical JSON → legacy bytes, after validating the input against the canonical schema.
    pub fn to_legacy(&self, canonical: &Value) -> Result<Vec<u8>, Vec<MapError>> {
        self.to_legacy_with_header(canonical, Vec::new(), None)
    }

    /// As [`Mapping::to_legacy_with_header`], with the places the identity assertion goes left
    /// open, for a document written once and sent more than once: each attempt's assertion is
    /// signed for that attempt. `header` makes the hub's own header entries, given the text to
    /// put where the assertion goes.
    pub fn to_legacy_open(
        &self,
        canonical: &Value,
        header: impl FnOnce(&str) -> Vec<Node>,
    ) -> Result<OpenDocument, Vec<MapError>> {
        let written =
            self.to_legacy_with_header(canonical, header(OPEN_ASSERTION), Some(OPEN_ASSERTION))?;
        Ok(OpenDocument::cut(written))
    }

    /// As [`Mapping::to_legacy`], adding header entries to the SOAP Header (ignored for
    /// formats without an envelope): the hub's own entries, such as the idempotency key; and
    /// writing `assertion` (the attempt's identity assertion) where fields with `source =
    /// "assertion"` put it.
    pub fn to_legacy_with_header(
        &self,
        canonical: &Value,
        extra_header: Vec<Node>,
        assertion: Option<&str>,
    ) -> Result<Vec<u8>, Vec<MapError>> {
        let violations = self.schemas.validate(&self.canonical, canonical);
        if !violations.is_empty() {
            return Err(violations
                .into_iter()
                .map(|v| {
                    let field = field_for_pointer(&self.fields, &v.pointer)
                        .unwrap_or_else(|| "(schema)".into());
                    self.error(&field, display_pointer(&v.pointer), v.message)
                })
                .collect());
        }
        let root_name = match &self.format {
            Format::Xml(x) => x.root.clone(),
            Format::Json { .. } => String::new(),
        };
        let mut root = Node::named(root_name);
        let mut header = Node::named(format!("{}:Header", xml::SOAP_PREFIX));
        let mut errors = Vec::new();
        self.write_fields(
            &self.fields,
            canonical,
            "",
            &mut root,
            &mut header,
            assertion,
            &mut errors,
        );
        header.children.extend(extra_header);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(match &self.format {
            Format::Xml(x) => xml::write(
                &xml::XmlDocument {
                    root,
                    header: x.soap.map(|_| header),
                },
                x,
            ),
            Format::Json { root: pointer } => json::write_owned(root, pointer),
        })
    }

    /// Reads `fields` from the legacy element `ctx` into the canonical object `out`. `ctx_path`
    /// is where `ctx` is in the legacy document and `ctx_pointer` where `out` is in the
    /// canonical one; the canonical pointers of fields that failed go to `failed`.
    #[allow(clippy::too_many_arguments)]
    fn read_fields(
        &self,
        fields: &[Field],
        ctx: &Node,
        header: Option<&Node>,
        ctx_path: &str,
        ctx_pointer: &str,
        out: &mut Value,
        errors: &mut Vec<MapError>,
        failed: &mut Vec<String>,
    ) {
        for f in unconditional_first(fields) {
            let Some(pointer) = &f.canonical else {
                continue;
            };
            if !holds(&f.when, ctx, out) {
                continue;
            }
            // Where the field is in the canonical document and in the legacy one: only an
            // error (or an item of an array of objects) needs them spelled out.
            let here = || format!("{ctx_pointer}/{}", pointer.join("/"));
            // Errors of this field itself; those of nested fields mark their own pointers.
            let mut errors_before = errors.len();
            if let Some(constant) = &f.constant {
                set_pointer(out, pointer, constant.clone());
                continue;
            }
            let Some(path) = &f.legacy else { continue };
            let at = || join_path(ctx_path, &path.to_string());
            let scope = if f.header { header } else { Some(ctx) };
            let selected = scope.map(|n| select(n, path)).unwrap_or_default();
            let value = match &f.shape {
                Shape::Objects(nested) => {
                    let nodes: Vec<&Node> = selected
                        .iter()
                        .filter_map(|s| match s {
                            Selected::Node(n) => Some(*n),
                            Selected::Attr(_) => None,
                        })
                        .collect();
                    if nodes.is_empty() {
                        None
                    } else {
                        let (at, here) = (at(), here());
                        let mut items = Vec::with_capacity(nodes.len());
                        for (i, node) in nodes.iter().enumerate() {
                            let mut item = Value::Object(Map::new());
                            self.read_fields(
                                nested,
                                node,
                                None,
                                &format!("{at}[{}]", i + 1),
                                &format!("{here}/{i}"),
                                &mut item,
                                errors,
                                failed,
                            );
                            items.push(item);
                        }
                        errors_before = errors.len();
                        Some(Value::Array(items))
                    }
                }
                Shape::Repeated => {
                    let mut items = Vec::new();
                    for (i, s) in selected.iter().enumerate() {
                        if let Some(raw) = self.scalar_of(f, s) {
                            match convert::to_canonical(raw, &f.kind, f.table.as_deref()) {
                                Ok(v) => items.push(v),
                                Err(m) => errors.push(self.error(
                                    &f.label,
                                    format!("{}[{}]", at(), i + 1),
                                    m,
                                )),
                            }
                        }
                    }
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                Shape::Split(sep) => match self.single(f, &selected, &at, errors) {
                    None => None,
                    Some(raw) => {
                        let printed;
                        let text = match &raw {
                            Value::String(s) => s.as_str(),
                            other => {
                                printed = convert::scalar_text(other).unwrap_or_default();
                                printed.as_str()
                            }
                        };
                        let mut items = Vec::new();
                        for piece in text.split(sep.as_str()) {
                            let piece = if f.trim { piece.trim() } else { piece };
                            if piece.is_empty() {
                                continue;
                            }
                            match convert::to_canonical(
                                Value::String(piece.to_string()),
                                &f.kind,
                                f.table.as_deref(),
                            ) {
                                Ok(v) => items.push(v),
                                Err(m) => errors.push(self.error(&f.label, at(), m)),
                            }
                        }
                        (!items.is_empty()).then_some(Value::Array(items))
                    }
                },
                Shape::Together(paths) => {
                    // One key of the texts of every place; a place without a value counts as
                    // empty, so a table can list a code for "this one absent".
                    let mut key = String::new();
                    let mut any = false;
                    for (i, path) in paths.iter().enumerate() {
                        let selected = scope.map(|n| select(n, path)).unwrap_or_default();
                        let at = || join_path(ctx_path, &path.to_string());
                        if i > 0 {
                            key.push(convert::KEY_SEPARATOR);
                        }
                        if let Some(v) = self.single(f, &selected, &at, errors) {
                            any = true;
                            convert::push_scalar_text(&mut key, &v);
                        }
                    }
                    if !any || errors.len() != errors_before {
                        None
                    } else {
                        match convert::to_canonical(Value::String(key), &f.kind, f.table.as_deref())
                        {
                            Ok(v) => Some(v),
                            Err(m) => {
                                // Every place the value was read from.
                                let places: Vec<String> = paths
                                    .iter()
                                    .map(|p| join_path(ctx_path, &p.to_string()))
                                    .collect();
                                errors.push(self.error(&f.label, places.join(" + "), m));
                                None
                            }
                        }
                    }
                }
                Shape::Scalar => match self.single(f, &selected, &at, errors) {
                    None => None,
                    Some(raw) => match convert::to_canonical(raw, &f.kind, f.table.as_deref()) {
                        Ok(v) => Some(v),
                        Err(m) => {
                            errors.push(self.error(&f.label, at(), m));
                            None
                        }
                    },
                },
            };
            let field_failed = errors.len() != errors_before;
            match (value, &f.default) {
                (Some(v), _) => set_pointer(out, pointer, v),
                (None, _) if field_failed => {}
                (None, Some(d)) => set_pointer(out, pointer, d.clone()),
                (None, None) if f.required => {
                    errors.push(self.error(&f.label, at(), "required, but missing or empty"))
                }
                (None, None) => {}
            }
            if errors.len() != errors_before {
                failed.push(here());
            }
        }
    }

    /// The scalar a selection holds, trimmed as the field says; `None` when empty.
    fn scalar_of(&self, f: &Field, s: &Selected<'_>) -> Option<Value> {
        let text = match s {
            Selected::Attr(a) => *a,
            Selected::Node(n) => match &n.value {
                None | Some(Value::Null) => return None,
                Some(Value::String(text)) => text.as_str(),
                Some(other) => return Some(other.clone()),
            },
        };
        let text = if f.trim { text.trim() } else { text };
        (!text.is_empty()).then(|| Value::String(text.to_string()))
    }

    /// The one scalar a field selects; more than one is an error.
    fn single(
        &self,
        f: &Field,
        selected: &[Selected<'_>],
        at: &dyn Fn() -> String,
        errors: &mut Vec<MapError>,
    ) -> Option<Value> {
        if selected.len() > 1 {
            errors.push(self.error(
                &f.label,
                at(),
                format!("appears {} times, expected once", selected.len()),
            ));
            return None;
        }
        selected.first().and_then(|s| self.scalar_of(f, s))
    }

    /// Writes `fields` from the canonical object `canonical` into the legacy element `node`
    /// (and the SOAP `header`), each field that applies in the order the file lists them.
    #[allow(clippy::too_many_arguments)]
    fn write_fields(
        &self,
        fields: &[Field],
        canonical: &Value,
        ctx_pointer: &str,
        node: &mut Node,
        header: &mut Node,
        assertion: Option<&str>,
        errors: &mut Vec<MapError>,
    ) {
        if fields.iter().all(|f| f.when.is_empty()) {
            let all = fields.iter();
            self.write_applying(all, canonical, ctx_pointer, node, header, assertion, errors);
            return;
        }
        // A condition sees the fields without one, as written. Which fields apply is settled
        // on a copy; then they are written in the file's order, so that an element under a
        // condition stands where its field stands, not after all the others: systems that
        // check their documents against a fixed element order (an XSD `sequence`) need that.
        let (mut seen, mut seen_header) = (node.clone(), header.clone());
        let plain = fields.iter().filter(|f| f.when.is_empty());
        let mut ignored = Vec::new();
        self.write_applying(
            plain,
            canonical,
            ctx_pointer,
            &mut seen,
            &mut seen_header,
            assertion,
            &mut ignored,
        );
        let applying: Vec<&Field> = fields
            .iter()
            .filter(|f| holds(&f.when, &seen, canonical))
            .collect();
        let applying = applying.into_iter();
        self.write_applying(
            applying,
            canonical,
            ctx_pointer,
            node,
            header,
            assertion,
            errors,
        );
    }

    /// Writes each of `fields`, in that order; whether they apply is the caller's decision.
    #[allow(clippy::too_many_arguments)]
    fn write_applying<'f>(
        &self,
        fields: impl Iterator<Item = &'f Field>,
        canonical: &Value,
        ctx_pointer: &str,
        node: &mut Node,
        header: &mut Node,
        assertion: Option<&str>,
        errors: &mut Vec<MapError>,
    ) {
        // The fields that wrote a single value so far: one legacy place holds one value, so a
        // second field writing there must agree with the first.
        let mut written: Vec<&Field> = Vec::new();
        for f in fields {
            let Some(path) = &f.legacy else { continue };
            let target: &mut Node = if f.header { header } else { node };
            if f.assertion {
                // Without a verified applicant there is no assertion: nothing is written.
                if let Some(assertion) = assertion {
                    let value = Value::String(assertion.to_owned());
                    self.write_once(f, path, target, value, &mut written, "", errors);
                }
                continue;
            }
            if let Some(constant) = &f.constant {
                self.write_once(f, path, target, constant.clone(), &mut written, "", errors);
                continue;
            }
            let Some(pointer) = &f.canonical else {
                continue;
            };
            // Where the field is in the canonical document: only an error needs it spelled out.
            let at = || format!("{ctx_pointer}/{}", pointer.join("/"));
            let value = pointer
                .iter()
                .try_fold(canonical, |v, seg| v.get(seg.as_str()))
                .filter(|v| !v.is_null());
            let Some(value) = value else {
                if f.required {
                    errors.push(self.error(&f.label, at(), "required, but missing"));
                }
                continue;
            };
            match &f.shape {
                Shape::Objects(nested) => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at(), "expected an array"));
                        continue;
                    };
                    let at = at();
                    let mut item_pointer = String::with_capacity(at.len() + 4);
                    for (i, item) in items.iter().enumerate() {
                        let element = element_at(target, &path.steps, true);
                        element.array = true;
                        let mut unused_header = Node::default();
                        item_pointer.clear();
                        let _ = write!(item_pointer, "{at}/{i}");
                        self.write_fields(
                            nested,
                            item,
                            &item_pointer,
                            element,
                            &mut unused_header,
                            assertion,
                            errors,
                        );
                    }
                }
                Shape::Repeated => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at(), "expected an array"));
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        match convert::to_legacy(item, &f.kind, f.table.as_deref()) {
                            Ok(v) => {
                                let v = self.legacy_value(f, v);
                                if let Some(problem) = self.uncarried(&v) {
                                    errors.push(self.error(
                                        &f.label,
                                        format!("{}/{i}", at()),
                                        problem,
                                    ));
                                    continue;
                                }
                                let element = element_at(target, &path.steps, true);
                                element.array = true;
                                element.value = Some(v);
                                element.cdata = f.cdata;
                            }
                            Err(m) => errors.push(self.error(&f.label, format!("{}/{i}", at()), m)),
                        }
                    }
                }
                Shape::Split(sep) => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at(), "expected an array"));
                        continue;
                    };
                    let mut joined = String::new();
                    let mut first = true;
                    for (i, item) in items.iter().enumerate() {
                        match convert::to_legacy(item, &f.kind, f.table.as_deref()) {
                            Ok(v) => {
                                if !first {
                                    joined.push_str(sep);
                                }
                                first = false;
                                convert::push_scalar_text(&mut joined, &v);
                            }
                            Err(m) => errors.push(self.error(&f.label, format!("{}/{i}", at()), m)),
                        }
                    }
                    let at = at();
                    let joined = Value::String(joined);
                    self.write_once(f, path, target, joined, &mut written, &at, errors);
                }
                Shape::Together(paths) => {
                    match convert::to_legacy(value, &f.kind, f.table.as_deref()) {
                        // The compiler saw to it that the table's values are lists as long.
                        Ok(Value::Array(parts)) => {
                            let at = at();
                            for (path, part) in paths.iter().zip(parts) {
                                // An empty part stands for a place the system leaves out.
                                if convert::scalar_text(&part).is_some_and(|t| t.is_empty()) {
                                    continue;
                                }
                                self.write_once(f, path, target, part, &mut written, &at, errors);
                            }
                        }
                        Ok(_) => errors.push(self.error(
                            &f.label,
                            at(),
                            "the table gave one legacy value for several places",
                        )),
                        Err(m) => errors.push(self.error(&f.label, at(), m)),
                    }
                }
                Shape::Scalar => match convert::to_legacy(value, &f.kind, f.table.as_deref()) {
                    Ok(v) => self.write_once(f, path, target, v, &mut written, &at(), errors),
                    Err(m) => errors.push(self.error(&f.label, at(), m)),
                },
            }
        }
    }

    /// The value as the legacy side holds it: text in XML (and JSON fields typed `string`),
    /// the declared JSON type otherwise. Text is moved, not copied.
    fn legacy_value(&self, f: &Field, v: Value) -> Value {
        let as_text = |v: Value| match v {
            Value::String(s) => Value::String(s),
            other => Value::String(convert::scalar_text(&other).unwrap_or_default()),
        };
        match (&self.format, &f.legacy_type) {
            (Format::Xml(_), _) | (Format::Json { .. }, Some(LegacyType::String)) => as_text(v),
            (Format::Json { .. }, Some(LegacyType::Number)) => {
                match convert::scalar_text(&v).and_then(|t| t.parse::<serde_json::Number>().ok()) {
                    Some(n) => Value::Number(n),
                    None => as_text(v),
                }
            }
            (Format::Json { .. }, Some(LegacyType::Boolean)) => {
                match convert::scalar_text(&v).as_deref() {
                    Some("true" | "1") => Value::Bool(true),
                    Some("false" | "0") => Value::Bool(false),
                    _ => as_text(v),
                }
            }
            (Format::Json { .. }, None) => v,
        }
    }

    /// Why the legacy document cannot carry `v`, if it cannot: XML 1.0 has no way to write most
    /// control characters, not even as a character reference.
    fn uncarried(&self, v: &Value) -> Option<String> {
        match (&self.format, v) {
            (Format::Xml(_), Value::String(text)) => xml::forbidden_char(text).map(|(_, c)| {
                format!(
                    "holds the control character U+{:04X}, which an XML 1.0 document cannot carry",
                    u32::from(c)
                )
            }),
            _ => None,
        }
    }

    /// Writes `v` where `f` says, unless a field in `written` wrote there before: then the two
    /// must agree (the same legacy value), or it is an error naming both, never a silent
    /// choice of one.
    #[allow(clippy::too_many_arguments)]
    fn write_once<'f>(
        &self,
        f: &'f Field,
        path: &LegacyPath,
        target: &mut Node,
        v: Value,
        written: &mut Vec<&'f Field>,
        at: &str,
        errors: &mut Vec<MapError>,
    ) {
        let v = self.legacy_value(f, v);
        if let Some(problem) = self.uncarried(&v) {
            errors.push(self.error(&f.label, at, problem));
            return;
        }
        let Some(first) = written
            .iter()
            .find(|g| g.header == f.header && g.legacy.as_ref() == Some(path))
        else {
            written.push(f);
            self.write_scalar(f, path, target, v);
            return;
        };
        let there = match path.split_attr() {
            (steps, Some(attr)) => element_at(target, steps, false)
                .attrs
                .iter()
                .find(|(n, _)| n == attr)
                .map(|(_, text)| Value::String(text.clone())),
            (steps, None) => element_at(target, steps, false).value.clone(),
        };
        if there.as_ref() != Some(&v) {
            errors.push(self.error(
                &f.label,
                at,
                format!(
                    "writes the same legacy place as field {} with a different value; the system's document holds one value there",
                    first.label
                ),
            ));
        }
    }

    /// Writes `v`, already the legacy side's value (see [`Self::legacy_value`]).
    fn write_scalar(&self, f: &Field, path: &LegacyPath, target: &mut Node, v: Value) {
        match path.split_attr() {
            (steps, Some(attr)) => {
                let element = element_at(target, steps, false);
                let text = match v {
                    Value::String(s) => s,
                    other => convert::scalar_text(&other).unwrap_or_default(),
                };
                match element.attrs.iter_mut().find(|(n, _)| n == attr) {
                    Some((_, existing)) => *existing = text,
                    None => element.attrs.push((attr.to_string(), text)),
                }
            }
            (steps, None) => {
                let element = element_at(target, steps, false);
                element.value = Some(v);
                element.cdata = f.cdata;
            }
        }
    }
}

/// What stands where the identity assertion goes while a document is written open: ASCII
/// letters, which every encoding and format writes as they are. The caller makes sure the
/// canonical document does not hold it ([`OpenDocument::holds_marker`]), so every place it is
/// found is one the assertion goes.
const OPEN_ASSERTION: &str = "TONGBANOPENASSERTIONe4c1b7a9d2f05836";

/// A legacy document with the places the attempt's identity assertion goes left open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDocument {
    pub bytes: Vec<u8>,
    /// Offsets in `bytes` where the assertion goes, ascending.
    pub assertion_at: Vec<usize>,
}

impl OpenDocument {
    /// Whether a canonical document (as JSON text) holds the text that marks the open places,
    /// so that it cannot be written open.
    pub fn holds_marker(canonical_text: &str) -> bool {
        canonical_text.contains(OPEN_ASSERTION)
    }

    fn cut(written: Vec<u8>) -> OpenDocument {
        let marker = OPEN_ASSERTION.as_bytes();
        let mut bytes = Vec::with_capacity(written.len());
        let mut assertion_at = Vec::new();
        let mut rest = written.as_slice();
        while let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
            bytes.extend_from_slice(&rest[..i]);
            assertion_at.push(bytes.len());
            rest = &rest[i + marker.len()..];
        }
        bytes.extend_from_slice(rest);
        OpenDocument {
            bytes,
            assertion_at,
        }
    }

    /// The document with `assertion` in its open places (left empty without one).
    pub fn closed(&self, assertion: Option<&str>) -> Vec<u8> {
        let assertion = assertion.unwrap_or_default().as_bytes();
        let mut out =
            Vec::with_capacity(self.bytes.len() + assertion.len() * self.assertion_at.len());
        let mut from = 0;
        for &at in &self.assertion_at {
            let at = at.min(self.bytes.len()).max(from);
            out.extend_from_slice(&self.bytes[from..at]);
            out.extend_from_slice(assertion);
            from = at;
        }
        out.extend_from_slice(&self.bytes[from..]);
        out
    }
}

/// `fields` with those that have conditions last, so that a condition on the other fields'
/// values sees them when reading.
fn unconditional_first(fields: &[Field]) -> impl Iterator<Item = &Field> {
    let plain = fields.iter().filter(|f| f.when.is_empty());
    plain.chain(fields.iter().filter(|f| !f.when.is_empty()))
}

/// Whether every condition holds: a legacy path's value in `legacy` (the element the field is
/// evaluated in), a canonical pointer's in `canonical` (the object it is evaluated in), is one
/// of the condition's values. A place with no value satisfies nothing.
fn holds(conditions: &[Condition], legacy: &Node, canonical: &Value) -> bool {
    conditions.iter().all(|c| {
        let text = match &c.on {
            ConditionOn::Legacy(path) => select(legacy, path)
                .first()
                .and_then(|s| s.scalar())
                .and_then(|v| convert::scalar_text(&v))
                .map(|t| t.trim().to_owned()),
            ConditionOn::Canonical(pointer) => pointer
                .iter()
                .try_fold(canonical, |v, seg| v.get(seg.as_str()))
                .and_then(convert::scalar_text),
        };
        text.is_some_and(|t| c.any_of.contains(&t))
    })
}

/// Whether a schema violation at `pointer` is about the field at `failed`, which has been
/// reported already: at or below it, or an object above it complaining that the member on the
/// way down is missing (the field failed, so nothing was read into it).
fn already_reported(failed: &str, pointer: &str, message: &str) -> bool {
    if pointer == failed || pointer.starts_with(&format!("{failed}/")) {
        return true;
    }
    let mut below = failed;
    while let Some((parent, member)) = below.rsplit_once('/') {
        if parent == pointer && message.contains(&format!("\"{member}\"")) {
            return true;
        }
        below = parent;
    }
    false
}

/// Whether any text or member name in `value` holds a NUL: a walk that copies nothing, for
/// the usual answer, no.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(members) => members
            .iter()
            .any(|(name, member)| name.contains('\0') || holds_nul(member)),
        _ => false,
    }
}

fn join_path(ctx: &str, path: &str) -> String {
    match (ctx.is_empty(), path) {
        (true, _) => path.to_string(),
        (false, ".") => ctx.to_string(),
        (false, _) => format!("{ctx}/{path}"),
    }
}

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn display_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_string()
    } else {
        pointer.to_string()
    }
}

fn set_pointer(out: &mut Value, pointer: &[String], value: Value) {
    let mut current = out;
    for seg in &pointer[..pointer.len().saturating_sub(1)] {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let object = current.as_object_mut().expect("made an object above");
        // The member's name is copied only when the member is new.
        if !object.contains_key(seg.as_str()) {
            object.insert(seg.clone(), Value::Object(Map::new()));
        }
        current = object.get_mut(seg.as_str()).expect("inserted above");
    }
    if let Some(last) = pointer.last() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current
            .as_object_mut()
            .expect("made an object above")
            .insert(last.clone(), value);
    }
}

/// The field mapping a canonical pointer, and the legacy path (with item numbers) it was read
/// from, for explaining a schema violation in the input's own terms.
fn locate(fields: &[Field], segs: &[String], root: &Node) -> Option<(String, String)> {
    locate_in(fields, segs, root, "")
}

fn locate_in(
    fields: &[Field],
    segs: &[String],
    ctx: &Node,
    ctx_path: &str,
) -> Option<(String, String)> {
    for f in fields {
        let (Some(pointer), Some(path)) = (&f.canonical, &f.legacy) else {
            continue;
        };
        if segs.len() < pointer.len() || segs[..pointer.len()] != pointer[..] {
            continue;
        }
        let at = join_path(ctx_path, &path.to_string());
        let rest = &segs[pointer.len()..];
        if let (Shape::Objects(nested), Some(index)) =
            (&f.shape, rest.first().and_then(|s| s.parse::<usize>().ok()))
        {
            let node = select(ctx, path).into_iter().nth(index);
            if let Some(Selected::Node(node)) = node {
                let item_path = format!("{at}[{}]", index + 1);
                return locate_in(nested, &rest[1..], node, &item_path)
                    .or(Some((f.label.clone(), item_path)));
            }
        }
        return Some((f.label.clone(), at));
    }
    None
}

/// The member a "required property" violation is about: `"name" is a required property`.
fn required_member(message: &str) -> Option<String> {
    let quoted = message.strip_suffix(" is a required property")?;
    Some(quoted.trim_matches('"').to_string())
}

/// The label of the field that maps a canonical pointer, for errors in canonical input.
fn field_for_pointer(fields: &[Field], pointer: &str) -> Option<String> {
    let segs: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut fields = fields;
    let mut i = 0;
    'walk: loop {
        for f in fields {
            let Some(p) = &f.canonical else { continue };
            if segs.len() >= i + p.len() && segs[i..i + p.len()].iter().zip(p).all(|(a, b)| a == b)
            {
                i += p.len();
                if let (Shape::Objects(nested), true) = (&f.shape, segs.len() > i + 1) {
                    fields = nested;
                    i += 1;
                    continue 'walk;
                }
                return Some(f.label.clone());
            }
        }
        return None;
    }
}
