//! The simulated 辽宁省社会保障卡服务系统 (`ln-rst-card`): REST JSON on its adapter's address
//! (127.0.0.1:9201), keeping its case steps and results in feeds the hub polls. Given the hub's
//! URL it takes only deliveries that carry a valid identity assertion from the hub in its own
//! body field `SFLP` (where `mappings/rst-card-application.toml` has the hub put it).
//!
//! ```sh
//! cargo run --example rst_card -- --hub-url http://127.0.0.1:8080 --mode ok --step-delay-ms 2000
//! curl 'http://127.0.0.1:9201/rst/card/events?after=0'
//! curl -X POST -H 'Content-Type: application/json' -d '{"mode":"down"}' http://127.0.0.1:9202/control/mode
//! ```

#[path = "systems/mod.rs"]
mod systems;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use systems::cli::{init_logging, shutdown_signal};
use systems::{Mode, rst};

#[derive(Parser)]
#[command(about = "Simulated ln-rst-card: REST JSON in, polled event and result feeds out")]
struct Args {
    /// The hub's base URL, for the keys that check identity assertions
    /// ({hub}/.well-known/jwks.json). Without it assertions are not checked.
    #[arg(long, env = "TONGBAN_HUB_URL", value_name = "URL")]
    hub_url: Option<String>,
    /// Whether deliveries need a valid identity assertion (true or false); default: true when
    /// --hub-url is given. With false, assertions that come are still checked and recorded.
    #[arg(long, env = "TONGBAN_REQUIRE_ASSERTION", action = clap::ArgAction::Set)]
    require_assertion: Option<bool>,
    /// The issuer (`iss`) identity assertions must name.
    #[arg(long, env = "TONGBAN_ASSERTION_ISSUER", default_value = systems::assertion::DEFAULT_ISSUER)]
    assertion_issuer: String,
    /// ok, fail500, fail400, hang, garbage, down or slow:<ms> (soap_server_fault acts as fail500).
    #[arg(long, default_value = "ok")]
    mode: Mode,
    /// Delay before each case step.
    #[arg(long, default_value_t = 2000)]
    step_delay_ms: u64,
    /// Report each step this long after it happened (with --report-late).
    #[arg(long, default_value_t = 30000)]
    late_by_ms: u64,
    /// Start with the report_late flag set.
    #[arg(long)]
    report_late: bool,
    /// Start with the skip_steps flag set (no 审查 step).
    #[arg(long)]
    skip_steps: bool,
    /// Where to listen; default: the adapter's url.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the control API is served on its own (it stays up in mode `down`); default: the
    /// listen port + 1.
    #[arg(long)]
    control_listen: Option<SocketAddr>,
    /// The hub's configuration directory, for the mappings and the adapter.
    #[arg(long, default_value_os_t = systems::repo_dir())]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let config = systems::load_config(&args.config)?;
    let mut settings = rst::RstSettings::new(config)?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let mut control_listen = settings.listen;
    control_listen.set_port(settings.listen.port().wrapping_add(1));
    settings.control_listen = Some(args.control_listen.unwrap_or(control_listen));
    settings.hub_url = args.hub_url.clone();
    settings.require_assertion = args.require_assertion;
    settings.assertion_issuer = args.assertion_issuer.clone();
    settings.step_delay = Duration::from_millis(args.step_delay_ms);
    settings.late_by = Duration::from_millis(args.late_by_ms);
    settings.mode = args.mode;
    let system = rst::start(settings).await?;
    system.control.set_report_late(args.report_late);
    system.control.set_skip_steps(args.skip_steps);
    let control = system
        .control_addr
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("ln-rst-card (simulated) is up");
    println!(
        "  apply     POST {}  (application/json, Idempotency-Key required)",
        system.url(rst::APPLY_PATH)
    );
    println!("  events    GET  {}?after=N", system.url(rst::EVENTS_PATH));
    println!("  results   GET  {}?after=N", system.url(rst::RESULTS_PATH));
    println!(
        "  identity  {}",
        assertion_line(args.hub_url.as_deref(), args.require_assertion)
    );
    println!(
        "  mode      {}, a step every {} ms",
        args.mode, args.step_delay_ms
    );
    println!(
        "  control   POST http://{control}/control/mode {{\"mode\":\"…\"}}, GET http://{control}/control/stats"
    );
    println!("  (also on the main port while it is up). Ctrl-C or SIGTERM stops.");
    shutdown_signal().await;
    println!(
        "stopping; stats: {}",
        serde_json::to_string(&system.stats()).unwrap_or_default()
    );
    Ok(())
}

/// How the system treats identity assertions, as the settings resolve it.
fn assertion_line(hub_url: Option<&str>, require: Option<bool>) -> String {
    match (hub_url, require.unwrap_or(hub_url.is_some())) {
        (Some(hub), true) => format!(
            "assertion required, keys from {}",
            systems::assertion::jwks_url(hub)
        ),
        (Some(hub), false) => format!(
            "assertion checked, not required, keys from {}",
            systems::assertion::jwks_url(hub)
        ),
        (None, _) => "assertions not checked (no --hub-url)".to_string(),
    }
}
