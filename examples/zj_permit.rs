//! The simulated 大连市建筑工程施工许可审批系统 (`dl-zj-permit`): SOAP 1.2 in GBK on its adapter's
//! address (127.0.0.1:9401), answering every delivery with HTTP 200 and its own acknowledgement
//! code, posting its case steps and permits to the hub's webhook with its key, and taking only
//! deliveries whose own header element `zj:TongYiShenFen` carries a valid identity assertion
//! from the hub.
//!
//! ```sh
//! TONGBAN_SYSTEM_KEY=… cargo run --example zj_permit -- --hub-url http://127.0.0.1:8080 --mode ok --step-delay-ms 2000
//! curl -X POST -H 'Content-Type: application/json' -d '{"mode":"fail400"}' http://127.0.0.1:9402/control/mode
//! curl http://127.0.0.1:9402/control/stats
//! ```

#[path = "systems/mod.rs"]
mod systems;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use systems::{Mode, zj};

#[derive(Parser)]
#[command(
    about = "Simulated dl-zj-permit: SOAP 1.2 (GBK) in, its own acknowledgement codes, webhook events out"
)]
struct Args {
    /// The hub's base URL; events go to {hub}/api/v1/systems/dl-zj-permit/events and /results,
    /// and the keys that check identity assertions come from {hub}/.well-known/jwks.json.
    #[arg(
        long = "hub-url",
        visible_alias = "hub",
        value_name = "URL",
        env = "TONGBAN_HUB_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    hub: String,
    /// The system's credential at the hub, sent as `Authorization: Bearer` with each event.
    #[arg(
        long,
        env = "TONGBAN_SYSTEM_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    hub_key: Option<String>,
    /// Whether deliveries need a valid identity assertion (true or false); with false,
    /// assertions that come are still checked and recorded.
    #[arg(long, env = "TONGBAN_REQUIRE_ASSERTION", default_value_t = true, action = clap::ArgAction::Set)]
    require_assertion: bool,
    /// The issuer (`iss`) identity assertions must name.
    #[arg(long, env = "TONGBAN_ASSERTION_ISSUER", default_value = systems::assertion::DEFAULT_ISSUER)]
    assertion_issuer: String,
    /// ok, fail500 (HTTP 500 page), fail400 (200 with E101), soap_server_fault (200 with E503
    /// busy), hang, garbage, down or slow:<ms>.
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
    /// Seconds between heartbeats to the hub (its silence rule counts them); 0 sends none.
    #[arg(long, default_value_t = 20)]
    heartbeat_secs: u64,
    /// The hub's configuration directory, for the mappings and the adapter.
    #[arg(long, default_value_os_t = systems::repo_dir())]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let config = systems::load_config(&args.config)?;
    let mut settings = zj::ZjSettings::new(config)?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let mut control_listen = settings.listen;
    control_listen.set_port(settings.listen.port().wrapping_add(1));
    settings.control_listen = Some(args.control_listen.unwrap_or(control_listen));
    settings.hub_url = Some(args.hub.clone());
    settings.hub_key = args.hub_key.clone();
    settings.require_assertion = Some(args.require_assertion);
    settings.assertion_issuer = args.assertion_issuer.clone();
    settings.step_delay = Duration::from_millis(args.step_delay_ms);
    settings.late_by = Duration::from_millis(args.late_by_ms);
    settings.mode = args.mode;
    settings.heartbeat_every =
        (args.heartbeat_secs > 0).then(|| Duration::from_secs(args.heartbeat_secs));
    let system = zj::start(settings).await?;
    system.control.set_report_late(args.report_late);
    system.control.set_skip_steps(args.skip_steps);
    let control = system
        .control_addr
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("dl-zj-permit (simulated) is up");
    println!(
        "  SOAP 1.2 endpoint  POST {}  (application/soap+xml, GBK; every answer 200 with <zj:HuiZhi>)",
        system.url(zj::APPLY_PATH)
    );
    println!(
        "  reports to         {}/api/v1/systems/{}/events and /results",
        args.hub.trim_end_matches('/'),
        zj::SYSTEM
    );
    println!(
        "  hub key            {}",
        if args.hub_key.is_some() {
            "set (Authorization: Bearer)"
        } else {
            "none: a hub that wants one refuses the events"
        }
    );
    println!(
        "  identity assertion {}, read from the SOAP header element zj:{}, keys from {}",
        if args.require_assertion {
            "required"
        } else {
            "checked, not required"
        },
        zj::ASSERTION_ELEMENT,
        systems::assertion::jwks_url(&args.hub)
    );
    println!(
        "  mode               {}, a step every {} ms",
        args.mode, args.step_delay_ms
    );
    println!(
        "  control API        POST http://{control}/control/mode {{\"mode\":\"…\"}}, GET http://{control}/control/stats"
    );
    println!("  (also on the main port while it is up). Ctrl-C or SIGTERM stops.");
    shutdown_signal().await;
    println!(
        "stopping; stats: {}",
        serde_json::to_string(&system.stats()).unwrap_or_default()
    );
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
