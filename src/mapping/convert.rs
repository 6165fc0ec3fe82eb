//! Value conversions between a legacy scalar and a canonical one: types, date/time patterns
//! such as `yyyyMMddHHmmss`, and value tables with an explicit rule for unknown values.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The canonical type of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    /// RFC 3339 with the +08:00 offset in canonical form; the pattern in legacy form, at the
    /// legacy system's offset (its times without one are read in it, and written in it).
    DateTime(Pattern, FixedOffset),
    /// `YYYY-MM-DD` in canonical form; the pattern in legacy form.
    Date(Pattern),
}

/// A legacy date/time pattern: `yyyy MM dd HH mm ss SSS` and literal characters, or
/// `rfc3339`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Rfc3339,
    /// A chrono format string translated from the pattern, and the pattern as written.
    Chrono {
        strftime: String,
        written: String,
        has_time: bool,
    },
}

impl Pattern {
    pub fn parse(written: &str) -> Result<Pattern, String> {
        if written.eq_ignore_ascii_case("rfc3339") {
            return Ok(Pattern::Rfc3339);
        }
        let tokens = [
            ("yyyy", "%Y"),
            ("SSS", "%3f"),
            ("MM", "%m"),
            ("dd", "%d"),
            ("HH", "%H"),
            ("mm", "%M"),
            ("ss", "%S"),
        ];
        let mut strftime = String::new();
        let mut rest = written;
        let mut seen = Vec::new();
        'outer: while !rest.is_empty() {
            for (token, spec) in tokens {
                if let Some(after) = rest.strip_prefix(token) {
                    strftime.push_str(spec);
                    seen.push(token);
                    rest = after;
                    continue 'outer;
                }
            }
            let c = rest.chars().next().expect("rest is not empty");
            if c.is_ascii_alphabetic() {
                return Err(format!(
                    "`{c}` in `{written}` is not a pattern letter (use yyyy MM dd HH mm ss SSS)"
                ));
            }
            if c == '%' {
                strftime.push_str("%%");
            } else {
                strftime.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
        for needed in ["yyyy", "MM", "dd"] {
            if !seen.contains(&needed) {
                return Err(format!("`{written}` has no `{needed}`"));
            }
        }
        let has_time = seen.contains(&"HH");
        if has_time && !(seen.contains(&"mm")) {
            return Err(format!("`{written}` has hours but no minutes (`mm`)"));
        }
        Ok(Pattern::Chrono {
            strftime,
            written: written.to_string(),
            has_time,
        })
    }

    fn describe(&self) -> &str {
        match self {
            Pattern::Rfc3339 => "RFC 3339",
            Pattern::Chrono { written, .. } => written,
        }
    }
}

fn cst() -> FixedOffset {
    crate::clock::cst()
}

/// Reads a `timezone`: `UTC` (or `Z`), or an offset `+HH:MM` / `-HH:MM` (China is `+08:00`).
pub fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let bad = || format!("`{text}` is not a timezone: write `+08:00`, `-05:00` or `UTC`");
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("0 is an offset"));
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// A value table: canonical code ⇄ legacy value, with what to do about values not in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    /// Canonical code (as text) → legacy value.
    pub to_legacy: BTreeMap<String, Value>,
    /// Legacy value (as text) → canonical code (as text). A table keyed by several legacy
    /// places keys it by their texts joined with [`KEY_SEPARATOR`].
    pub to_canonical: BTreeMap<String, String>,
    pub unknown: Unknown,
    /// How many legacy places make one key: 1, or the length of the lists its values are.
    pub width: usize,
}

/// Joins the texts of several legacy places into one table key: a character no value a table
/// lists may hold (the compiler checks), so two different lists never make one key.
pub const KEY_SEPARATOR: char = '\u{1F}';

/// A table key as people write it: the value, or `(09, 1)` for several places.
pub fn shown_key(key: &str) -> String {
    if key.contains(KEY_SEPARATOR) {
        // A place left out is empty text: shown as such, not as nothing.
        let parts: Vec<&str> = key
            .split(KEY_SEPARATOR)
            .map(|p| if p.is_empty() { "\"\"" } else { p })
            .collect();
        format!("({})", parts.join(", "))
    } else {
        key.to_string()
    }
}

/// What a table does with a value it does not list.
#[derive(Debug, Clone, PartialEq)]
pub enum Unknown {
    /// Refuse the value.
    Error,
    /// Pass it through unchanged.
    Keep,
    /// Use these instead.
    Fallback { canonical: String, legacy: Value },
}

/// Text of a scalar, as tables compare values.
pub fn scalar_text(value: &Value) -> Option<String> {
    scalar_str(value).map(Cow::into_owned)
}

/// [`scalar_text`], borrowed when the scalar is a string.
fn scalar_str(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Appends [`scalar_text`] of `value` (nothing for a value that is no scalar).
pub fn push_scalar_text(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        _ => {}
    }
}

impl Table {
    fn legacy_to_canonical(&self, legacy: &str) -> Result<String, String> {
        if let Some(code) = self.to_canonical.get(legacy) {
            return Ok(code.clone());
        }
        match &self.unknown {
            Unknown::Error if self.width > 1 => Err(format!(
                "{} is not in table `{}` (known: {})",
                shown_key(legacy),
                self.name,
                self.to_canonical
                    .keys()
                    .map(|k| shown_key(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Unknown::Error => Err(format!(
                "value is not in table `{}` (known: {})",
                self.name,
                self.to_canonical
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Unknown::Keep => Ok(legacy.to_string()),
            Unknown::Fallback { canonical, .. } => Ok(canonical.clone()),
        }
    }

    fn canonical_to_legacy(&self, code: &str) -> Result<Value, String> {
        if let Some(v) = self.to_legacy.get(code) {
            return Ok(v.clone());
        }
        match &self.unknown {
            Unknown::Error => Err(format!(
                "value is not in table `{}` (known: {})",
                self.name,
                self.to_legacy
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Unknown::Keep => Ok(Value::String(code.to_string())),
            Unknown::Fallback { legacy, .. } => Ok(legacy.clone()),
        }
    }
}

/// Legacy scalar → canonical value of `kind`, through `table` when given. The scalar is
/// taken, so text that stays text is moved, not copied.
pub fn to_canonical(raw: Value, kind: &Kind, table: Option<&Table>) -> Result<Value, String> {
    if !matches!(raw, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
        return Err("not a scalar value".into());
    }
    let source = match table {
        Some(table) => {
            Value::String(table.legacy_to_canonical(&scalar_str(&raw).unwrap_or_default())?)
        }
        None => raw,
    };
    let text = scalar_str(&source).unwrap_or_default();
    match kind {
        Kind::String => Ok(match source {
            Value::String(s) => Value::String(s),
            _ => Value::String(text.into_owned()),
        }),
        Kind::Integer => match &source {
            Value::Number(n) if n.is_i64() => Ok(source.clone()),
            _ => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| "not an integer".to_string()),
        },
        Kind::Number => match &source {
            Value::Number(_) => Ok(source.clone()),
            // A whole number stays whole: `8650` is 8650 as the platform writes it, not
            // 8650.0, so a canonical document maps to the system's text and back unchanged.
            _ => match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(n), _) => Ok(Value::from(n)),
                (_, Ok(n)) => Ok(Value::from(n)),
                _ => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| "not a number".to_string()),
            },
        },
        Kind::Boolean => match &source {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            _ if text.eq_ignore_ascii_case("true") || text == "1" => Ok(Value::Bool(true)),
            _ if text.eq_ignore_ascii_case("false") || text == "0" => Ok(Value::Bool(false)),
            _ => Err("not a boolean (true/false/1/0, or map it with a table)".into()),
        },
        Kind::DateTime(p, offset) => parse_datetime(&text, p, *offset).map(|t| {
            Value::String(
                t.with_timezone(&cst())
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
            )
        }),
        Kind::Date(p) => {
            parse_date(&text, p).map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
        }
    }
}

/// Canonical value of `kind` → legacy scalar, through `table` when given.
pub fn to_legacy(value: &Value, kind: &Kind, table: Option<&Table>) -> Result<Value, String> {
    let check_kind = || -> Result<(), String> {
        let ok = match kind {
            Kind::String | Kind::DateTime(..) | Kind::Date(_) => value.is_string(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Number => value.is_number(),
            Kind::Boolean => value.is_boolean(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {}", kind_name(kind)))
        }
    };
    check_kind()?;
    if let Some(table) = table {
        let code = scalar_str(value).ok_or("not a scalar value")?;
        return table.canonical_to_legacy(&code);
    }
    match kind {
        Kind::DateTime(p, offset) => {
            let text = value.as_str().unwrap_or_default();
            let t = DateTime::parse_from_rfc3339(text)
                .map_err(|_| "not an RFC 3339 date-time".to_string())?
                .with_timezone(offset);
            Ok(Value::String(match p {
                Pattern::Rfc3339 => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                Pattern::Chrono { strftime, .. } => t.format(strftime).to_string(),
            }))
        }
        Kind::Date(p) => {
            let text = value.as_str().unwrap_or_default();
            let d = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| "not a date (YYYY-MM-DD)".to_string())?;
            Ok(Value::String(match p {
                Pattern::Rfc3339 => d.format("%Y-%m-%d").to_string(),
                Pattern::Chrono { strftime, .. } => d.format(strftime).to_string(),
            }))
        }
        _ => Ok(value.clone()),
    }
}

fn parse_datetime(
    text: &str,
    pattern: &Pattern,
    offset: FixedOffset,
) -> Result<DateTime<FixedOffset>, String> {
    let fail = || format!("not a date-time in the form {}", pattern.describe());
    match pattern {
        Pattern::Rfc3339 => DateTime::parse_from_rfc3339(text).map_err(|_| fail()),
        Pattern::Chrono {
            strftime,
            has_time: true,
            ..
        } => {
            let naive = NaiveDateTime::parse_from_str(text, strftime).map_err(|_| fail())?;
            offset.from_local_datetime(&naive).single().ok_or_else(fail)
        }
        Pattern::Chrono {
            strftime,
            has_time: false,
            ..
        } => {
            let date = NaiveDate::parse_from_str(text, strftime).map_err(|_| fail())?;
            let naive = date.and_hms_opt(0, 0, 0).ok_or_else(fail)?;
            offset.from_local_datetime(&naive).single().ok_or_else(fail)
        }
    }
}

fn parse_date(text: &str, pattern: &Pattern) -> Result<NaiveDate, String> {
    let fail = || format!("not a date in the form {}", pattern.describe());
    match pattern {
        Pattern::Rfc3339 => NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| fail()),
        Pattern::Chrono {
            strftime, has_time, ..
        } => {
            if *has_time {
                NaiveDateTime::parse_from_str(text, strftime)
                    .map(|t| t.date())
                    .map_err(|_| fail())
            } else {
                NaiveDate::parse_from_str(text, strftime).map_err(|_| fail())
            }
        }
    }
}

pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::String => "a string",
        Kind::Integer => "an integer",
        Kind::Number => "a number",
        Kind::Boolean => "a boolean",
        Kind::DateTime(..) => "an RFC 3339 date-time",
        Kind::Date(_) => "a date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_legacy_times_become_rfc3339_in_china_time() {
        let kind = Kind::DateTime(Pattern::parse("yyyyMMddHHmmss").unwrap(), cst());
        let canonical = to_canonical(json!("20261120093000"), &kind, None).unwrap();
        assert_eq!(canonical, json!("2026-11-20T09:30:00+08:00"));
        assert_eq!(
            to_legacy(&canonical, &kind, None).unwrap(),
            json!("20261120093000")
        );
        // Another offset is converted to China time on the way out.
        assert_eq!(
            to_legacy(&json!("2026-11-20T01:30:00Z"), &kind, None).unwrap(),
            json!("20261120093000")
        );
        assert!(to_canonical(json!("20261320093000"), &kind, None).is_err());
        assert!(to_canonical(json!("2026-11-20"), &kind, None).is_err());
    }

    #[test]
    fn patterns_are_checked() {
        assert!(Pattern::parse("yyyy-MM-dd HH:mm:ss.SSS").is_ok());
        assert!(Pattern::parse("yyyy年MM月dd日").is_ok());
        assert!(Pattern::parse("yyyyMM").is_err());
        assert!(Pattern::parse("yyyy-MM-dd hh").is_err());
        let date = Kind::Date(Pattern::parse("yyyy年MM月dd日").unwrap());
        assert_eq!(
            to_canonical(json!("2026年11月20日"), &date, None).unwrap(),
            json!("2026-11-20")
        );
        assert_eq!(
            to_legacy(&json!("2026-11-20"), &date, None).unwrap(),
            json!("2026年11月20日")
        );
    }

    #[test]
    fn tables_map_both_ways_with_an_explicit_unknown_rule() {
        let mut table = Table {
            name: "kind".into(),
            to_legacy: [
                ("1".to_string(), json!("GR")),
                ("2".to_string(), json!("QY")),
            ]
            .into(),
            to_canonical: [
                ("GR".to_string(), "1".to_string()),
                ("QY".to_string(), "2".to_string()),
            ]
            .into(),
            unknown: Unknown::Error,
            width: 1,
        };
        assert_eq!(
            to_canonical(json!("QY"), &Kind::String, Some(&table)).unwrap(),
            json!("2")
        );
        assert_eq!(
            to_legacy(&json!("1"), &Kind::String, Some(&table)).unwrap(),
            json!("GR")
        );
        assert!(to_canonical(json!("XX"), &Kind::String, Some(&table)).is_err());
        table.unknown = Unknown::Keep;
        assert_eq!(
            to_canonical(json!("XX"), &Kind::String, Some(&table)).unwrap(),
            json!("XX")
        );
        table.unknown = Unknown::Fallback {
            canonical: "9".into(),
            legacy: json!("QT"),
        };
        assert_eq!(
            to_canonical(json!("XX"), &Kind::String, Some(&table)).unwrap(),
            json!("9")
        );
        assert_eq!(
            to_legacy(&json!("7"), &Kind::String, Some(&table)).unwrap(),
            json!("QT")
        );
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(
            to_canonical(json!(" 12 ".trim()), &Kind::Integer, None).unwrap(),
            json!(12)
        );
        assert_eq!(
            to_canonical(json!(12), &Kind::String, None).unwrap(),
            json!("12")
        );
        assert_eq!(
            to_canonical(json!("1"), &Kind::Boolean, None).unwrap(),
            json!(true)
        );
        assert!(to_canonical(json!("是"), &Kind::Boolean, None).is_err());
        assert!(to_canonical(json!("1.5"), &Kind::Integer, None).is_err());
        assert_eq!(
            to_canonical(json!("1.5"), &Kind::Number, None).unwrap(),
            json!(1.5)
        );
        assert!(to_legacy(&json!("x"), &Kind::Integer, None).is_err());
    }

    #[test]
    fn a_whole_number_reads_as_a_whole_number_and_maps_back_as_it_came() {
        for (text, canonical) in [
            ("8650", json!(8650)),
            ("-12", json!(-12)),
            ("18446744073709551615", json!(u64::MAX)),
            ("12850.5", json!(12850.5)),
            ("8650.0", json!(8650.0)),
        ] {
            let read = to_canonical(json!(text), &Kind::Number, None).unwrap();
            assert_eq!(read, canonical, "{text}");
            let written = to_legacy(&read, &Kind::Number, None).unwrap();
            assert_eq!(scalar_text(&written).as_deref(), Some(text), "{text}");
        }
        assert!(to_canonical(json!("NaN"), &Kind::Number, None).is_err());
        assert!(to_canonical(json!("八千"), &Kind::Number, None).is_err());
    }
}
