//! The canonical case event (`schemas/case-event.schema.json`) as a type, and its code lists:
//! the step (环节名称), the node type (环节类型), the node result (环节结果), the kind of special
//! procedure (特别程序种类) and the completion result (办结结果), as DOMAIN.md defines them.

use serde::{Deserialize, Deserializer};

code_list! {
    /// 环节名称: the step an event reports.
    pub enum NodeName ("step (环节名称)") {
        Acceptance = "受理",
        Review = "审查",
        Decision = "决定",
        Delivery = "送达",
        Supplement = "补正",
        SpecialProcedure = "特别程序",
        Completion = "办结",
    }
}

impl NodeName {
    /// The step as an ASCII word, for AMQP routing keys (topic bindings match words, and
    /// brokers and tools handle ASCII keys best).
    pub const fn routing_word(self) -> &'static str {
        match self {
            NodeName::Acceptance => "accept",
            NodeName::Review => "review",
            NodeName::Decision => "decide",
            NodeName::Delivery => "deliver",
            NodeName::Supplement => "supplement",
            NodeName::SpecialProcedure => "special",
            NodeName::Completion => "complete",
        }
    }
}

code_list! {
    /// 环节类型: 1 start, 2 middle, 3 end, 4 single.
    pub enum NodeType ("node type (环节类型)") {
        Start = "1",
        Middle = "2",
        End = "3",
        Single = "4",
    }
}

impl NodeType {
    /// Whether DOMAIN.md allows this result on a step of this type.
    pub fn allows(self, result: NodeResult) -> bool {
        use NodeResult::*;
        match self {
            NodeType::Start => matches!(result, Accepted | SupplementRequested | SpecialProcedure),
            NodeType::Middle => matches!(
                result,
                Disagree | Agree | SupplementRequested | SpecialProcedure | Returned
            ),
            NodeType::End => matches!(result, Disagree | Agree),
            NodeType::Single => matches!(result, Agree | NotAccepted | Rejected | Accepted),
        }
    }
}

code_list! {
    /// 环节结果.
    pub enum NodeResult ("node result (环节结果)") {
        /// 0 不同意.
        Disagree = "0",
        /// 1 同意.
        Agree = "1",
        /// 2 不受理.
        NotAccepted = "2",
        /// 3 不予受理.
        Rejected = "3",
        /// 4 受理.
        Accepted = "4",
        /// 5 补齐补正.
        SupplementRequested = "5",
        /// 6 特别程序.
        SpecialProcedure = "6",
        /// 7 退回.
        Returned = "7",
    }
}

impl NodeResult {
    /// The name DOMAIN.md gives the result.
    pub fn label(self) -> &'static str {
        match self {
            NodeResult::Disagree => "不同意",
            NodeResult::Agree => "同意",
            NodeResult::NotAccepted => "不受理",
            NodeResult::Rejected => "不予受理",
            NodeResult::Accepted => "受理",
            NodeResult::SupplementRequested => "补齐补正",
            NodeResult::SpecialProcedure => "特别程序",
            NodeResult::Returned => "退回",
        }
    }
}

code_list! {
    /// 特别程序种类.
    pub enum SpecialKind ("kind of special procedure (特别程序种类)") {
        /// 1 补正.
        Supplement = "1",
        /// 2 听证.
        Hearing = "2",
        /// 3 公示.
        PublicNotice = "3",
        /// 4 核查.
        Verification = "4",
        /// 5 中止.
        Suspension = "5",
        /// 6 预审补正.
        PreReviewSupplement = "6",
    }
}

code_list! {
    /// 办结结果.
    pub enum CompletionResult ("completion result (办结结果)") {
        /// 0 出证办结.
        Certificate = "0",
        /// 1 退回办结.
        Returned = "1",
        /// 2 作废办结.
        Void = "2",
        /// 3 删除办结.
        Deleted = "3",
        /// 4 转报办结.
        ReportedUp = "4",
        /// 5 补正不来办结.
        SupplementNeverArrived = "5",
        /// 6 办结.
        Completed = "6",
    }
}

impl CompletionResult {
    /// The name DOMAIN.md gives the result.
    pub fn label(self) -> &'static str {
        match self {
            CompletionResult::Certificate => "出证办结",
            CompletionResult::Returned => "退回办结",
            CompletionResult::Void => "作废办结",
            CompletionResult::Deleted => "删除办结",
            CompletionResult::ReportedUp => "转报办结",
            CompletionResult::SupplementNeverArrived => "补正不来办结",
            CompletionResult::Completed => "办结",
        }
    }

    /// Results 1–5 end a case without granting it; DOMAIN.md requires a reason for them.
    pub fn requires_reason(self) -> bool {
        !matches!(
            self,
            CompletionResult::Certificate | CompletionResult::Completed
        )
    }
}

/// A canonical case event, as much of it as the case needs. Handler details are not read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CaseEvent {
    pub event_id: String,
    pub application_id: String,
    pub system: String,
    pub node: Node,
    #[serde(default)]
    pub opinion: Option<String>,
    #[serde(default)]
    pub supplement: Option<Supplement>,
    #[serde(default)]
    pub special_procedure: Option<SpecialProcedure>,
    #[serde(default)]
    pub completion: Option<Completion>,
    /// Epoch milliseconds, from RFC 3339.
    #[serde(deserialize_with = "rfc3339_ms")]
    pub occurred_at: i64,
    /// When the hub received the event (epoch ms), if known: not part of the message, the
    /// store's. Without it the event counts as received when it happened.
    #[serde(skip)]
    pub received_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Node {
    pub name: NodeName,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub result: NodeResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Supplement {
    pub materials: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpecialProcedure {
    pub kind: SpecialKind,
    pub reason: String,
    #[serde(deserialize_with = "rfc3339_ms")]
    pub started_at: i64,
    #[serde(default, deserialize_with = "rfc3339_ms_opt")]
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Completion {
    pub result: CompletionResult,
    #[serde(default)]
    pub reason: Option<String>,
}

impl CaseEvent {
    /// Reads a canonical case event. The error never quotes the input (serde's messages can),
    /// because events are validated against their schema first and carry personal data.
    pub fn from_json(value: &serde_json::Value) -> Result<CaseEvent, &'static str> {
        CaseEvent::deserialize(value).map_err(|_| {
            "not a canonical case event: a field is missing, unknown or of the wrong type, or a time is not RFC 3339"
        })
    }
}

/// Parses an RFC 3339 time to epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn rfc3339_ms<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| serde::de::Error::custom("a time is not RFC 3339"))
}

fn rfc3339_ms_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_time(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("a time is not RFC 3339")),
    }
}
