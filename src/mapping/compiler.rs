//! Compiling a mapping file: every check of its fields against the canonical schema and the
//! legacy format, each problem reported with its line, and the compiled [`Mapping`] that the
//! evaluator runs.

use super::convert::{Kind, Pattern, Table, Unknown};
use super::file::{FieldFile, LegacyFile, MappingFile, TableFile, UnknownFile, XmlFile, json_of};
use super::tree::LegacyPath;
use super::xml::{SoapVersion, XmlFormat};
use super::{convert, xml};
use crate::schema::Schemas;
use crate::source::{ConfigError, SourceFile};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

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
pub(super) enum Shape {
    Scalar,
    /// Repeated legacy elements ⇄ a canonical array of scalars.
    Repeated,
    /// One legacy string, split on the separator ⇄ a canonical array of scalars.
    Split(String),
    /// Repeated legacy elements ⇄ a canonical array of objects, each mapped by these fields.
    Objects(Vec<Field>),
    /// Several legacy places (the field's `legacy` is the first) ⇄ one canonical value, through
    /// a table keyed by all of them.
    Together(Vec<LegacyPath>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum LegacyType {
    String,
    Number,
    Boolean,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Field {
    pub(super) label: String,
    pub(super) canonical: Option<Vec<String>>,
    pub(super) legacy: Option<LegacyPath>,
    pub(super) required: bool,
    pub(super) default: Option<Value>,
    pub(super) constant: Option<Value>,
    pub(super) kind: Kind,
    pub(super) table: Option<Arc<Table>>,
    pub(super) trim: bool,
    pub(super) shape: Shape,
    pub(super) cdata: bool,
    pub(super) legacy_type: Option<LegacyType>,
    pub(super) header: bool,
    /// Written with the attempt's identity assertion (`source = "assertion"`), when there is one.
    pub(super) assertion: bool,
    /// The field applies only when every condition holds (`when`); empty: always.
    pub(super) when: Vec<Condition>,
    /// Where the field is in its file, for errors found after it compiled.
    pub(super) span: std::ops::Range<usize>,
}

/// One condition of a field's `when`: the value at a place on either side is one of these.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Condition {
    pub(super) on: ConditionOn,
    /// The values that satisfy it, as text.
    pub(super) any_of: Vec<String>,
}

/// Where a condition looks: both are relative to where the field is evaluated (the document,
/// or the item of an `each`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ConditionOn {
    Canonical(Vec<String>),
    Legacy(LegacyPath),
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
    pub(super) fields: Vec<Field>,
    pub(super) schemas: Schemas,
}

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

    let offset = match &parsed.timezone {
        None => crate::clock::cst(),
        Some(t) => convert::parse_offset(t.get_ref()).unwrap_or_else(|m| {
            errors.push(file.error_at_span("timezone", t.span(), m));
            crate::clock::cst()
        }),
    };
    let context = FieldContext {
        file,
        offset,
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
    // Keyed by several places when its values are lists; every value the same length.
    let width = match t.values.values().next() {
        Some(toml::Value::Array(first)) => first.len(),
        _ => 1,
    };
    if t.values
        .values()
        .any(|v| matches!(v, toml::Value::Array(_)))
        && width < 2
    {
        return Err("a list of legacy values has at least two (one for each legacy place); give a single value as itself".into());
    }
    let key_of = |what: &str, legacy: toml::Value| -> Result<(String, Value), String> {
        let legacy = json_of(legacy);
        match (&legacy, width) {
            (Value::Array(parts), w) if w > 1 && parts.len() == w => {
                let mut key = String::new();
                for (i, part) in parts.iter().enumerate() {
                    let text = convert::scalar_text(part).ok_or_else(|| {
                        format!("{what}: each value must be a string, number or boolean")
                    })?;
                    if text.contains(convert::KEY_SEPARATOR) {
                        return Err(format!("{what}: a value cannot hold U+001F"));
                    }
                    if i > 0 {
                        key.push(convert::KEY_SEPARATOR);
                    }
                    key.push_str(&text);
                }
                Ok((key, legacy))
            }
            (_, w) if w > 1 => Err(format!(
                "{what}: the table's values are lists of {w} (one per legacy place), so this must be one too"
            )),
            (Value::Array(_), _) => Err(format!(
                "{what}: the table's values are single values, so this must be one too"
            )),
            (scalar, _) => {
                let text = convert::scalar_text(scalar)
                    .ok_or_else(|| format!("{what} must be a string, number or boolean"))?;
                Ok((text, legacy))
            }
        }
    };
    let mut to_legacy = BTreeMap::new();
    let mut to_canonical = BTreeMap::new();
    for (code, legacy) in t.values {
        let (key, legacy) = key_of(&format!("value for `{code}`"), legacy)?;
        if let Some(other) = to_canonical.insert(key.clone(), code.clone()) {
            return Err(format!(
                "legacy value {} is given for both `{other}` and `{code}`, so it cannot be mapped back",
                shown(&key)
            ));
        }
        to_legacy.insert(code, legacy);
    }
    for (code, legacies) in t.also {
        if !to_legacy.contains_key(&code) {
            return Err(format!(
                "also names `{code}`, which has no entry in `values`: give it the legacy value to write back"
            ));
        }
        for legacy in legacies {
            let (key, _) = key_of(&format!("also for `{code}`"), legacy)?;
            if let Some(other) = to_canonical.insert(key.clone(), code.clone()) {
                return Err(format!(
                    "legacy value {} is given for both `{other}` and `{code}`, so it cannot be read as one",
                    shown(&key)
                ));
            }
        }
    }
    let unknown = match t.unknown {
        None => Unknown::Error,
        Some(UnknownFile::Rule(rule)) => match rule.as_str() {
            "error" => Unknown::Error,
            "keep" if width > 1 => {
                return Err("unknown = \"keep\" cannot pass several legacy values on as one code: use \"error\" or { canonical = …, legacy = [...] }".into());
            }
            "keep" => Unknown::Keep,
            other => {
                return Err(format!(
                    "unknown = `{other}`: expected \"error\", \"keep\" or {{ canonical = …, legacy = … }}"
                ));
            }
        },
        Some(UnknownFile::Fallback { canonical, legacy }) => Unknown::Fallback {
            canonical,
            legacy: key_of("unknown.legacy", legacy)?.1,
        },
    };
    Ok(Table {
        name: name.to_string(),
        to_legacy,
        to_canonical,
        unknown,
        width,
    })
}

/// A table key in an error: `` `09` ``, or `(09, 1)` for several places.
fn shown(key: &str) -> String {
    if key.contains(convert::KEY_SEPARATOR) {
        convert::shown_key(key)
    } else {
        format!("`{key}`")
    }
}

struct FieldContext<'a> {
    file: &'a SourceFile,
    /// The mapping's `timezone` (China time unless it says otherwise).
    offset: chrono::FixedOffset,
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
    let mut fields = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let key = format!("{key_prefix}[{i}]");
        if f.group.is_empty() {
            fields.extend(compile_field(cx, f, parent, &key, errors));
        } else {
            fields.extend(compile_group(cx, f, parent, &key, errors));
        }
    }
    fields
}

/// A group: its fields, each applying only when the group's `when` holds (and its own).
fn compile_group(
    cx: &FieldContext<'_>,
    f: FieldFile,
    parent: &[String],
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Field> {
    // A group has no place of its own: its errors point at its first field.
    let span = f
        .group
        .iter()
        .find_map(|m| {
            m.canonical
                .as_ref()
                .map(|c| c.span())
                .or_else(|| m.legacy.as_ref().map(|l| l.span()))
        })
        .unwrap_or(0..0);
    let own = [
        f.canonical.is_some(),
        f.legacy.is_some(),
        f.constant.is_some(),
        f.default.is_some(),
        f.table.is_some(),
        f.source.is_some(),
        f.kind.is_some(),
        !f.each.is_empty(),
    ];
    if own.iter().any(|o| *o) {
        errors.push(cx.file.error_at_span(
            key,
            span.clone(),
            "a group holds fields and has nothing of its own but `when`: move the rest into a field of its `group`",
        ));
    }
    let when = conditions(&f.when).unwrap_or_else(|problems| {
        for m in problems {
            errors.push(
                cx.file
                    .error_at_span(&format!("{key}.when"), span.clone(), m),
            );
        }
        Vec::new()
    });
    let mut members = compile_fields(cx, f.group, parent, &format!("{key}.group"), errors);
    for member in &mut members {
        member.when.extend(when.iter().cloned());
    }
    members
}

/// A `when` table compiled: each key a canonical pointer or a legacy path, each value one
/// value or a list of them. Every problem, if any.
fn conditions(when: &BTreeMap<String, toml::Value>) -> Result<Vec<Condition>, Vec<String>> {
    let mut compiled = Vec::with_capacity(when.len());
    let mut problems = Vec::new();
    for (key, value) in when {
        let on = if key.starts_with('/') {
            parse_pointer(key).map(ConditionOn::Canonical)
        } else {
            LegacyPath::parse(key).map(ConditionOn::Legacy)
        };
        let any_of: Option<Vec<String>> = match value {
            // As text, the way legacy and canonical values are compared.
            toml::Value::Array(items) => items
                .iter()
                .map(|v| convert::scalar_text(&json_of(v.clone())))
                .collect(),
            other => convert::scalar_text(&json_of(other.clone())).map(|t| vec![t]),
        };
        match (on, any_of) {
            (Ok(on), Some(any_of)) if !any_of.is_empty() => compiled.push(Condition { on, any_of }),
            (Err(m), _) => problems.push(format!("`{key}`: {m}")),
            _ => problems.push(format!(
                "`{key}`: give a value or a non-empty list of values (strings, numbers or booleans)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(compiled)
    } else {
        Err(problems)
    }
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
    let legacy_paths: Vec<LegacyPath> = match f.legacy.as_ref().map(|l| l.get_ref()) {
        None => Vec::new(),
        Some(LegacyFile::One(text)) => std::slice::from_ref(text)
            .iter()
            .filter_map(|t| LegacyPath::parse(t).map_err(|m| err(".legacy", m)).ok())
            .collect(),
        Some(LegacyFile::Several(texts)) => {
            if texts.len() < 2 {
                err(
                    ".legacy",
                    "a list of legacy paths names at least two places; give one path as itself"
                        .into(),
                );
            }
            texts
                .iter()
                .filter_map(|t| LegacyPath::parse(t).map_err(|m| err(".legacy", m)).ok())
                .collect()
        }
    };
    let together = matches!(
        f.legacy.as_ref().map(|l| l.get_ref()),
        Some(LegacyFile::Several(_))
    );
    let legacy = legacy_paths.first().cloned();
    let assertion = match f.source.as_deref() {
        None => false,
        Some("assertion") => {
            let mut wrong = Vec::new();
            if f.canonical.is_some() {
                wrong.push("canonical");
            }
            if f.constant.is_some() {
                wrong.push("constant");
            }
            if f.table.is_some() {
                wrong.push("table");
            }
            if f.kind.as_deref().is_some_and(|k| k != "string") {
                wrong.push("type");
            }
            if f.repeated || f.separator.is_some() || !f.each.is_empty() {
                wrong.push("repeated, separator or each");
            }
            if !wrong.is_empty() {
                err(
                    ".source",
                    format!(
                        "the assertion is written to the legacy side as it is: drop {}",
                        wrong.join(", ")
                    ),
                );
            }
            if f.legacy.is_none() {
                err(
                    ".legacy",
                    "the assertion needs a `legacy` path to go to".into(),
                );
            }
            true
        }
        Some(other) => {
            err(
                ".source",
                format!("unknown source `{other}`, expected `assertion`"),
            );
            false
        }
    };
    let when = conditions(&f.when).unwrap_or_else(|problems| {
        for m in problems {
            err(".when", m);
        }
        Vec::new()
    });
    match (&f.canonical, &f.legacy, &f.constant) {
        (None, None, _) => err("", "a field needs `canonical`, `legacy` or both".into()),
        (None, Some(_), None) if assertion => {}
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
    for p in &legacy_paths {
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
    if f.timezone.is_some() && f.kind.as_deref() != Some("datetime") {
        err(
            ".timezone",
            "applies to fields of type `datetime` only".to_string(),
        );
    }
    let kind = match (f.kind.as_deref().unwrap_or("string"), pattern) {
        ("string", _) => Some(Kind::String),
        ("integer", _) => Some(Kind::Integer),
        ("number", _) => Some(Kind::Number),
        ("boolean", _) => Some(Kind::Boolean),
        ("datetime", Some(p)) => {
            let offset = match &f.timezone {
                None => Some(cx.offset),
                Some(t) => match convert::parse_offset(t) {
                    Ok(offset) => Some(offset),
                    Err(m) => {
                        err(".timezone", m);
                        None
                    }
                },
            };
            offset.map(|offset| Kind::DateTime(p, offset))
        }
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
    match (together, &table) {
        (true, Some(t)) if t.width != legacy_paths.len() => err(
            ".table",
            format!(
                "table `{}` is keyed by {} legacy value(s), and this field reads {} places",
                t.name,
                t.width,
                legacy_paths.len()
            ),
        ),
        (true, None) => err(
            ".table",
            "several legacy places make one value through a table whose values are lists: name one"
                .into(),
        ),
        (true, _) if shapes.iter().any(|s| *s) || assertion => err(
            ".legacy",
            "several legacy places make one value: not with each, repeated, separator or source"
                .into(),
        ),
        (false, Some(t)) if t.width > 1 => err(
            ".table",
            format!(
                "table `{}` is keyed by {} legacy values: give `legacy` a list of {} paths",
                t.name, t.width, t.width
            ),
        ),
        _ => {}
    }
    let shape = if together {
        Shape::Together(legacy_paths)
    } else if !f.each.is_empty() {
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
        None if assertion => format!(
            "(identity assertion at {})",
            legacy.as_ref().map(|l| l.to_string()).unwrap_or_default()
        ),
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
        assertion,
        when,
        span,
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
        if let (Some(c), None, true) = (&f.canonical, &f.constant, f.when.is_empty()) {
            if let Some((_, other)) = seen.iter().find(|(s, _)| *s == c) {
                errors.push(file.error_at_span(
                    "field",
                    f.span.clone(),
                    format!(
                        "`{}` is mapped twice (also by `{other}`); give one of them `when` if each applies in its own cases",
                        f.label
                    ),
                ));
            }
            seen.push((c, &f.label));
        }
        if let Shape::Objects(nested) = &f.shape {
            check_duplicates(file, nested, errors);
        }
    }
}
