//! The national identifiers the hub exchanges, validated for real: check characters, layouts, dates.
//!
//! Every function here is pure and total: it accepts any string (any bytes a client sends) and
//! answers with the parsed parts or one [`IdError`] saying what is wrong. Messages never repeat
//! the value itself, because some of these values (citizen ID numbers) are personal data.

use crate::model::ItemType;
use chrono::{Datelike, NaiveDate};

/// What is wrong with an identifier. The message names the position, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be {expected} characters long, found {found}")]
    Length {
        expected: &'static str,
        found: usize,
    },
    #[error("character {position} is not allowed here ({allowed})")]
    Character {
        position: usize,
        allowed: &'static str,
    },
    #[error("check character does not match")]
    CheckCharacter,
    #[error("birth date is not a real date")]
    BirthDate,
    #[error("region code is not a Chinese province")]
    Region,
    #[error("unknown code, expected one of {expected}")]
    UnknownCode { expected: &'static str },
    #[error("must start with {expected}")]
    Prefix { expected: &'static str },
    #[error("{part}: {source}")]
    Part {
        part: &'static str,
        source: Box<IdError>,
    },
    #[error("must have {expected} dot-separated parts, found {found}")]
    Parts { expected: usize, found: usize },
}

impl IdError {
    fn within(self, part: &'static str) -> IdError {
        IdError::Part {
            part,
            source: Box::new(self),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 统一社会信用代码 (GB 32100)

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == c).map(|i| i as u32)
}

/// The check character GB 32100 gives the first 17 characters, or `None` if one is outside the
/// code's alphabet.
pub fn uscc_check_char(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(*c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(USCC_ALPHABET[check as usize] as char)
}

/// Validates a unified social credit code: 18 characters of the GB 32100 alphabet, the first
/// two a registration authority and organisation category, then a 6-digit region, and a
/// matching check character.
///
/// ```
/// use tongban::ids::{IdError, check_uscc};
/// assert_eq!(check_uscc("11370800MB28559184"), Ok(()));
/// assert_eq!(check_uscc("11370800MB28559185"), Err(IdError::CheckCharacter));
/// ```
pub fn check_uscc(s: &str) -> Result<(), IdError> {
    let b = s.as_bytes();
    if b.len() != 18 || s.chars().count() != 18 {
        return Err(IdError::Length {
            expected: "18",
            found: s.chars().count(),
        });
    }
    for (i, c) in b.iter().enumerate() {
        if uscc_value(*c).is_none() {
            return Err(IdError::Character {
                position: i + 1,
                allowed: "0-9 and A-Y without I, O, S, V, Z",
            });
        }
    }
    if let Some(i) = b[2..8].iter().position(|c| !c.is_ascii_digit()) {
        return Err(IdError::Character {
            position: i + 3,
            allowed: "the region code is 6 digits",
        });
    }
    if uscc_check_char(&b[..17]) != Some(b[17] as char) {
        return Err(IdError::CheckCharacter);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 公民身份号码 (GB 11643)

const CITIZEN_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CITIZEN_CHECK: &[u8; 11] = b"10X98765432";
/// Province-level region codes (the first two digits) that GB/T 2260 assigns.
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

/// The check character GB 11643 gives the first 17 digits, or `None` if one is not a digit.
pub fn citizen_id_check_char(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in first17.iter().zip(CITIZEN_WEIGHTS) {
        if !c.is_ascii_digit() {
            return None;
        }
        sum += u32::from(c - b'0') * w;
    }
    Some(CITIZEN_CHECK[(sum % 11) as usize] as char)
}

/// The parts of a valid citizen ID number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitizenId {
    pub birth_date: NaiveDate,
    pub male: bool,
}

/// Validates a citizen ID number: 6-digit region of a real province, a real birth date that is
/// not in the future, a 3-digit sequence, and the check character (`X` upper case only).
pub fn check_citizen_id(s: &str) -> Result<CitizenId, IdError> {
    let b = s.as_bytes();
    if b.len() != 18 || s.chars().count() != 18 {
        return Err(IdError::Length {
            expected: "18",
            found: s.chars().count(),
        });
    }
    if let Some(i) = b[..17].iter().position(|c| !c.is_ascii_digit()) {
        return Err(IdError::Character {
            position: i + 1,
            allowed: "digits",
        });
    }
    if !(b[17].is_ascii_digit() || b[17] == b'X') {
        return Err(IdError::Character {
            position: 18,
            allowed: "a digit or X",
        });
    }
    if !PROVINCES.contains(&&s[..2]) {
        return Err(IdError::Region);
    }
    let year: i32 = s[6..10].parse().map_err(|_| IdError::BirthDate)?;
    let month: u32 = s[10..12].parse().map_err(|_| IdError::BirthDate)?;
    let day: u32 = s[12..14].parse().map_err(|_| IdError::BirthDate)?;
    let birth_date = NaiveDate::from_ymd_opt(year, month, day).ok_or(IdError::BirthDate)?;
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    if year < 1850 || birth_date > today {
        return Err(IdError::BirthDate);
    }
    if citizen_id_check_char(&b[..17]) != Some(b[17] as char) {
        return Err(IdError::CheckCharacter);
    }
    Ok(CitizenId {
        birth_date,
        male: (b[16] - b'0') % 2 == 1,
    })
}

/// Whether `s` is laid out like someone's citizen ID number, whatever its check character: 17
/// digits and a digit or `X` (either case), or the 15 digits of a first-generation card (a
/// two-digit year of the 1900s, no check character); either way with a province's region code
/// and a real birth date not in the future. A number with a mistyped check character is still
/// that person's, so whatever masks personal data asks this rather than [`check_citizen_id`].
pub fn has_citizen_id_layout(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let birth_date = match b.len() {
        18 if digits(0..17) && matches!(b[17], b'0'..=b'9' | b'X' | b'x') => s[6..14].to_string(),
        15 if digits(0..15) => format!("19{}", &s[6..12]),
        _ => return false,
    };
    let number = |range: std::ops::Range<usize>| -> u32 { birth_date[range].parse().unwrap_or(0) };
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    PROVINCES.contains(&&s[..2])
        && NaiveDate::from_ymd_opt(number(0..4) as i32, number(4..6), number(6..8))
            .is_some_and(|d| d.year() >= 1850 && d <= today)
}

/// Masks a citizen ID number (or any identifier) for logs, feeds and reports: the first four and
/// last four characters stay, everything between becomes `*`, so `2101**********123X`. Values
/// too short to mask safely become all stars.
///
/// ```
/// assert_eq!(tongban::ids::mask_id("13043419840726291X"), "1304**********291X");
/// ```
pub fn mask_id(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < 4 || i >= n - 4 { *c } else { '*' })
        .collect()
}

/// Masks a person's or organisation's name for anything shown beyond its owner: the first
/// character stays, the rest become `*` (`张**`).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// 事项类型 and 事项实施编码

/// Parses an item type code (`01` … `10`, `20`).
pub fn check_item_type(s: &str) -> Result<ItemType, IdError> {
    s.parse().map_err(|_| IdError::UnknownCode {
        expected: "01-10 or 20",
    })
}

/// The parts of a valid item implementation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemCode<'a> {
    /// 实施主体: the implementing body's USCC.
    pub uscc: &'a str,
    /// 行使层级: 1 国家 … 6 村(社区).
    pub level: char,
    /// 基本编码.
    pub basic_code: &'a str,
    /// 业务办理项, when the code has 33 characters.
    pub sub_item: Option<&'a str>,
}

/// Validates an item implementation code: a valid USCC, an exercise level 1-6, a 12-character
/// basic code of digits and capitals, and optionally a 2-digit business sub-item.
pub fn check_item_code(s: &str) -> Result<ItemCode<'_>, IdError> {
    let b = s.as_bytes();
    let n = s.chars().count();
    if b.len() != n || (n != 31 && n != 33) {
        return Err(IdError::Length {
            expected: "31 or 33",
            found: n,
        });
    }
    check_uscc(&s[..18]).map_err(|e| e.within("implementing body USCC (characters 1-18)"))?;
    if !(b'1'..=b'6').contains(&b[18]) {
        return Err(IdError::Character {
            position: 19,
            allowed: "exercise level 1-6",
        });
    }
    if let Some(i) = b[19..31]
        .iter()
        .position(|c| !(c.is_ascii_digit() || c.is_ascii_uppercase()))
    {
        return Err(IdError::Character {
            position: 20 + i,
            allowed: "basic code: digits and capital letters",
        });
    }
    if n == 33 && !(b[31].is_ascii_digit() && b[32].is_ascii_digit()) {
        return Err(IdError::Character {
            position: if b[31].is_ascii_digit() { 33 } else { 32 },
            allowed: "business sub-item: 2 digits",
        });
    }
    Ok(ItemCode {
        uscc: &s[..18],
        level: b[18] as char,
        basic_code: &s[19..31],
        sub_item: (n == 33).then(|| &s[31..33]),
    })
}

// ---------------------------------------------------------------------------------------------
// 电子证照标识 and ISO 7064 MOD 37,36

const MOD36_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ELICENSE_PREFIX: &str = "1.2.156.3005.2";

/// The ISO 7064 MOD 37,36 check character over digits and capital letters, or `None` if a
/// character is outside that alphabet.
pub fn mod37_36_check_char(s: &[u8]) -> Option<char> {
    const M: u32 = 36;
    let mut p = M;
    for c in s {
        let v = MOD36_ALPHABET.iter().position(|a| a == c)? as u32;
        let mut t = (p + v) % M;
        if t == 0 {
            t = M;
        }
        p = (t * 2) % (M + 1);
    }
    Some(MOD36_ALPHABET[((M + 1 - p) % M) as usize] as char)
}

/// The parts of a valid e-license identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ELicenseId<'a> {
    pub license_type: &'a str,
    pub issuer_uscc: &'a str,
    pub serial: &'a str,
    pub version: &'a str,
}

/// Validates an e-license identifier
/// `1.2.156.3005.2.<type code>.<issuer USCC>.<serial>.<3-digit version>.<check>`, the check being
/// ISO 7064 MOD 37,36 over type code, issuer, serial and version.
pub fn check_elicense_id(s: &str) -> Result<ELicenseId<'_>, IdError> {
    let rest = s
        .strip_prefix(ELICENSE_PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(IdError::Prefix {
            expected: "1.2.156.3005.2.",
        })?;
    let parts: Vec<&str> = rest.split('.').collect();
    let [license_type, issuer_uscc, serial, version, check] = parts[..] else {
        return Err(IdError::Parts {
            expected: 10,
            found: parts.len() + 5,
        });
    };
    let alnum = |part: &str, what: &'static str, max: usize| {
        if part.is_empty()
            || part.len() > max
            || !part
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            Err(IdError::Character {
                position: 1,
                allowed: "digits and capital letters",
            }
            .within(what))
        } else {
            Ok(())
        }
    };
    alnum(license_type, "license type code", 64)?;
    check_uscc(issuer_uscc).map_err(|e| e.within("issuer USCC"))?;
    alnum(serial, "serial number", 64)?;
    if version.len() != 3 || !version.bytes().all(|c| c.is_ascii_digit()) {
        return Err(IdError::Length {
            expected: "3 digits",
            found: version.chars().count(),
        }
        .within("version"));
    }
    let payload = [license_type, issuer_uscc, serial, version].concat();
    if check.len() != 1 || mod37_36_check_char(payload.as_bytes()) != check.chars().next() {
        return Err(IdError::CheckCharacter);
    }
    Ok(ELicenseId {
        license_type,
        issuer_uscc,
        serial,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USCC_VALID: [&str; 6] = [
        "11370800MB28559184",
        "11650000010183859F",
        "11440000553612461J",
        "11100000000013338W",
        "11220000013544541J",
        "91350100M000100Y43",
    ];
    const CITIZEN_VALID: [&str; 2] = ["13043419840726291X", "11010519491231002X"];
    const ITEM_CODE_VALID: &str = "11440000553612461J244211105N00302";
    const ELICENSE_VALID: &str =
        "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F";

    #[test]
    fn uscc_vectors() {
        for v in USCC_VALID {
            assert_eq!(check_uscc(v), Ok(()), "{v}");
        }
        assert_eq!(
            check_uscc("11370800MB28559185"),
            Err(IdError::CheckCharacter)
        );
        assert!(matches!(
            check_uscc("11370800MB2855918"),
            Err(IdError::Length { .. })
        ));
        assert!(matches!(
            check_uscc("11370800MB2855918I"),
            Err(IdError::Character { position: 18, .. })
        ));
        assert!(matches!(
            check_uscc("113708000B2855918４"),
            Err(IdError::Length { .. } | IdError::Character { .. })
        ));
    }

    #[test]
    fn citizen_id_vectors() {
        for v in CITIZEN_VALID {
            assert!(check_citizen_id(v).is_ok(), "{v}");
        }
        let parsed = check_citizen_id("11010519491231002X").unwrap();
        assert_eq!(
            parsed.birth_date,
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
        assert!(!parsed.male);
        assert!(check_citizen_id("13043419840726291X").unwrap().male);
        assert_eq!(
            check_citizen_id("13043419840726291x"),
            Err(IdError::Character {
                position: 18,
                allowed: "a digit or X"
            })
        );
        // 1985-02-29 does not exist; the check character is recomputed so only the date is wrong.
        let mut body = b"21010219850229123".to_vec();
        body.push(citizen_id_check_char(&body).unwrap() as u8);
        assert_eq!(
            check_citizen_id(std::str::from_utf8(&body).unwrap()),
            Err(IdError::BirthDate)
        );
        let mut future = b"21010230990101123".to_vec();
        future.push(citizen_id_check_char(&future).unwrap() as u8);
        assert_eq!(
            check_citizen_id(std::str::from_utf8(&future).unwrap()),
            Err(IdError::BirthDate)
        );
        let mut region = b"99010219850228123".to_vec();
        region.push(citizen_id_check_char(&region).unwrap() as u8);
        assert_eq!(
            check_citizen_id(std::str::from_utf8(&region).unwrap()),
            Err(IdError::Region)
        );
    }

    #[test]
    fn citizen_id_layout_ignores_the_check_character() {
        for laid_out in [
            "13043419840726291X",
            "13043419840726291x",
            "130434198407262910",
            "130434840726291",
        ] {
            assert!(has_citizen_id_layout(laid_out), "{laid_out}");
        }
        for not in [
            "99043419840726291X",
            "13043419840231291X",
            "13043430990101291X",
            "1304341984072629XX",
            "13043419840726291",
            "130434841332291",
            "１30434198407262910",
            "",
        ] {
            assert!(!has_citizen_id_layout(not), "{not}");
        }
    }

    #[test]
    fn masking_keeps_only_the_ends() {
        assert_eq!(mask_id("13043419840726291X"), "1304**********291X");
        assert_eq!(mask_id("123"), "***");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name(""), "");
    }

    #[test]
    fn item_code_vectors() {
        let parts = check_item_code(ITEM_CODE_VALID).unwrap();
        assert_eq!(parts.uscc, "11440000553612461J");
        assert_eq!(parts.level, '2');
        assert_eq!(parts.basic_code, "44211105N003");
        assert_eq!(parts.sub_item, Some("02"));
        let short = check_item_code(&ITEM_CODE_VALID[..31]).unwrap();
        assert_eq!(short.sub_item, None);
        assert!(matches!(
            check_item_code(&ITEM_CODE_VALID[..32]),
            Err(IdError::Length { .. })
        ));
        assert!(matches!(
            check_item_code("11440000553612461K244211105N00302"),
            Err(IdError::Part { .. })
        ));
        assert!(matches!(
            check_item_code("11440000553612461J744211105N00302"),
            Err(IdError::Character { position: 19, .. })
        ));
        assert!(matches!(
            check_item_code("11440000553612461J244211105n00302"),
            Err(IdError::Character { position: 28, .. })
        ));
    }

    #[test]
    fn item_type_codes() {
        assert_eq!(check_item_type("01"), Ok(ItemType::Licensing));
        assert_eq!(check_item_type("20"), Ok(ItemType::PublicService));
        assert!(check_item_type("11").is_err());
        assert!(check_item_type("1").is_err());
        for &t in ItemType::ALL {
            assert_eq!(check_item_type(t.as_str()), Ok(t));
        }
    }

    #[test]
    fn elicense_vectors() {
        let parts = check_elicense_id(ELICENSE_VALID).unwrap();
        assert_eq!(parts.license_type, "11100000000013338W032");
        assert_eq!(parts.issuer_uscc, "11220000013544541J");
        assert_eq!(parts.serial, "2430599");
        assert_eq!(parts.version, "001");
        assert_eq!(
            check_elicense_id(
                "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.002.F"
            ),
            Err(IdError::CheckCharacter)
        );
        assert!(matches!(
            check_elicense_id("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.F"),
            Err(IdError::Parts { .. })
        ));
    }

    /// Characters a substitution may bring in: the alphabets, lower case, punctuation, a
    /// full-width digit and a Han character.
    fn replacement() -> impl Strategy<Value = char> {
        prop_oneof![
            proptest::char::range('0', 'Z'),
            proptest::char::range('a', 'z'),
            Just('.'),
            Just(' '),
            Just('０'),
            Just('证'),
        ]
    }

    /// Every single-character change of `valid` at a position in `range` must be rejected.
    fn assert_changes_rejected(
        valid: &str,
        position: usize,
        with: char,
        check: impl Fn(&str) -> bool,
    ) -> Result<(), TestCaseError> {
        let chars: Vec<char> = valid.chars().collect();
        let i = position % chars.len();
        prop_assume!(chars[i] != with);
        let mut changed = chars.clone();
        changed[i] = with;
        let changed: String = changed.into_iter().collect();
        prop_assert!(
            !check(&changed),
            "{valid} changed to {changed} was accepted"
        );
        Ok(())
    }

    fn uscc_strategy() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(0usize..31, 2),
            proptest::collection::vec(0u8..10, 6),
            proptest::collection::vec(0usize..31, 9),
        )
            .prop_map(|(head, region, body)| {
                let mut s: Vec<u8> = head.iter().map(|&i| USCC_ALPHABET[i]).collect();
                s.extend(region.iter().map(|d| b'0' + d));
                s.extend(body.iter().map(|&i| USCC_ALPHABET[i]));
                let check = uscc_check_char(&s).unwrap();
                s.push(check as u8);
                String::from_utf8(s).unwrap()
            })
    }

    fn citizen_strategy() -> impl Strategy<Value = String> {
        (
            0usize..34,
            0u32..10000,
            1900i32..2020,
            1u32..13,
            1u32..29,
            0u32..1000,
        )
            .prop_map(|(p, area, y, m, d, seq)| {
                let body = format!("{}{area:04}{y:04}{m:02}{d:02}{seq:03}", PROVINCES[p]);
                let check = citizen_id_check_char(body.as_bytes()).unwrap();
                format!("{body}{check}")
            })
    }

    proptest! {
        #[test]
        fn uscc_single_changes_rejected(valid in uscc_strategy(), pos in 0usize..18, with in replacement()) {
            prop_assert!(check_uscc(&valid).is_ok());
            assert_changes_rejected(&valid, pos, with, |s| check_uscc(s).is_ok())?;
        }

        #[test]
        fn uscc_vectors_single_changes_rejected(v in 0usize..6, pos in 0usize..18, with in replacement()) {
            assert_changes_rejected(USCC_VALID[v], pos, with, |s| check_uscc(s).is_ok())?;
        }

        #[test]
        fn citizen_single_changes_rejected(valid in citizen_strategy(), pos in 0usize..18, with in replacement()) {
            prop_assert!(check_citizen_id(&valid).is_ok());
            assert_changes_rejected(&valid, pos, with, |s| check_citizen_id(s).is_ok())?;
        }

        #[test]
        fn citizen_vectors_single_changes_rejected(v in 0usize..2, pos in 0usize..18, with in replacement()) {
            assert_changes_rejected(CITIZEN_VALID[v], pos, with, |s| check_citizen_id(s).is_ok())?;
        }

        /// The implementation code carries no check character of its own: a change in the
        /// implementing body's USCC is caught by that USCC's check; a change of the level, basic
        /// code or sub-item to another well-formed value cannot be detected by anyone, so only
        /// changes to characters outside those fields' alphabets are asserted there.
        #[test]
        fn item_code_single_changes_rejected(uscc in uscc_strategy(), pos in 0usize..33, with in replacement()) {
            let valid = format!("{uscc}344211105N00301");
            prop_assert!(check_item_code(&valid).is_ok());
            let i = pos % 33;
            let well_formed_elsewhere = match i {
                18 => ('1'..='6').contains(&with),
                19..=30 => with.is_ascii_digit() || with.is_ascii_uppercase(),
                _ => with.is_ascii_digit(),
            };
            prop_assume!(i < 18 || !well_formed_elsewhere);
            assert_changes_rejected(&valid, i, with, |s| check_item_code(s).is_ok())?;
        }

        #[test]
        fn elicense_single_changes_rejected(issuer in uscc_strategy(), serial in "[0-9A-Z]{4,12}", version in 0u32..1000, pos in 0usize..200, with in replacement()) {
            let payload = format!("11100000000013338W032{issuer}{serial}{version:03}");
            let check = mod37_36_check_char(payload.as_bytes()).unwrap();
            let valid = format!("{ELICENSE_PREFIX}.11100000000013338W032.{issuer}.{serial}.{version:03}.{check}");
            prop_assert!(check_elicense_id(&valid).is_ok());
            assert_changes_rejected(&valid, pos, with, |s| check_elicense_id(s).is_ok())?;
        }

        #[test]
        fn no_panic_on_any_string(s in ".{0,40}") {
            let _ = check_uscc(&s);
            let _ = check_citizen_id(&s);
            let _ = check_item_code(&s);
            let _ = check_item_type(&s);
            let _ = check_elicense_id(&s);
            let _ = mask_id(&s);
        }
    }
}
