//! What the usage report (第十条) is made from: how many applications each system was sent, of
//! which item, on which day, and on which days each system reported case events. Counts, codes
//! and day numbers only, never an application's content; what the figures mean is decided
//! after (`service::usage`).

use super::{Store, StoreError};
use sqlx::Row;

/// How many applications accepted on one day were routed to a system for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyApplications {
    pub system_id: String,
    pub item_code: String,
    /// Days since 1970-01-01 in the caller's time zone (see [`Store::daily_applications`]).
    pub day: i64,
    pub applications: i64,
}

/// A day on which a system's case events reached the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDay {
    pub system_id: String,
    /// Days since 1970-01-01 in the caller's time zone.
    pub day: i64,
}

const DAY_MS: i64 = 86_400_000;

impl Store {
    /// Applications accepted from `since` (inclusive) to `until` (exclusive), counted per
    /// system, item and day; a day starts at midnight in a zone `utc_offset_ms` ahead of UTC.
    pub async fn daily_applications(
        &self,
        since: i64,
        until: i64,
        utc_offset_ms: i64,
    ) -> Result<Vec<DailyApplications>, StoreError> {
        let sql = format!(
            "SELECT system_id, item_code, day, COUNT(*) AS applications FROM \
             (SELECT system_id, item_code, (accepted_at + $3) / {DAY_MS} AS day \
              FROM applications WHERE accepted_at >= $1 AND accepted_at < $2) d \
             GROUP BY system_id, item_code, day ORDER BY system_id, item_code, day"
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(until)
            .bind(utc_offset_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyApplications {
                    system_id: r.try_get("system_id")?,
                    item_code: r.try_get("item_code")?,
                    day: r.try_get("day")?,
                    applications: r.try_get("applications")?,
                })
            })
            .collect()
    }

    /// The days (as [`Store::daily_applications`] numbers them) on which case events received
    /// from `since` to `until` (exclusive) came, per system.
    pub async fn event_days(
        &self,
        since: i64,
        until: i64,
        utc_offset_ms: i64,
    ) -> Result<Vec<EventDay>, StoreError> {
        let sql = format!(
            "SELECT system_id, day FROM \
             (SELECT system_id, (received_at + $3) / {DAY_MS} AS day \
              FROM case_events WHERE received_at >= $1 AND received_at < $2) d \
             GROUP BY system_id, day ORDER BY system_id, day"
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .bind(until)
            .bind(utc_offset_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventDay {
                    system_id: r.try_get("system_id")?,
                    day: r.try_get("day")?,
                })
            })
            .collect()
    }
}
