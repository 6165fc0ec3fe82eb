//! Real-time e-supervision (实时电子监察): every case step from every connected system, its
//! clocks on the working-day calendar, and the rules that flag what breaks them.
//!
//! The parts here are pure: given events, items and a calendar they compute a case's state, its
//! deadlines and the alerts it deserves. Storing, timers and the feed build on them.

pub mod calendar;
pub mod case;
pub mod rules;
