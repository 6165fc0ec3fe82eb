//! The console's templates, stylesheet and script, compiled into the binary, and the few
//! helpers the templates use (labels of codes, dates, SVG bars).

use crate::auth::Role;
use minijinja::{Environment, Value};

pub const CSS: &str = include_str!("assets/console.css");
pub const SCRIPT: &str = include_str!("assets/console.js");

/// Every page, by name; `.html` names are HTML-escaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("home.html", include_str!("templates/home.html")),
    ("error.html", include_str!("templates/error.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("alert.html", include_str!("templates/alert.html")),
    ("cases.html", include_str!("templates/cases.html")),
    ("case.html", include_str!("templates/case.html")),
    ("onboarding.html", include_str!("templates/onboarding.html")),
    (
        "onboarding_request.html",
        include_str!("templates/onboarding_request.html"),
    ),
    ("ledger.html", include_str!("templates/ledger.html")),
    ("funding.html", include_str!("templates/funding.html")),
    ("system.html", include_str!("templates/system.html")),
    ("keys.html", include_str!("templates/keys.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

/// The environment with every page, its labels and filters.
pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not parse is a build defect: the console test renders every
            // page, so this is seen before release; the hub still serves the API.
            tracing::error!(template = name, cause = %e, "a console template does not parse");
        }
    }
    env.add_filter("label", label);
    env.add_filter("when", when);
    env
}

/// A role's name in the interface.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Platform => "一网通办平台",
        Role::System => "部门系统",
        Role::Reviewer => "营商局审核",
        Role::Finance => "财政",
        Role::Supervisor => "电子监察",
        Role::Admin => "管理员",
    }
}

/// The Chinese label of a code the API answers with (levels, states, rules, outcomes,
/// integrations, verdicts); the code itself when it has none.
fn label(code: Value) -> String {
    let text = code
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| code.to_string());
    let named = match text.as_str() {
        "warning" => "预警",
        "yellow" => "黄牌",
        "red" => "红牌",
        "open" => "未解除",
        "resolved" => "已解除",
        "acknowledged" => "已签收",
        "assigned" => "已交办",
        "answered" => "已答复",
        "appealed" => "已申诉",
        "closed" => "已办结",
        "acknowledge" => "签收",
        "assign" => "交办",
        "answer" => "答复",
        "appeal" => "申诉",
        "close" => "办结",
        "time_limit" => "超时限",
        "step_overdue" => "环节超期",
        "out_of_order" => "环节顺序异常",
        "acceptance_refused" => "不予受理",
        "completion_without_reason" => "办结无理由",
        "repeated_supplement" => "多次补正",
        "shareable_material_requested" => "索要可共享材料",
        "system_silent" => "系统失联",
        "events_refused" => "报送被拒",
        "implausible_time" => "时间异常",
        "dispute_overdue" => "异议超期",
        "result_unsettled" => "结果未办结",
        "integrated" => "已对接",
        "partial" => "部分对接",
        "not_integrated" => "未对接",
        "same_source" => "事项同源",
        "identity" => "统一认证",
        "simulated_transaction" => "实时监察",
        "result_sharing" => "结果共享",
        "fundable" => "可安排经费",
        "not_fundable" => "不予安排",
        "refused" => "已退回",
        "probing" => "检测中",
        "awaiting_review" => "待审核",
        "rejected" => "未通过",
        "live" => "已接入",
        "passed" => "通过",
        "failed" => "未通过",
        "skipped" => "未检测",
        "integrate" => "对接",
        "retire" => "停用",
        "submitted" => "已提交",
        "accepted" => "已受理",
        "under_review" => "审查中",
        "decided" => "已决定",
        "delivered" => "已送达",
        "suspended" => "暂停计时",
        "completed" => "已办结",
        "dead" => "投递失败",
        "pending" => "待投递",
        _ => "",
    };
    if named.is_empty() {
        text
    } else {
        named.to_owned()
    }
}

/// An RFC 3339 time as `2026-12-06 10:05` (the API's times are China time already).
fn when(time: Value) -> String {
    let text = time.as_str().unwrap_or_default();
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute}"),
        _ => text.to_owned(),
    }
}
