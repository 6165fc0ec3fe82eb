//! Personal data in text the hub passes on but did not write: department systems' error answers,
//! handlers' opinions and reasons. Such text is masked before anyone sees it (logs, the
//! supervision feed, the application view, delivery records): the values the hub knows belong
//! to the application's people ([`PersonalValues`]) wherever they stand, then what looks like
//! personal data by its shape ([`scrub`]); once as the text came and once more after
//! [`decode`] (JSON `\u` escapes, XML character references, percent-encoding, full-width digits
//! and letters), so that nothing escaped slips past.
//!
//! What the patterns deliberately leave: the hub's and systems' ids (application, event,
//! delivery, item codes, e-license ids), dates and times, and organisations' unified social
//! credit codes. An organisation's USCC is a public registry identifier, and a department's
//! is how supervisors tell departments apart; the applicant organisation's own USCC is masked
//! as a known value wherever the hub knows the application, and the USCC of an individual
//! business (个体工商户, category `92`), which is registered to a person, is masked by its shape.

use crate::ids::{has_citizen_id_layout, mask_id, mask_name};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::ops::Range;
use std::sync::LazyLock;

/// What a known value is, which decides how it is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Name,
    Identifier,
    Phone,
    Email,
    Address,
}

/// Where an application holds personal data (see `schemas/application.schema.json`).
const PERSONAL_POINTERS: &[(&str, Kind)] = &[
    ("/applicant/name", Kind::Name),
    ("/applicant/id_number", Kind::Identifier),
    ("/applicant/legal_representative/name", Kind::Name),
    (
        "/applicant/legal_representative/id_number",
        Kind::Identifier,
    ),
    ("/contact/name", Kind::Name),
    ("/contact/phone", Kind::Phone),
    ("/contact/address", Kind::Address),
    ("/contact/email", Kind::Email),
];

/// The personal values one application carries (its applicant's name and ID number, the legal
/// representative's, the contact's name, phone, address and e-mail, and the addresses in its
/// form), to mask them in text about that application wherever they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalValues {
    values: Vec<(Kind, String)>,
}

impl PersonalValues {
    /// The personal values of a canonical application.
    pub fn of_application(application: &Value) -> PersonalValues {
        let mut values: Vec<(Kind, String)> = PERSONAL_POINTERS
            .iter()
            .filter_map(|(pointer, kind)| {
                let text = application.pointer(pointer)?.as_str()?;
                Some((*kind, text.to_string()))
            })
            .collect();
        // Item forms differ; an address in one is named as such (`mailing_address`, …).
        if let Some(Value::Object(form)) = application.get("form") {
            for (key, value) in form {
                if let Some(text) = value.as_str().filter(|_| key.contains("address")) {
                    values.push((Kind::Address, text.to_string()));
                }
            }
        }
        // A landline is often written without its area code.
        let locals: Vec<(Kind, String)> = values
            .iter()
            .filter(|(kind, _)| *kind == Kind::Phone)
            .filter_map(|(_, phone)| landline_local_number(phone))
            .map(|local| (Kind::Phone, local))
            .collect();
        values.extend(locals);
        values.retain(|(_, v)| v.trim().chars().count() >= 2);
        // Longest first, so that a name inside an address goes with the address.
        values.sort_by(|(ka, a), (kb, b)| b.len().cmp(&a.len()).then(a.cmp(b)).then(ka.cmp(kb)));
        values.dedup_by(|(_, a), (_, b)| a == b);
        PersonalValues { values }
    }

    /// The personal values of an application stored as JSON text; none if it is not readable.
    pub fn of_application_text(application: &str) -> PersonalValues {
        serde_json::from_str(application)
            .map(|v: Value| PersonalValues::of_application(&v))
            .unwrap_or_default()
    }

    /// `text` decoded, with these values and whatever looks like personal data masked.
    ///
    /// ```
    /// use tongban::personal::PersonalValues;
    /// let application = serde_json::json!({"applicant": {"name": "张三丰"}});
    /// let said = r#"{"msg":"\u5f20\u4e09\u4e30 13800138000"}"#;
    /// assert_eq!(
    ///     PersonalValues::of_application(&application).mask_text(said),
    ///     r#"{"msg":"张** 138****8000"}"#
    /// );
    /// ```
    pub fn mask_text(&self, text: &str) -> String {
        // Masked before decoding as well, so that decoding cannot break a number that was in
        // clear into pieces no pattern knows (`%21` before an ID number's `0102…`).
        let raw = self.mask_plain(text);
        self.mask_plain(&decode(&raw))
    }

    /// `text` with these values and whatever looks like personal data masked, undecoded.
    fn mask_plain(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for (kind, value) in &self.values {
            masked = replace_ignoring_ascii_case(&masked, value, |found| mask_as(*kind, found));
        }
        scrub(&masked)
    }

    /// A canonical case event as those beyond its department see it (the supervision feed,
    /// the application view): the handler's name masked, the handler's id and department and
    /// the free texts (opinion, reasons) masked by [`mask_text`](PersonalValues::mask_text).
    /// A body that is not a JSON object becomes `{}` rather than being passed on unread.
    pub fn masked_event(&self, body: &str) -> Value {
        let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(body) else {
            return Value::Object(serde_json::Map::new());
        };
        let mask_at = |v: Option<&mut Value>| {
            if let Some(Value::String(text)) = v {
                *text = self.mask_text(text);
            }
        };
        if let Some(Value::Object(handler)) = event.get_mut("handler") {
            if let Some(Value::String(name)) = handler.get_mut("name") {
                *name = mask_name(name);
            }
            mask_at(handler.get_mut("id"));
            mask_at(handler.get_mut("department"));
        }
        mask_at(event.get_mut("opinion"));
        for part in ["supplement", "special_procedure", "completion"] {
            if let Some(Value::Object(detail)) = event.get_mut(part) {
                mask_at(detail.get_mut("reason"));
            }
        }
        Value::Object(event)
    }
}

/// The number of a landline without its area code (`024-23456789` → `23456789`): 3-digit
/// area codes are 010 and 02X, the others have 4 digits.
fn landline_local_number(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let b = digits.as_bytes();
    if b.len() < 10 || b[0] != b'0' {
        return None;
    }
    let area = if matches!(b[1], b'1' | b'2') { 3 } else { 4 };
    let local = &digits[area..];
    (7..=8).contains(&local.len()).then(|| local.to_string())
}

fn mask_as(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Name | Kind::Address => mask_name(value),
        Kind::Identifier => mask_id(value),
        Kind::Phone => mask_digits(value, phone_head(value)),
        Kind::Email => mask_email(value),
    }
}

/// How many leading digits of a phone number stay: a mobile's network prefix (3), a
/// landline's area code, nothing of a number without one.
fn phone_head(phone: &str) -> usize {
    let digits: Vec<u8> = phone.bytes().filter(u8::is_ascii_digit).collect();
    match digits.as_slice() {
        [b'1', ..] if digits.len() == 11 => 3,
        [b'0', b'1' | b'2', ..] => 3,
        [b'0', ..] => 4,
        _ => 0,
    }
}

/// `text` with its digits after the first `head` and before the last four replaced by `*`,
/// everything else (separators, a country code's `+`) as it was.
fn mask_digits(text: &str, head: usize) -> String {
    let total = text.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen > head && seen + 4 <= total {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// An e-mail address with its local part masked like a name: `z*******@example.com`.
fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}@{domain}", mask_name(local)),
        None => mask_name(address),
    }
}

/// `text` with every occurrence of `value` (ASCII letters in either case) replaced by its
/// `masked` form.
fn replace_ignoring_ascii_case(text: &str, value: &str, masked: impl Fn(&str) -> String) -> String {
    // ASCII case changes keep byte positions, so matches in the lowered text are matches here.
    let lowered = text.to_ascii_lowercase();
    let needle = value.to_ascii_lowercase();
    if needle.is_empty() || !lowered.contains(&needle) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, _) in lowered.match_indices(&needle) {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(&masked(&text[start..start + needle.len()]));
        at = start + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// The escapes a system's answer may carry personal data in: a JSON surrogate pair, a JSON
/// `\u` escape, an XML character reference (hexadecimal or decimal), a run of percent-encoded
/// bytes.
static ESCAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u([0-9a-f]{4})|&#x([0-9a-f]{1,6});|&#([0-9]{1,7});|(?:%[0-9a-f]{2})+",
    )
    .expect("the escape pattern compiles")
});

/// How many times escapes are decoded, for text escaped twice (`%26%23x5f20%3B`).
const DECODE_ROUNDS: usize = 3;

/// `text` as a reader would see it: JSON `\u` escapes, XML character references and
/// percent-encoded UTF-8 decoded (an escape that decodes to nothing valid stays as it was),
/// full-width digits, letters and `@+-` made ASCII, and control characters a decoded escape
/// brought in made spaces (so a decoded line break cannot start a false log line).
pub fn decode(text: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(text);
    for _ in 0..DECODE_ROUNDS {
        let next = ESCAPE.replace_all(&current, |c: &regex::Captures| {
            let whole = &c[0];
            let hex = |i: usize| {
                c.get(i)
                    .and_then(|m| u32::from_str_radix(m.as_str(), 16).ok())
            };
            let decoded: Option<String> = if let (Some(high), Some(low)) = (hex(1), hex(2)) {
                char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).map(String::from)
            } else if let Some(unit) = hex(3).or_else(|| hex(4)) {
                char::from_u32(unit).map(String::from)
            } else if let Some(decimal) = c.get(5) {
                decimal
                    .as_str()
                    .parse()
                    .ok()
                    .and_then(char::from_u32)
                    .map(String::from)
            } else {
                let bytes: Option<Vec<u8>> = whole
                    .split('%')
                    .skip(1)
                    .map(|h| u8::from_str_radix(h, 16).ok())
                    .collect();
                bytes.and_then(|b| String::from_utf8(b).ok())
            };
            match decoded {
                Some(text) => text
                    .chars()
                    .map(|ch| if ch.is_control() { ' ' } else { ch })
                    .collect(),
                None => whole.to_string(),
            }
        });
        match next {
            Cow::Borrowed(_) => break,
            Cow::Owned(changed) => current = Cow::Owned(changed),
        }
    }
    if current.chars().any(|c| full_width_ascii(c).is_some()) {
        current = Cow::Owned(
            current
                .chars()
                .map(|c| full_width_ascii(c).unwrap_or(c))
                .collect(),
        );
    }
    current
}

/// The ASCII form of a full-width digit, letter, `＠`, `＋` or `－`.
fn full_width_ascii(c: char) -> Option<char> {
    match c {
        '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' | '＠' | '＋' | '－' => {
            char::from_u32(c as u32 - 0xFEE0)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns

static CITIZEN_ID: LazyLock<Regex> = LazyLock::new(|| pattern(r"[0-9]{17}[0-9Xx]|[0-9]{15}"));
/// The start of a citizen ID number cut short by an excerpt's `…`.
static CUT_CITIZEN_ID: LazyLock<Regex> = LazyLock::new(|| pattern(r"[0-9]{14,17}…"));
/// An individual business's USCC (个体工商户: registered by market regulation, category 2).
static INDIVIDUAL_BUSINESS_USCC: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"92[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}"));
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"));
/// A mainland mobile number, with or without the country code, in one piece or in 3-4-4
/// groups.
static MOBILE: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?:(?:\+|00)?86[- ]?)?1[3-9][0-9][- ]?[0-9]{4}[- ]?[0-9]{4}"));
/// A landline with its area code: `(024)23456789`, `（024）2345678`, `024-23456789`,
/// `024 23456789`, `02423456789`.
static LANDLINE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"[(（]0[0-9]{2,3}[)）][- ]?[0-9]{7,8}|0[0-9]{2,3}[- ][0-9]{7,8}|0[1-9][0-9]{9,10}")
});
/// What follows one of these words is an address, up to the end of the clause.
static ADDRESS_AFTER_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?:(?:通讯|联系|送达|邮寄|家庭|居住|户籍|经营|注册)?地址|住址|住所|居住地|户籍地|家住|现住|住在|居住在|居住于)[ \t]*(?:[:：]|为|是)?[ \t]*(?P<run>[^，,。；;、！!？?\n\r\x22“”'（）()\[\]【】<>]{2,80})",
    )
});
/// Characters an address names: one of these makes a run after a keyword an address (a
/// server's 地址 in an error message has none).
const ADDRESS_CHARACTERS: &[char] = &[
    '省', '市', '区', '县', '镇', '乡', '村', '路', '街', '巷', '道', '弄', '号', '室', '栋', '幢',
    '楼', '组',
];
/// A street address without a keyword: the divisions and street before a house number, and the
/// building, unit and room after it. Words that cannot be part of a place name stop it from
/// reaching back into the sentence.
static STREET_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"[\p{Han}--[在于至住为是的及与从到往址所向经对核查申请人其位]]{1,16}?(?:路|街|道|巷|胡同|弄)[ \t]*[0-9]+[ \t]*号(?:[ \t]*[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+|[ \t]*[0-9A-Za-z]+[ \t]*(?:栋|幢|座|楼|层|单元|室|户))*",
    )
});

fn pattern(source: &str) -> Regex {
    Regex::new(source).expect("a personal data pattern compiles")
}

/// One stretch of text to replace.
struct Span {
    range: Range<usize>,
    masked: String,
}

/// Text about no application in particular (a refused message's reasons, a consumer's error),
/// decoded and masked by shape: [`PersonalValues::mask_text`] without known values.
pub fn mask_text(text: &str) -> String {
    PersonalValues::default().mask_text(text)
}

/// Masks what looks like personal data in free text, by its shape alone: citizen ID numbers
/// (18 characters with any check character, the 15 digits of first-generation cards, and the
/// start of one an excerpt cut short), individual businesses' USCCs, e-mail addresses (the
/// local part), mobile numbers (`13800138000`, `138-0013-8000`, `138 0013 8000`,
/// `+86 13800138000`, `8613800138000`), landlines with an area code, and addresses: what
/// follows 地址, 住址, 住所 and the like, and a street with a house number (…路 1 号 …). Text
/// the hub knows more about goes through [`PersonalValues::mask_text`], which also decodes it.
///
/// ```
/// let said = "SFZHM 13043419840726291X 与 138-0013-8000 不符";
/// assert_eq!(
///     tongban::personal::scrub(said),
///     "SFZHM 1304**********291X 与 138-****-8000 不符"
/// );
/// ```
pub fn scrub(text: &str) -> String {
    let mut spans = Vec::new();
    for range in standalone(&CITIZEN_ID, text) {
        if has_citizen_id_layout(&text[range.clone()]) {
            spans.push(Span {
                masked: mask_id(&text[range.clone()]),
                range,
            });
        }
    }
    for range in standalone(&CUT_CITIZEN_ID, text) {
        let digits = text[range.clone()].trim_end_matches('…');
        if has_citizen_id_layout(&format!("{}0000", &digits[..14])) {
            spans.push(Span {
                masked: format!("{}{}…", &digits[..4], "*".repeat(digits.len() - 4)),
                range,
            });
        }
    }
    for range in standalone(&INDIVIDUAL_BUSINESS_USCC, text) {
        spans.push(Span {
            masked: mask_id(&text[range.clone()]),
            range,
        });
    }
    for m in EMAIL.find_iter(text) {
        spans.push(Span {
            masked: mask_email(m.as_str()),
            range: m.range(),
        });
    }
    for range in standalone(&MOBILE, text) {
        spans.push(Span {
            masked: mask_digits(&text[range.clone()], mobile_head(&text[range.clone()])),
            range,
        });
    }
    for range in standalone(&LANDLINE, text) {
        let number = &text[range.clone()];
        spans.push(Span {
            masked: mask_digits(number, area_code_length(number)),
            range,
        });
    }
    for c in ADDRESS_AFTER_KEYWORD.captures_iter(text) {
        let run = c.name("run").expect("the pattern has a run");
        let address = run.as_str().trim_end();
        if address.contains(ADDRESS_CHARACTERS) {
            spans.push(Span {
                masked: mask_name(address),
                range: run.start()..run.start() + address.len(),
            });
        }
    }
    for m in STREET_ADDRESS.find_iter(text) {
        spans.push(Span {
            masked: mask_name(m.as_str()),
            range: m.range(),
        });
    }
    if spans.is_empty() {
        return text.to_string();
    }
    // Where spans overlap, the one that starts first wins, and of those the longest.
    spans.sort_by_key(|s| (s.range.start, Reverse(s.range.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        if span.range.start < at {
            continue;
        }
        out.push_str(&text[at..span.range.start]);
        out.push_str(&span.masked);
        at = span.range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The matches of `re` in `text` that are not part of a longer word: an ASCII letter or digit
/// neither just before a match that starts with one nor just after a match that ends with one.
fn standalone(re: &Regex, text: &str) -> Vec<Range<usize>> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(m) = re.find_at(text, at) {
        let (before, first) = (
            text[..m.start()].chars().next_back(),
            m.as_str().chars().next(),
        );
        let (last, after) = (
            m.as_str().chars().next_back(),
            text[m.end()..].chars().next(),
        );
        if (alnum(first) && alnum(before)) || (alnum(last) && alnum(after)) {
            // Perhaps a shorter match starts inside this one.
            at = m.start() + first.map_or(1, char::len_utf8);
        } else {
            found.push(m.range());
            at = m.end();
        }
        if at > text.len() {
            break;
        }
    }
    found
}

/// How many digits of a matched mobile number stay at its start: a country code's and the
/// network prefix.
fn mobile_head(number: &str) -> usize {
    number.chars().filter(char::is_ascii_digit).count() - 11 + 3
}

/// The area code's length in a matched landline: the digits before its first separator, or by
/// the numbering plan (010 and 02X have three digits) when it has none.
fn area_code_length(number: &str) -> usize {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let separated = number
        .trim_start_matches(['(', '（'])
        .find(|c: char| !c.is_ascii_digit());
    match separated {
        Some(len) if len < digits.len() => len,
        _ if matches!(digits.get(1), Some('1' | '2')) => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A valid citizen ID number (check character by GB 11643) from its first 17 digits.
    fn citizen_id(first17: &str) -> String {
        let check = crate::ids::citizen_id_check_char(first17.as_bytes()).unwrap();
        format!("{first17}{check}")
    }

    /// The same number with another check character.
    fn with_wrong_check(id: &str) -> String {
        let wrong = if id.ends_with('0') { '1' } else { '0' };
        format!("{}{wrong}", &id[..17])
    }

    /// 王小明, an applicant, and 沈阳示例餐饮管理有限公司, another, with what the hub knows of them.
    fn application() -> Value {
        json!({
            "applicant": {
                "kind": "2",
                "name": "沈阳示例餐饮管理有限公司",
                "id_type": "001",
                "id_number": "91210102MA0Y7K3L23",
                "legal_representative": { "name": "王小明", "id_number": citizen_id("21010419880615123") },
            },
            "contact": {
                "name": "李晓红",
                "phone": "024-23456789",
                "address": "辽宁省沈阳市沈河区测试街 6 号 3-2-1",
                "email": "Wang.XM@example.com",
            },
            "form": { "mailing_address": "大连市中山区人民路 25 号 1201 室" },
        })
    }

    /// The corpus: each line a text as a system may send it, and what must not be left of it in
    /// clear once masked with the application's values.
    fn corpus() -> Vec<(String, Vec<String>)> {
        let wang = citizen_id("21010419880615123");
        let zhao = citizen_id("21020219750304201");
        let qian15 = "210102750304201".to_string();
        let mut lines: Vec<(String, Vec<String>)> = vec![
            // The applicant's own name and organisation in free text.
            (
                "经核查，王小明提交的材料齐全".into(),
                vec!["王小明".into(), "小明".into()],
            ),
            (
                "沈阳示例餐饮管理有限公司未提供场地证明".into(),
                vec!["示例餐饮管理有限公司".into()],
            ),
            ("联系人李晓红未接电话".into(), vec!["晓红".into()]),
            // ID numbers: valid, with a wrong check character, lower-case x, 15 digits, cut short.
            (
                format!("法定代表人身份证号{wang}有误"),
                vec![wang[4..14].into()],
            ),
            (
                format!("证件号码 {} 校验失败", with_wrong_check(&zhao)),
                vec![zhao[4..14].into()],
            ),
            (
                "身份证21010219900101123x无效".into(),
                vec!["2101021990010".into()],
            ),
            (format!("旧证号{qian15}已作废"), vec![qian15[4..11].into()]),
            (
                format!("HTTP 400: 申请人{}…", &zhao[..16]),
                vec![zhao[4..14].into()],
            ),
            // Mobiles in every way people write them.
            (
                "请联系13800001111".into(),
                vec!["13800001111".into(), "0000111".into()],
            ),
            ("手机 138-0000-1111 停机".into(), vec!["0000".into()]),
            ("手机 138 0000 1111 停机".into(), vec!["0000".into()]),
            ("tel:8613800001111".into(), vec!["0000111".into()]),
            ("+86 138 0000 1111".into(), vec!["0000".into()]),
            ("致电+86-13800001111未接".into(), vec!["0000111".into()]),
            (
                "手机号１３８００００１１１１".into(),
                vec!["0000".into(), "００００".into()],
            ),
            // Landlines with their area codes, and the contact's own without it.
            ("座机024-23456789".into(), vec!["2345".into()]),
            ("座机(024)23456789".into(), vec!["2345".into()]),
            ("座机（0411）8765432转".into(), vec!["876".into()]),
            ("座机 010 87654321".into(), vec!["8765".into()]),
            ("座机02423456789".into(), vec!["2345".into()]),
            ("电话23456789无人接听".into(), vec!["23456789".into()]),
            // E-mail addresses, the applicant's in another case too.
            (
                "回执已发至wang.xm@example.com".into(),
                vec!["wang.xm".into(), "ang.xm".into()],
            ),
            (
                "请发邮件至 zhao_75@mail.example.cn 补充".into(),
                vec!["zhao_75".into()],
            ),
            // Postal addresses: the known ones, after a keyword, and by a street and number.
            (
                "申请人住址：辽宁省沈阳市沈河区测试街 6 号 3-2-1，经核实无误".into(),
                vec!["测试街".into(), "3-2-1".into()],
            ),
            (
                "邮寄至大连市中山区人民路 25 号 1201 室".into(),
                vec!["人民路".into(), "1201".into()],
            ),
            (
                "送达地址为辽宁省鞍山市铁东区园林路8号2单元".into(),
                vec!["园林路".into(), "铁东区园".into()],
            ),
            (
                "家住沈阳市皇姑区黄河北大街１２号".into(),
                vec!["黄河北大街".into()],
            ),
            (
                "申请人在沈阳市和平区南京北街 52 号 3-1-2 经营".into(),
                vec!["和平区南京北街".into(), "3-1-2".into()],
            ),
            (
                "户籍地：铁岭县腰堡镇王千户村3组".into(),
                vec!["王千户村".into()],
            ),
            // An individual business's USCC identifies its owner.
            (
                "个体户92210102MA0Y7K3L2X未年检".into(),
                vec!["MA0Y7K3L".into()],
            ),
            // The applicant organisation's USCC, in either case.
            (
                "统一社会信用代码 91210102ma0y7k3l23 与名称不符".into(),
                vec!["ma0y7k3l".into()],
            ),
        ];
        // What systems escape: JSON, XML character references, percent-encoding, twice.
        let escaped_id: String = wang
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        lines.push((
            format!(r#"{{"msg":"\u738b\u5c0f\u660e \u8eab\u4efd\u8bc1 {escaped_id}"}}"#),
            vec![
                "王小明".into(),
                r"\u738b".into(),
                "19880615".into(),
                "u0031\\u0039\\u0038\\u0038".into(),
            ],
        ));
        lines.push((
            "<faultstring>&#x738B;&#x5C0F;&#x660E; &#26446;&#26195;&#32418;</faultstring>".into(),
            vec![
                "王小明".into(),
                "李晓红".into(),
                "&#x738B;".into(),
                "&#26446;".into(),
            ],
        ));
        lines.push((
            "name=%E7%8E%8B%E5%B0%8F%E6%98%8E&tel=138%2D0000%2D1111".into(),
            vec!["王小明".into(), "%E7%8E%8B".into(), "0000".into()],
        ));
        lines.push((
            "q=%26%23x738B%3B%26%23x5C0F%3B%26%23x660E%3B".into(),
            vec!["王小明".into(), "738B".into()],
        ));
        lines.push((
            r#"{"name":"\ud83d\ude00\u738b\u5c0f\u660e"}"#.into(),
            vec!["王小明".into(), r"\u738b".into()],
        ));
        lines
    }

    #[test]
    fn the_corpus_leaves_nothing_personal_in_clear() {
        let known = PersonalValues::of_application(&application());
        let mut failures = Vec::new();
        for (input, forbidden) in corpus() {
            let masked = known.mask_text(&input);
            for f in &forbidden {
                if masked.contains(f.as_str()) {
                    failures.push(format!("{input}\n  → {masked}\n  still holds {f}"));
                }
            }
            if masked == input {
                failures.push(format!("{input}\n  was not masked at all"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What supervisors need stays as it was: each line a text and what must still be in it.
    #[test]
    fn ids_dates_codes_and_departments_stay() {
        let keep: &[(&str, &[&str])] = &[
            (
                "申请 TB-210102-20261120-000123 已受理",
                &["TB-210102-20261120-000123"],
            ),
            (
                "TB-210102-20250101-000001 的补正",
                &["TB-210102-20250101-000001"],
            ),
            (
                "事件 SYSCJG-SP-2026-004217-02 重复",
                &["SYSCJG-SP-2026-004217-02"],
            ),
            (
                "事项 11210100MB1529370K300011800200001 与 11210000001756420G2000113031000 不同",
                &[
                    "11210100MB1529370K300011800200001",
                    "11210000001756420G2000113031000",
                ],
            ),
            (
                "转沈阳市市场监督管理局（11210100MB1529370K）办理",
                &["11210100MB1529370K", "沈阳市市场监督管理局"],
            ),
            (
                "证照 1.2.156.3005.2.11100000000013338W016.11210100MB1529370K.2101022025000318.001.X",
                &["1.2.156.3005.2.11100000000013338W016.11210100MB1529370K.2101022025000318.001.X"],
            ),
            (
                "2026-11-20T09:30:00+08:00 至 2026年11月23日 10:05，20261123100500",
                &[
                    "2026-11-20T09:30:00+08:00",
                    "2026年11月23日 10:05",
                    "20261123100500",
                ],
            ),
            (
                "依据国务院令第732号和国办发〔2022〕32号，第十四条",
                &["第732号", "〔2022〕32号", "第十四条"],
            ),
            (
                "缺 premises_layout、application_form；面积 120 平方米；收费 0 元",
                &["premises_layout", "application_form", "120 平方米"],
            ),
            (
                "handler sy-scjg-0412 at 1763884800000",
                &["sy-scjg-0412", "1763884800000"],
            ),
            ("地址不详，请补充", &["地址不详"]),
            (
                "连接地址 http://10.1.2.3:8080/api 不可达；invalid socket address 10.0.0.1:8080",
                &["http://10.1.2.3:8080/api", "10.0.0.1:8080"],
            ),
        ];
        let known = PersonalValues::of_application(&application());
        let mut failures = Vec::new();
        for (input, kept) in keep {
            let masked = known.mask_text(input);
            for k in *kept {
                if !masked.contains(k) {
                    failures.push(format!("{input}\n  → {masked}\n  lost {k}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn masks_keep_a_recognisable_shape() {
        let known = PersonalValues::of_application(&application());
        assert_eq!(
            known.mask_text("王小明 138-0000-1111 (024)23456789 wang.xm@example.com"),
            "王** 138-****-1111 (024)****6789 w******@example.com"
        );
        assert_eq!(scrub("+86 138 0000 1111"), "+86 138 **** 1111");
        assert_eq!(scrub("8613800001111"), "86138****1111");
        assert_eq!(scrub("0411-8765432"), "0411-***5432");
    }

    #[test]
    fn decoding_reads_escapes_and_leaves_what_is_not_one() {
        assert_eq!(decode(r"\u5f20\u4e09"), "张三");
        assert_eq!(decode("&#x5f20;&#19977;"), "张三");
        assert_eq!(decode("%E5%BC%A0%E4%B8%89"), "张三");
        assert_eq!(decode(r"\ud83d\ude00"), "😀");
        assert_eq!(decode("１３８"), "138");
        // A decoded line break would start a false log line.
        assert_eq!(decode(r"a\u000aERROR b&#10;c%0D%0A"), "a ERROR b c  ");
        // Not escapes, or not valid ones: as they were.
        for text in [
            "100% sure",
            "50%ZZ",
            "%E5%BC",
            r"\ud83d alone",
            "&#xFFFFFFF;",
            r"C:\users",
            "（中文括号）",
        ] {
            assert_eq!(decode(text), text);
        }
    }

    #[test]
    fn a_case_event_is_masked_in_its_free_texts_and_kept_in_its_structure() {
        let known = PersonalValues::of_application(&application());
        let event = json!({
            "event_id": "SYSCJG-SP-2026-004217-02",
            "application_id": "TB-210102-20261120-000123",
            "system": "sy-scjg-food",
            "node": { "name": "补正", "type": "2", "result": "5" },
            "handler": { "name": "赵六", "id": "21020219750304201X", "department": "审批处 13900002222" },
            "opinion": "王小明的材料不全，请致电 138-0000-1111",
            "supplement": { "materials": ["premises_layout"], "reason": "住址：辽宁省沈阳市沈河区测试街 6 号 3-2-1 与证明不符" },
            "occurred_at": "2026-11-23T10:05:00+08:00",
        });
        let masked = known.masked_event(&event.to_string());
        let text = masked.to_string();
        for clear in [
            "赵六",
            "0304201X",
            "王小明",
            "0000-1111",
            "测试街",
            "00002222",
        ] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
        assert_eq!(masked["handler"]["name"], "赵*");
        for field in [
            "event_id",
            "application_id",
            "system",
            "node",
            "occurred_at",
        ] {
            assert_eq!(masked[field], event[field], "{field}");
        }
        assert_eq!(
            masked["supplement"]["materials"],
            json!(["premises_layout"])
        );
        assert_eq!(known.masked_event("[1, 2]"), json!({}));
        assert_eq!(known.masked_event("not json"), json!({}));
    }

    proptest::proptest! {
        /// A citizen ID number and a mobile number among any text made of what the patterns
        /// and escapes look for are masked, and nothing panics.
        #[test]
        fn numbers_among_any_text_are_masked(
            before in NOISE,
            between in NOISE,
            after in NOISE,
            born in 0i64..20_000,
            sequence in 0u32..1000,
            subscriber in 0u32..100_000_000,
        ) {
            let birth = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap()
                + chrono::Duration::days(born);
            let id = citizen_id(&format!("210102{}{sequence:03}", birth.format("%Y%m%d")));
            let mobile = format!("139{subscriber:08}");
            let text = format!("{before} {id} {between}，{mobile} {after}");
            let masked = PersonalValues::of_application(&application()).mask_text(&text);
            proptest::prop_assert!(!masked.contains(&id[4..14]), "{text} → {masked}");
            proptest::prop_assert!(!masked.contains(&mobile[3..7]) || text.matches(&mobile[3..7]).count() > 1, "{text} → {masked}");
        }
    }

    /// Text made of the characters the patterns and escapes look for.
    const NOISE: &str = "[0-9Xx+()（）@.%&#;:：\\\\u a-f地址住路街号市区室…１２-]{0,30}";
}

/// A keyed hash of a person's or organisation's ID that indexes what the hub holds about them
/// (their results, who accessed those) without keeping the ID in clear: HMAC-SHA256 under a
/// secret of the hub's, so the index cannot be reversed by hashing every possible ID number.
#[derive(Clone)]
pub struct HolderIndex {
    key: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for HolderIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HolderIndex(secret)")
    }
}

impl HolderIndex {
    pub fn new(secret: &[u8; 32]) -> HolderIndex {
        HolderIndex {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        }
    }

    /// The index key of the holder with this ID type and number (a citizen ID's `x` read as
    /// `X`, surrounding blanks ignored), as 64 hexadecimal digits.
    pub fn of(&self, id_type: crate::model::IdType, id_number: &str) -> String {
        let normal = format!(
            "{}:{}",
            id_type.as_str(),
            id_number.trim().to_ascii_uppercase()
        );
        aws_lc_rs::hmac::sign(&self.key, normal.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
