//! The calendar's years against the catalog's time limits: a warning when a case accepted now
//! can come due in a year without a holiday file, checked daily while the hub serves (from the
//! store's catalog) and once by `tongban check` (from the seed catalog).

use crate::catalog::{ItemQuery, TimeLimit};
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::supervision::calendar::{Calendar, horizon_warning};
use crate::supervision::{HORIZON_WITHOUT_CATALOG, limits_of};

/// How often a serving hub looks at the calendar's years again ([`watch_calendar`]).
pub const CALENDAR_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Warns in the log when a case accepted at `now_ms`, with any limit of the store's catalog,
/// can come due in a year without a holiday file (see [`horizon_warning`]). A store
/// that cannot be read is logged too; the hub serves either way.
pub async fn warn_about_calendar(store: &Store, calendar: &Calendar, now_ms: i64) {
    match catalog_limits(store).await {
        Ok(limits) => {
            if let Some(warning) =
                horizon_warning(calendar, now_ms, &limits, HORIZON_WITHOUT_CATALOG)
            {
                tracing::warn!("{warning}");
            }
        }
        Err(e) => {
            tracing::warn!(cause = %e, "cannot read the catalog's time limits to check the calendar's years")
        }
    }
}

/// While the hub serves: [`warn_about_calendar`] at once and then every `every` (a day:
/// [`CALENDAR_CHECK_EVERY`]) by the clock `now`, until `shutdown` turns true, so that a hub
/// started in spring warns, once a day, when December brings next year's dues within reach.
pub async fn watch_calendar(
    store: Store,
    calendar: Calendar,
    every: std::time::Duration,
    now: impl Fn() -> i64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        warn_about_calendar(&store, &calendar, now()).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The current catalog's limits, read page by page.
async fn catalog_limits(store: &Store) -> Result<Vec<TimeLimit>, StoreError> {
    let mut limits = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_items(&ItemQuery {
                after: after.take(),
                limit: 500,
                ..ItemQuery::default()
            })
            .await?;
        for limit in limits_of(&page.items) {
            if !limits.contains(&limit) {
                limits.push(limit);
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(limits),
        }
    }
}

/// For `tongban check`, which opens no store: the calendar warning for the limits of the seed
/// catalog `hub.toml` names, or for [`HORIZON_WITHOUT_CATALOG`] when there is none or it does
/// not read.
pub fn check_calendar(config: &Config, now_ms: i64) -> Option<String> {
    let items = config
        .hub
        .catalog
        .seed
        .as_ref()
        .and_then(|seed| std::fs::read_to_string(config.dir.join(seed)).ok())
        .and_then(|text| crate::catalog::parse_import(&config.schemas, &text).ok())
        .unwrap_or_default();
    horizon_warning(
        &config.hub.supervision.calendar,
        now_ms,
        &limits_of(&items),
        HORIZON_WITHOUT_CATALOG,
    )
}
