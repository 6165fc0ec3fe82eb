//! The figures operations watch, read at each metrics scrape for every hub sharing the store:
//! each system's waiting deliveries (how many, since when) and dead letters, the supervision
//! feed's head and where its readers have got to, and the open alerts by level. Each is an
//! indexed count or minimum (the outbox by `deliveries_due`, open alerts by `alerts_open`), so a
//! scrape stays cheap however long the hub has run.

use super::{Store, StoreError, rows};
use crate::model::DeliveryState;
use sqlx::Row;
use std::collections::HashMap;

/// What [`Store::operational_figures`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationalFigures {
    /// One per system asked about, in the order asked.
    pub outboxes: Vec<OutboxFigures>,
    /// The feed's last sequence number (0 for an empty feed).
    pub feed_head: i64,
    /// Each cursor asked about, in the order asked (0 for one not kept yet).
    pub cursors: Vec<i64>,
    /// Open alerts per level, for the levels that have any.
    pub alerts_open: Vec<(String, i64)>,
}

/// One system's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxFigures {
    pub system: String,
    /// Deliveries waiting: neither delivered nor dead.
    pub waiting: i64,
    /// Since when the oldest of them waits (epoch ms: its acceptance, or its replay); `None`
    /// when none does.
    pub oldest_waiting_since: Option<i64>,
    /// Dead letters not replayed.
    pub dead: i64,
}

impl Store {
    /// The outbox and dead letters of each of `systems`, the feed's head, the positions of the
    /// feed readers named `cursors`, and the open alerts by level: a few statements on one
    /// connection.
    pub async fn operational_figures(
        &self,
        systems: &[&str],
        cursors: &[&str],
    ) -> Result<OperationalFigures, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut outboxes: Vec<OutboxFigures> = systems
            .iter()
            .map(|system| OutboxFigures {
                system: system.to_string(),
                waiting: 0,
                oldest_waiting_since: None,
                dead: 0,
            })
            .collect();
        let at: HashMap<&str, usize> = systems.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        for chunk in rows::chunks(systems.len()) {
            let list = rows::list(chunk.len(), 2);
            let waiting = format!(
                "SELECT system_id, COUNT(*) AS n, MIN(window_start) AS oldest FROM deliveries \
                 WHERE status = $1 AND system_id IN ({list}) GROUP BY system_id"
            );
            let mut query = sqlx::query(&waiting).bind(DeliveryState::Pending.as_str());
            for system in &systems[chunk.clone()] {
                query = query.bind(*system);
            }
            for r in query.fetch_all(&mut *conn).await? {
                let system: String = r.try_get("system_id")?;
                if let Some(&i) = at.get(system.as_str()) {
                    outboxes[i].waiting = r.try_get("n")?;
                    outboxes[i].oldest_waiting_since = r.try_get("oldest")?;
                }
            }
            let dead = format!(
                "SELECT system_id, COUNT(*) AS n FROM deliveries \
                 WHERE status = $1 AND system_id IN ({list}) GROUP BY system_id"
            );
            let mut query = sqlx::query(&dead).bind(DeliveryState::Dead.as_str());
            for system in &systems[chunk] {
                query = query.bind(*system);
            }
            for r in query.fetch_all(&mut *conn).await? {
                let system: String = r.try_get("system_id")?;
                if let Some(&i) = at.get(system.as_str()) {
                    outboxes[i].dead = r.try_get("n")?;
                }
            }
        }
        let feed_head: i64 =
            sqlx::query("SELECT value FROM counters WHERE name = 'supervision_feed'")
                .fetch_one(&mut *conn)
                .await?
                .try_get("value")?;
        let mut positions = vec![0; cursors.len()];
        if !cursors.is_empty() {
            let sql = format!(
                "SELECT name, seq FROM cursors WHERE name IN ({})",
                rows::list(cursors.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for name in cursors {
                query = query.bind(*name);
            }
            for r in query.fetch_all(&mut *conn).await? {
                let name: String = r.try_get("name")?;
                if let Some(i) = cursors.iter().position(|c| *c == name) {
                    positions[i] = r.try_get("seq")?;
                }
            }
        }
        let alerts_open = sqlx::query(
            "SELECT level, COUNT(*) AS n FROM alerts WHERE resolved_at IS NULL \
             GROUP BY level ORDER BY level",
        )
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("level")?, r.try_get("n")?)))
        .collect::<Result<_, StoreError>>()?;
        Ok(OperationalFigures {
            outboxes,
            feed_head,
            cursors: positions,
            alerts_open,
        })
    }
}
