//! Declarative mappings between canonical JSON and a department system's own XML or JSON, in
//! both directions: compiled once from `mappings/<name>.toml`, evaluated as pure functions that
//! return every field error at once.
//!
//! A mapping names the canonical schema it produces and consumes, the legacy format (XML with
//! namespaces, optional SOAP envelope and encoding; or JSON with an optional payload pointer),
//! value tables, and a list of fields. Each field pairs a canonical JSON pointer with a legacy
//! path and says how to convert between them. The README documents the file format.

pub mod cases;
mod convert;
pub mod json;
pub mod tree;
pub mod xml;

pub use convert::{Kind, Pattern, Table, Unknown};
pub use tree::{LegacyPath, Node};
pub use xml::{SoapFault, SoapVersion, XmlFormat};

use crate::schema::Schemas;
use crate::source::{ConfigError, SourceFile};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tree::{Selected, element_at, select};

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

/// The legacy side of a mapping.
#[derive(Debug, Clone)]
pub enum Format {
    Xml(XmlFormat),
    /// JSON, with the payload object at this pointer (`""` for the whole document).
    Json {
        root: String,
    },
}

/// How a field's legacy value relates to the canonical one.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Scalar,
    /// Repeated legacy elements ⇄ a canonical array of scalars.
    Repeated,
    /// One legacy string, split on the separator ⇄ a canonical array of scalars.
    Split(String),
    /// Repeated legacy elements ⇄ a canonical array of objects, each mapped by these fields.
    Objects(Vec<Field>),
}

#[derive(Debug, Clone, PartialEq)]
enum LegacyType {
    String,
    Number,
    Boolean,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    label: String,
    canonical: Option<Vec<String>>,
    legacy: Option<LegacyPath>,
    required: bool,
    default: Option<Value>,
    constant: Option<Value>,
    kind: Kind,
    table: Option<Arc<Table>>,
    trim: bool,
    shape: Shape,
    cdata: bool,
    legacy_type: Option<LegacyType>,
    header: bool,
}

/// A compiled mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub name: String,
    /// The file it was compiled from, relative to the configuration directory.
    pub file: String,
    /// The canonical schema (by name) that documents on the canonical side follow.
    pub canonical: String,
    pub format: Format,
    fields: Vec<Field>,
    schemas: Schemas,
}

// ---------------------------------------------------------------------------------------------
// The file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    canonical: toml::Spanned<String>,
    format: toml::Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    xml: Option<XmlFile>,
    json: Option<JsonFile>,
    #[serde(default)]
    tables: BTreeMap<String, toml::Spanned<TableFile>>,
    #[serde(default, rename = "field")]
    fields: Vec<FieldFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlFile {
    root: toml::Spanned<String>,
    #[serde(default)]
    namespaces: BTreeMap<String, String>,
    default_namespace: Option<String>,
    soap: Option<toml::Spanned<String>>,
    encoding: Option<toml::Spanned<String>>,
    #[serde(default = "yes")]
    declaration: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFile {
    #[serde(default)]
    root: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    values: BTreeMap<String, toml::Value>,
    #[serde(default)]
    unknown: Option<UnknownFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UnknownFile {
    Rule(String),
    Fallback {
        canonical: String,
        legacy: toml::Value,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    canonical: Option<toml::Spanned<String>>,
    legacy: Option<toml::Spanned<String>>,
    #[serde(default)]
    required: bool,
    default: Option<toml::Value>,
    constant: Option<toml::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    format: Option<String>,
    table: Option<String>,
    trim: Option<bool>,
    separator: Option<String>,
    #[serde(default)]
    repeated: bool,
    #[serde(default)]
    cdata: bool,
    legacy_type: Option<String>,
    #[serde(default)]
    header: bool,
    #[serde(default)]
    each: Vec<FieldFile>,
}

fn json_of(value: toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Compiling

/// Compiles a mapping file against the loaded canonical schemas, reporting every problem.
pub fn compile(file: &SourceFile, schemas: &Schemas) -> Result<Mapping, Vec<ConfigError>> {
    let parsed: MappingFile = toml::from_str(&file.text).map_err(|e| vec![file.toml_error(&e)])?;
    let mut errors = Vec::new();
    let name = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();

    let schema_doc = schemas
        .documents()
        .find(|(n, _)| *n == parsed.canonical.get_ref())
        .map(|(_, d)| d.clone());
    if schema_doc.is_none() {
        errors.push(file.error_at_span(
            "canonical",
            parsed.canonical.span(),
            format!(
                "no canonical schema `{}` in schemas/ (known: {})",
                parsed.canonical.get_ref(),
                schemas.documents().map(|(n, _)| n).collect::<Vec<_>>().join(", ")
            ),
        ));
    }

    let format = match parsed.format.get_ref().as_str() {
        "xml" => match parsed.xml {
            Some(x) => compile_xml(file, x, &mut errors).map(Format::Xml),
            None => {
                errors.push(file.error_at_span(
                    "xml",
                    parsed.format.span(),
                    "format `xml` needs an [xml] table with at least `root`",
                ));
                None
            }
        },
        "json" => {
            if parsed.xml.is_some() {
                errors.push(
                    file.error_at_key("xml", "an [xml] table does not apply to format `json`"),
                );
            }
            let root = parsed.json.map(|j| j.root).unwrap_or_default();
            if !(root.is_empty() || root.starts_with('/')) {
                errors.push(file.error_at_key(
                    "json.root",
                    "must be a JSON pointer such as `/data`, or empty",
                ));
            }
            Some(Format::Json { root })
        }
        other => {
            errors.push(file.error_at_span(
                "format",
                parsed.format.span(),
                format!("unknown format `{other}`, expected `xml` or `json`"),
            ));
            None
        }
    };

    let mut tables = BTreeMap::new();
    for (table_name, spanned) in parsed.tables {
        let span = spanned.span();
        match compile_table(&table_name, spanned.into_inner()) {
            Ok(t) => {
                tables.insert(table_name, Arc::new(t));
            }
            Err(message) => {
                errors.push(file.error_at_span(&format!("tables.{table_name}"), span, message))
            }
        }
    }

    let context = FieldContext {
        file,
        tables: &tables,
        format: format.as_ref(),
        schema: schema_doc.as_ref(),
    };
    let fields = compile_fields(&context, parsed.fields, &[], "field", &mut errors);
    check_duplicates(file, &fields, &mut errors);

    let _ = parsed.description;
    match format {
        Some(format) if errors.is_empty() => Ok(Mapping {
            name,
            file: file.path.display().to_string(),
            canonical: parsed.canonical.into_inner(),
            format,
            fields,
            schemas: schemas.clone(),
        }),
        _ => Err(errors),
    }
}

fn compile_xml(file: &SourceFile, x: XmlFile, errors: &mut Vec<ConfigError>) -> Option<XmlFormat> {
    let before = errors.len();
    for (prefix, uri) in &x.namespaces {
        if prefix == xml::SOAP_PREFIX {
            errors.push(file.error_at_key(
                "xml.namespaces",
                "the prefix `soap` is the hub's for the SOAP envelope; choose another",
            ));
        } else if prefix.is_empty()
            || prefix.contains(':')
            || prefix.chars().any(char::is_whitespace)
            || uri.is_empty()
        {
            errors.push(file.error_at_key(
                "xml.namespaces",
                format!("`{prefix}` = `{uri}` is not a prefix and namespace URI"),
            ));
        }
    }
    let soap = match x.soap.as_ref().map(|s| s.get_ref().as_str()) {
        None => None,
        Some("1.1") => Some(SoapVersion::V11),
        Some("1.2") => Some(SoapVersion::V12),
        Some(other) => {
            errors.push(file.error_at_span(
                "xml.soap",
                x.soap.as_ref().map(|s| s.span()).unwrap_or(0..0),
                format!("unknown SOAP version `{other}`, expected \"1.1\" or \"1.2\""),
            ));
            None
        }
    };
    let encoding = match &x.encoding {
        None => encoding_rs::UTF_8,
        Some(label) => {
            match encoding_rs::Encoding::for_label(label.get_ref().as_bytes()) {
                Some(e) if e.is_ascii_compatible() => e,
                _ => {
                    errors.push(file.error_at_span(
                    "xml.encoding",
                    label.span(),
                    format!("`{}` is not an ASCII-compatible encoding such as UTF-8, GBK or GB18030", label.get_ref()),
                ));
                    encoding_rs::UTF_8
                }
            }
        }
    };
    let root = x.root.get_ref().clone();
    match LegacyPath::parse(&root) {
        Ok(p) if p.steps.len() == 1 && !p.ends_in_attr() => {
            for prefix in p.prefixes() {
                if !x.namespaces.contains_key(prefix) {
                    errors.push(file.error_at_span(
                        "xml.root",
                        x.root.span(),
                        format!("prefix `{prefix}` is not in xml.namespaces"),
                    ));
                }
            }
        }
        _ => errors.push(file.error_at_span(
            "xml.root",
            x.root.span(),
            "must be one element name, such as `ns:申请`",
        )),
    }
    (errors.len() == before).then(|| XmlFormat {
        root,
        namespaces: x.namespaces.into_iter().collect(),
        default_namespace: x.default_namespace,
        soap,
        encoding,
        declaration: x.declaration,
    })
}

fn compile_table(name: &str, t: TableFile) -> Result<Table, String> {
    let mut to_legacy = BTreeMap::new();
    let mut to_canonical = BTreeMap::new();
    for (code, legacy) in t.values {
        let legacy = json_of(legacy);
        let text = convert::scalar_text(&legacy)
            .ok_or_else(|| format!("value for `{code}` must be a string, number or boolean"))?;
        if let Some(other) = to_canonical.insert(text.clone(), code.clone()) {
            return Err(format!(
                "legacy value `{text}` is given for both `{other}` and `{code}`, so it cannot be mapped back"
            ));
        }
        to_legacy.insert(code, legacy);
    }
    let unknown = match t.unknown {
        None => Unknown::Error,
        Some(UnknownFile::Rule(rule)) => match rule.as_str() {
            "error" => Unknown::Error,
            "keep" => Unknown::Keep,
            other => {
                return Err(format!(
                    "unknown = `{other}`: expected \"error\", \"keep\" or {{ canonical = …, legacy = … }}"
                ));
            }
        },
        Some(UnknownFile::Fallback { canonical, legacy }) => Unknown::Fallback {
            canonical,
            legacy: json_of(legacy),
        },
    };
    Ok(Table {
        name: name.to_string(),
        to_legacy,
        to_canonical,
        unknown,
    })
}

struct FieldContext<'a> {
    file: &'a SourceFile,
    tables: &'a BTreeMap<String, Arc<Table>>,
    format: Option<&'a Format>,
    schema: Option<&'a Value>,
}

fn compile_fields(
    cx: &FieldContext<'_>,
    files: Vec<FieldFile>,
    parent: &[String],
    key_prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Field> {
    files
        .into_iter()
        .enumerate()
        .filter_map(|(i, f)| compile_field(cx, f, parent, &format!("{key_prefix}[{i}]"), errors))
        .collect()
}

fn compile_field(
    cx: &FieldContext<'_>,
    f: FieldFile,
    parent: &[String],
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Field> {
    let before = errors.len();
    let span = f
        .canonical
        .as_ref()
        .map(|c| c.span())
        .or_else(|| f.legacy.as_ref().map(|l| l.span()))
        .unwrap_or(0..0);
    let mut err = |what: &str, message: String| {
        errors.push(
            cx.file
                .error_at_span(&format!("{key}{what}"), span.clone(), message),
        );
    };
    let is_xml = matches!(cx.format, Some(Format::Xml(_)));

    let canonical = match &f.canonical {
        None => None,
        Some(c) => match parse_pointer(c.get_ref()) {
            Ok(segs) => Some(segs),
            Err(m) => {
                err(".canonical", m);
                None
            }
        },
    };
    let legacy = match &f.legacy {
        None => None,
        Some(l) => match LegacyPath::parse(l.get_ref()) {
            Ok(p) => Some(p),
            Err(m) => {
                err(".legacy", m);
                None
            }
        },
    };
    match (&f.canonical, &f.legacy, &f.constant) {
        (None, None, _) => err("", "a field needs `canonical`, `legacy` or both".into()),
        (Some(_), Some(_), Some(_)) => err(
            ".constant",
            "a constant belongs to one side: give `canonical` or `legacy`, not both".into(),
        ),
        (None, Some(_), None) => err(
            ".canonical",
            "a field without `canonical` must be a `constant` written to the legacy side".into(),
        ),
        (Some(_), None, None) => err(
            ".legacy",
            "a field without `legacy` must be a `constant` set on the canonical side".into(),
        ),
        _ => {}
    }

    if let (Some(segs), Some(schema)) = (&canonical, cx.schema) {
        let full: Vec<String> = parent.iter().cloned().chain(segs.iter().cloned()).collect();
        if !can_exist(schema, schema, &full) {
            err(
                ".canonical",
                format!("`/{}` cannot exist in the canonical schema", full.join("/")),
            );
        }
    }
    if let Some(p) = &legacy {
        if let Some(Format::Xml(x)) = cx.format {
            for prefix in p.prefixes() {
                let declared = x.namespaces.iter().any(|(n, _)| n == prefix);
                let soap_header = f.header && prefix == xml::SOAP_PREFIX;
                if !declared && !soap_header {
                    err(
                        ".legacy",
                        format!("prefix `{prefix}` is not in xml.namespaces"),
                    );
                }
            }
        }
        if !is_xml && p.ends_in_attr() {
            err(".legacy", "attributes (`@name`) exist only in XML".into());
        }
    }
    if f.header
        && !matches!(
            cx.format,
            Some(Format::Xml(XmlFormat { soap: Some(_), .. }))
        )
    {
        err(
            ".header",
            "header fields need a SOAP envelope (xml.soap)".into(),
        );
    }
    if f.header && !parent.is_empty() {
        err(
            ".header",
            "fields inside `each` cannot be header fields".into(),
        );
    }
    if f.cdata && !is_xml {
        err(".cdata", "CDATA exists only in XML".into());
    }
    let legacy_type = match f.legacy_type.as_deref() {
        None => None,
        Some(_) if is_xml => {
            err(
                ".legacy_type",
                "XML values are always text; legacy_type applies to JSON".into(),
            );
            None
        }
        Some("string") => Some(LegacyType::String),
        Some("number") => Some(LegacyType::Number),
        Some("boolean") => Some(LegacyType::Boolean),
        Some(other) => {
            err(
                ".legacy_type",
                format!("unknown legacy_type `{other}`, expected string, number or boolean"),
            );
            None
        }
    };

    let pattern = match &f.format {
        None => Some(Pattern::Rfc3339),
        Some(p) => match Pattern::parse(p) {
            Ok(p) => Some(p),
            Err(m) => {
                err(".format", m);
                None
            }
        },
    };
    let kind = match (f.kind.as_deref().unwrap_or("string"), pattern) {
        ("string", _) => Some(Kind::String),
        ("integer", _) => Some(Kind::Integer),
        ("number", _) => Some(Kind::Number),
        ("boolean", _) => Some(Kind::Boolean),
        ("datetime", Some(p)) => Some(Kind::DateTime(p)),
        ("date", Some(p)) => Some(Kind::Date(p)),
        ("datetime" | "date", None) => None,
        (other, _) => {
            err(
                ".type",
                format!(
                    "unknown type `{other}`, expected string, integer, number, boolean, datetime or date"
                ),
            );
            None
        }
    };
    if f.format.is_some() && !matches!(f.kind.as_deref(), Some("datetime" | "date")) {
        err(
            ".format",
            "a format applies only to type datetime or date".into(),
        );
    }

    let table = match &f.table {
        None => None,
        Some(t) => match cx.tables.get(t) {
            Some(t) => Some(t.clone()),
            None => {
                err(".table", format!("no table `{t}` in [tables]"));
                None
            }
        },
    };

    let shapes = [!f.each.is_empty(), f.repeated, f.separator.is_some()];
    if shapes.iter().filter(|s| **s).count() > 1 {
        err(
            "",
            "use at most one of `each`, `repeated` and `separator`".into(),
        );
    }
    if (f.repeated || !f.each.is_empty()) && legacy.as_ref().is_some_and(LegacyPath::ends_in_attr) {
        err(
            ".legacy",
            "a repeated element cannot be an attribute".into(),
        );
    }
    let shape = if !f.each.is_empty() {
        let nested_parent: Vec<String> = parent
            .iter()
            .cloned()
            .chain(canonical.clone().unwrap_or_default())
            .chain(std::iter::once("0".to_string()))
            .collect();
        Shape::Objects(compile_fields(
            cx,
            f.each,
            &nested_parent,
            &format!("{key}.each"),
            errors,
        ))
    } else if f.repeated {
        Shape::Repeated
    } else if let Some(sep) = f.separator {
        if sep.is_empty() {
            errors.push(cx.file.error_at_span(
                &format!("{key}.separator"),
                span.clone(),
                "a separator cannot be empty",
            ));
        }
        Shape::Split(sep)
    } else {
        Shape::Scalar
    };

    if errors.len() != before {
        return None;
    }
    let label = match &canonical {
        Some(segs) => format!("{}/{}", parent_label(parent), segs.join("/")),
        None => format!(
            "(legacy constant {})",
            legacy.as_ref().map(|l| l.to_string()).unwrap_or_default()
        ),
    };
    Some(Field {
        label,
        canonical,
        legacy,
        required: f.required,
        default: f.default.map(json_of),
        constant: f.constant.map(json_of),
        kind: kind?,
        table,
        trim: f.trim.unwrap_or(true),
        shape,
        cdata: f.cdata,
        legacy_type,
        header: f.header,
    })
}

/// `/materials/0` as a label prefix: `/materials[]`.
fn parent_label(parent: &[String]) -> String {
    let mut label = String::new();
    for seg in parent {
        if seg == "0" {
            label.push_str("[]");
        } else {
            label.push('/');
            label.push_str(seg);
        }
    }
    label
}

fn parse_pointer(text: &str) -> Result<Vec<String>, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!(
            "`{text}` is not a JSON pointer (it starts with `/`, e.g. `/applicant/name`)"
        ));
    };
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if segs.iter().any(String::is_empty) {
        return Err(format!("`{text}` has an empty segment"));
    }
    Ok(segs)
}

/// Whether a JSON pointer (as segments, `0` standing for any array index) can address
/// something in instances of `schema`: following `properties`, `items`, local `$ref`s and the
/// branches of `allOf`/`anyOf`/`oneOf`/`then`/`else`; free-form objects allow anything below.
fn can_exist(root: &Value, schema: &Value, segs: &[String]) -> bool {
    can_exist_at(root, schema, segs, 0)
}

fn can_exist_at(root: &Value, schema: &Value, segs: &[String], depth: usize) -> bool {
    if segs.is_empty() {
        return true;
    }
    if depth > 32 {
        return false;
    }
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(target) => target,
            None => return false,
        },
        None => schema,
    };
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array)
            && branches
                .iter()
                .any(|b| can_exist_at(root, b, segs, depth + 1))
        {
            return true;
        }
    }
    for key in ["then", "else"] {
        if let Some(branch) = schema.get(key)
            && can_exist_at(root, branch, segs, depth + 1)
        {
            return true;
        }
    }
    let (first, rest) = (&segs[0], &segs[1..]);
    if let Some(p) = schema.get("properties").and_then(|p| p.get(first))
        && can_exist_at(root, p, rest, depth + 1)
    {
        return true;
    }
    if first.chars().all(|c| c.is_ascii_digit())
        && let Some(items) = schema.get("items")
        && can_exist_at(root, items, rest, depth + 1)
    {
        return true;
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) => true,
        Some(ap @ Value::Object(_)) => can_exist_at(root, ap, rest, depth + 1),
        None => {
            schema.get("type").and_then(Value::as_str) == Some("object")
                && schema.get("properties").is_none()
        }
        _ => false,
    }
}

fn check_duplicates(file: &SourceFile, fields: &[Field], errors: &mut Vec<ConfigError>) {
    let mut seen: Vec<(&Vec<String>, &str)> = Vec::new();
    for f in fields {
        if let (Some(c), None) = (&f.canonical, &f.constant) {
            if let Some((_, other)) = seen.iter().find(|(s, _)| *s == c) {
                errors.push(file.error_at_key(
                    "field",
                    format!("`{}` is mapped twice (also by `{other}`)", f.label),
                ));
            }
            seen.push((c, &f.label));
        }
        if let Shape::Objects(nested) = &f.shape {
            check_duplicates(file, nested, errors);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluating

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
        for (pointer, _) in crate::schema::nul_pointers(&out) {
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
        self.to_legacy_with_header(canonical, Vec::new())
    }

    /// As [`Mapping::to_legacy`], adding header entries to the SOAP Header (ignored for
    /// formats without an envelope): the hub's own entries, such as the idempotency key.
    pub fn to_legacy_with_header(
        &self,
        canonical: &Value,
        extra_header: Vec<Node>,
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
            Format::Json { root: pointer } => json::write(&root, pointer),
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
        for f in fields {
            let Some(pointer) = &f.canonical else {
                continue;
            };
            let here = format!("{ctx_pointer}/{}", pointer.join("/"));
            // Errors of this field itself; those of nested fields mark their own pointers.
            let mut errors_before = errors.len();
            if let Some(constant) = &f.constant {
                set_pointer(out, pointer, constant.clone());
                continue;
            }
            let Some(path) = &f.legacy else { continue };
            let at = join_path(ctx_path, &path.to_string());
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
                            match convert::to_canonical(&raw, &f.kind, f.table.as_deref()) {
                                Ok(v) => items.push(v),
                                Err(m) => {
                                    errors.push(self.error(&f.label, format!("{at}[{}]", i + 1), m))
                                }
                            }
                        }
                    }
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                Shape::Split(sep) => match self.single(f, &selected, &at, errors) {
                    None => None,
                    Some(raw) => {
                        let text = convert::scalar_text(&raw).unwrap_or_default();
                        let mut items = Vec::new();
                        for piece in text.split(sep.as_str()) {
                            let piece = if f.trim { piece.trim() } else { piece };
                            if piece.is_empty() {
                                continue;
                            }
                            match convert::to_canonical(
                                &Value::String(piece.to_string()),
                                &f.kind,
                                f.table.as_deref(),
                            ) {
                                Ok(v) => items.push(v),
                                Err(m) => errors.push(self.error(&f.label, at.clone(), m)),
                            }
                        }
                        (!items.is_empty()).then_some(Value::Array(items))
                    }
                },
                Shape::Scalar => match self.single(f, &selected, &at, errors) {
                    None => None,
                    Some(raw) => match convert::to_canonical(&raw, &f.kind, f.table.as_deref()) {
                        Ok(v) => Some(v),
                        Err(m) => {
                            errors.push(self.error(&f.label, at.clone(), m));
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
                    errors.push(self.error(&f.label, at, "required, but missing or empty"))
                }
                (None, None) => {}
            }
            if errors.len() != errors_before {
                failed.push(here);
            }
        }
    }

    /// The scalar a selection holds, trimmed as the field says; `None` when empty.
    fn scalar_of(&self, f: &Field, s: &Selected<'_>) -> Option<Value> {
        match s.scalar()? {
            Value::String(text) => {
                let text = if f.trim {
                    text.trim().to_string()
                } else {
                    text
                };
                (!text.is_empty()).then_some(Value::String(text))
            }
            other => Some(other),
        }
    }

    /// The one scalar a field selects; more than one is an error.
    fn single(
        &self,
        f: &Field,
        selected: &[Selected<'_>],
        at: &str,
        errors: &mut Vec<MapError>,
    ) -> Option<Value> {
        if selected.len() > 1 {
            errors.push(self.error(
                &f.label,
                at,
                format!("appears {} times, expected once", selected.len()),
            ));
            return None;
        }
        selected.first().and_then(|s| self.scalar_of(f, s))
    }

    fn write_fields(
        &self,
        fields: &[Field],
        canonical: &Value,
        ctx_pointer: &str,
        node: &mut Node,
        header: &mut Node,
        errors: &mut Vec<MapError>,
    ) {
        for f in fields {
            let Some(path) = &f.legacy else { continue };
            let target: &mut Node = if f.header { header } else { node };
            if let Some(constant) = &f.constant {
                self.write_scalar(f, path, target, constant.clone());
                continue;
            }
            let Some(pointer) = &f.canonical else {
                continue;
            };
            let at = format!("{ctx_pointer}/{}", pointer.join("/"));
            let value = pointer
                .iter()
                .try_fold(canonical, |v, seg| v.get(seg.as_str()))
                .filter(|v| !v.is_null());
            let Some(value) = value else {
                if f.required {
                    errors.push(self.error(&f.label, at, "required, but missing"));
                }
                continue;
            };
            match &f.shape {
                Shape::Objects(nested) => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at, "expected an array"));
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let element = element_at(target, &path.steps, true);
                        element.array = true;
                        let mut unused_header = Node::default();
                        self.write_fields(
                            nested,
                            item,
                            &format!("{at}/{i}"),
                            element,
                            &mut unused_header,
                            errors,
                        );
                    }
                }
                Shape::Repeated => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at, "expected an array"));
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        match convert::to_legacy(item, &f.kind, f.table.as_deref()) {
                            Ok(v) => {
                                let element = element_at(target, &path.steps, true);
                                element.array = true;
                                element.value = Some(self.legacy_value(f, v));
                                element.cdata = f.cdata;
                            }
                            Err(m) => errors.push(self.error(&f.label, format!("{at}/{i}"), m)),
                        }
                    }
                }
                Shape::Split(sep) => {
                    let Some(items) = value.as_array() else {
                        errors.push(self.error(&f.label, at, "expected an array"));
                        continue;
                    };
                    let mut pieces = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match convert::to_legacy(item, &f.kind, f.table.as_deref()) {
                            Ok(v) => pieces.push(convert::scalar_text(&v).unwrap_or_default()),
                            Err(m) => errors.push(self.error(&f.label, format!("{at}/{i}"), m)),
                        }
                    }
                    self.write_scalar(f, path, target, Value::String(pieces.join(sep)));
                }
                Shape::Scalar => match convert::to_legacy(value, &f.kind, f.table.as_deref()) {
                    Ok(v) => self.write_scalar(f, path, target, v),
                    Err(m) => errors.push(self.error(&f.label, at, m)),
                },
            }
        }
    }

    fn legacy_value(&self, f: &Field, v: Value) -> Value {
        let as_text = || Value::String(convert::scalar_text(&v).unwrap_or_default());
        match (&self.format, &f.legacy_type) {
            (Format::Xml(_), _) | (Format::Json { .. }, Some(LegacyType::String)) => as_text(),
            (Format::Json { .. }, Some(LegacyType::Number)) => convert::scalar_text(&v)
                .and_then(|t| t.parse::<serde_json::Number>().ok())
                .map(Value::Number)
                .unwrap_or_else(as_text),
            (Format::Json { .. }, Some(LegacyType::Boolean)) => {
                match convert::scalar_text(&v).as_deref() {
                    Some("true" | "1") => Value::Bool(true),
                    Some("false" | "0") => Value::Bool(false),
                    _ => as_text(),
                }
            }
            (Format::Json { .. }, None) => v,
        }
    }

    fn write_scalar(&self, f: &Field, path: &LegacyPath, target: &mut Node, v: Value) {
        let v = self.legacy_value(f, v);
        match path.split_attr() {
            (steps, Some(attr)) => {
                let element = element_at(target, steps, false);
                let text = convert::scalar_text(&v).unwrap_or_default();
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

/// Whether a schema violation at `pointer` is about the field at `failed`, which has been
/// reported already: at or below it, or its parent complaining that it is missing.
fn already_reported(failed: &str, pointer: &str, message: &str) -> bool {
    if pointer == failed || pointer.starts_with(&format!("{failed}/")) {
        return true;
    }
    match failed.rsplit_once('/') {
        Some((parent, member)) => parent == pointer && message.contains(&format!("\"{member}\"")),
        None => false,
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
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
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
