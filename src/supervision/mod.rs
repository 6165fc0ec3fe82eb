//! Real-time e-supervision (实时电子监察): every case step from every connected system, its
//! clocks on the working-day calendar, and the rules that flag what breaks them.
//!
//! This module is the pure part: `calendar`, `case` and `rules`, given events, items and a
//! calendar, compute a case's state, its deadlines and the alerts it deserves, with no store,
//! no configuration and no I/O. The hub's workers apply them: `workers::engine` follows the
//! feed of stored case events, keeps a timer per open case at the next moment its alerts can
//! change, and writes alert changes with their feed entries in one transaction;
//! `workers::publish` sends the feed to RabbitMQ's `tongban.supervision` topic exchange when
//! the bus is AMQP; the API serves it as server-sent events.

pub mod calendar;
pub mod case;
pub mod rules;

use crate::catalog::{Item, TimeLimit, TimeUnit};

/// What stands for the catalog's time limits when none is at hand (`tongban check` without a
/// readable seed catalog): three months, longer than most statutory limits.
pub const HORIZON_WITHOUT_CATALOG: TimeLimit = TimeLimit {
    value: 3,
    unit: TimeUnit::Month,
};

/// Every promised and statutory limit of `items`, once each.
pub fn limits_of<'a>(items: impl IntoIterator<Item = &'a Item>) -> Vec<TimeLimit> {
    let mut limits: Vec<TimeLimit> = Vec::new();
    for item in items {
        for limit in [item.promised_limit, item.statutory_limit] {
            if !limits.contains(&limit) {
                limits.push(limit);
            }
        }
    }
    limits
}
