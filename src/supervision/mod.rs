//! Real-time e-supervision (实时电子监察): every case step from every connected system, its
//! clocks on the working-day calendar, and the rules that flag what breaks them.
//!
//! `calendar`, `case` and `rules` are pure: given events, items and a calendar they compute a
//! case's state, its deadlines and the alerts it deserves. `engine` applies them: it follows the
//! feed of stored case events, keeps a timer per open case at the next moment its alerts can
//! change, and writes alert changes with their feed entries in one transaction. `publish` sends
//! the feed to RabbitMQ's `tongban.supervision` topic exchange when the bus is AMQP; the API
//! serves it as server-sent events.

pub mod calendar;
pub mod case;
pub mod engine;
pub mod publish;
pub mod rules;
