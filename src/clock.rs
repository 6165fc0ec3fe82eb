//! Time as the hub records it: milliseconds since the Unix epoch in the store, RFC 3339 in
//! China Standard Time (+08:00) on the wire.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

/// China Standard Time, the offset every time the hub shows carries.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// Now, in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds and the +08:00 offset, e.g. `2026-11-28T19:05:00.123+08:00`.
pub fn format_millis(millis: i64) -> String {
    cst()
        .timestamp_millis_opt(millis)
        .single()
        .map(|t: DateTime<FixedOffset>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_in_china_standard_time() {
        assert_eq!(super::format_millis(0), "1970-01-01T08:00:00.000+08:00");
    }
}
