//! The hub's canonical model as types: the code lists (each a closed enum with one spelling,
//! [`code_list!`]) and the canonical documents that travel typed once read (the application's
//! item reference, the case event, the result), and the states the hub keeps (application, delivery, case,
//! alert).
//!
//! JSON Schema stays the contract at the edges: it gives the errors users see, all at once.
//! Once a document is valid it is read into its type here exactly once; nothing after that
//! compares strings against a code. A code's text exists in one place, its `as_str`; the store,
//! the feed, the API and the rules all go through it.

#[macro_use]
mod codes;
mod alert;
mod application;
mod case_event;
mod delivery;
mod inbound;
mod item;
mod onboarding;
mod result;

pub use alert::{AlertAction, CaseState, FollowUpAction, FollowUpState, Level, Rule};
pub use application::{
    Applicant, ApplicantKind, Application, ApplicationState, IdType, ItemRef, MaterialRef,
};
pub use case_event::{
    CaseEvent, Completion, CompletionResult, Node, NodeName, NodeResult, NodeType, SpecialKind,
    SpecialProcedure, Supplement, parse_time,
};
pub use codes::{Code, UnknownCode};
pub use delivery::{Acknowledgement, AttemptKind, DeliveryState};
pub use inbound::{FeedKind, MessageKind, Via};
pub use item::{ItemStatus, ItemType};
pub use onboarding::{Decision, IntegrationStatus, OnboardingState, Probe, ProbeOutcome};
pub use result::{
    DisputeOutcome, DisputeState, Holder, License, LicenseIssuer, ResultState, SharedResult,
};
