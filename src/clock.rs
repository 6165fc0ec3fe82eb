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

/// A duration in words, to the minute, for messages and evidence: `15 days 2 hours`,
/// `3 hours 20 minutes`, `7 minutes`.
pub fn duration_text(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(days, "day"), (hours, "hour"), (minutes, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
        .take(2)
        .collect();
    if parts.is_empty() {
        "less than a minute".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_in_words() {
        use super::duration_text;
        let minute = 60_000;
        assert_eq!(
            duration_text(15 * 1440 * minute + 2 * 60 * minute),
            "15 days 2 hours"
        );
        assert_eq!(duration_text(200 * minute), "3 hours 20 minutes");
        assert_eq!(duration_text(minute), "1 minute");
        assert_eq!(duration_text(30_000), "less than a minute");
    }

    #[test]
    fn formats_in_china_standard_time() {
        assert_eq!(super::format_millis(0), "1970-01-01T08:00:00.000+08:00");
    }
}
