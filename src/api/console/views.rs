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
    ("usage.html", include_str!("templates/usage.html")),
    (
        "supervision.html",
        include_str!("templates/supervision.html"),
    ),
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
    env.add_function("bar_chart", bar_chart);
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
        "undeliverable" => "无法投递",
        "in_progress" => "办理中",
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

/// Text made safe to put in SVG or HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colours of a chart's series, in order.
const SERIES_COLOURS: &[&str] = &["#1f5fa8", "#c78a00", "#c0262d", "#2f7d9c", "#2e7d32"];

/// A grouped bar chart as inline SVG, drawn on the server: `labels` along the axis, one bar per
/// series at each (`series`: `[{"name", "values": [number | null]}]`), values written over the
/// bars, a legend when there are several series. `unit` follows each value ("%", "件").
fn bar_chart(title: String, labels: Value, series: Value, unit: Option<String>) -> Value {
    let unit = unit.unwrap_or_default();
    let labels: Vec<String> = labels
        .try_iter()
        .map(|it| {
            it.map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let series: Vec<(String, Vec<Option<f64>>)> = series
        .try_iter()
        .map(|it| {
            it.map(|s| {
                let name = s
                    .get_attr("name")
                    .ok()
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let values = s
                    .get_attr("values")
                    .ok()
                    .and_then(|v| {
                        v.try_iter()
                            .ok()
                            .map(|it| it.map(|x| f64::try_from(x).ok()).collect())
                    })
                    .unwrap_or_default();
                (name, values)
            })
            .collect()
        })
        .unwrap_or_default();
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let group = (series.len().max(1) * 18 + 14) as f64;
    let (left, base, height) = (12.0, 170.0, 130.0);
    // Wide enough for the bars and for the legend under them.
    let width = (left * 2.0 + group * labels.len().max(1) as f64)
        .max(left * 2.0 + 90.0 * series.len() as f64);
    let mut svg = format!(
        r##"<figure class="chart"><svg class="chart" viewBox="0 0 {width} 230" width="{width}" height="230" role="img" aria-label="{t}"><title>{t}</title><line x1="{left}" y1="{base}" x2="{x2}" y2="{base}" stroke="#8a939c"/>"##,
        t = escaped(&title),
        x2 = width - left,
    );
    for (i, label) in labels.iter().enumerate() {
        let x0 = left + group * i as f64 + 7.0;
        for (j, (name, values)) in series.iter().enumerate() {
            let Some(value) = values.get(i).copied().flatten() else {
                continue;
            };
            let h = if top > 0.0 { value / top * height } else { 0.0 };
            let x = x0 + 18.0 * j as f64;
            let shown = if value.fract() == 0.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.1}")
            };
            svg.push_str(&format!(
                r##"<rect x="{x}" y="{y:.1}" width="16" height="{h:.1}" fill="{c}"><title>{n} {l}：{shown}{u}</title></rect><text x="{tx}" y="{ty:.1}" text-anchor="middle" font-size="9">{shown}</text>"##,
                y = base - h,
                c = SERIES_COLOURS[j % SERIES_COLOURS.len()],
                n = escaped(name),
                l = escaped(label),
                u = escaped(&unit),
                tx = x + 8.0,
                ty = base - h - 3.0,
            ));
        }
        svg.push_str(&format!(
            r##"<text x="{x:.1}" y="186" text-anchor="middle" font-size="10">{l}</text>"##,
            x = x0 + (group - 14.0) / 2.0,
            l = escaped(label),
        ));
    }
    if series.len() > 1 {
        for (j, (name, _)) in series.iter().enumerate() {
            let x = left + 90.0 * j as f64;
            svg.push_str(&format!(
                r##"<rect x="{x}" y="206" width="10" height="10" fill="{c}"/><text x="{tx}" y="215" font-size="11">{n}</text>"##,
                c = SERIES_COLOURS[j % SERIES_COLOURS.len()],
                tx = x + 14.0,
                n = escaped(name),
            ));
        }
    }
    svg.push_str(&format!(
        "</svg><figcaption>{}</figcaption></figure>",
        escaped(&title)
    ));
    Value::from_safe_string(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_a_bar_per_value_scaled_to_the_largest_and_escapes_text() {
        let svg = bar_chart(
            "受理量<script>".into(),
            Value::from(minijinja::value::Serde(["2026-10", "2026-11"])),
            Value::from(minijinja::value::Serde(serde_json::json!([
                { "name": "办件", "values": [10, 20] },
                { "name": "超期", "values": [5, null] },
            ]))),
            Some("件".into()),
        )
        .to_string();
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 2,
            "three bars, two legend keys"
        );
        assert!(
            svg.contains(r#"height="130.0""#),
            "the largest fills the height: {svg}"
        );
        assert!(svg.contains(r#"height="65.0""#), "half of it half: {svg}");
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
