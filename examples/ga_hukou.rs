//! The simulated 大连市公安局户政管理系统 (`dl-ga-hukou`): consumes applications from the
//! exchange `dl.ga.hukou` (routing key `apply`) and publishes its case steps to the queue
//! `dl.ga.hukou.events`, on a RabbitMQ broker. Given the hub's URL it takes only messages
//! that carry a valid identity assertion from the hub in their element `<AuthToken>` (where
//! `mappings/ga-hukou-application.toml` has the hub put it).
//!
//! ```sh
//! cargo run --example ga_hukou -- --amqp amqp://guest:guest@127.0.0.1:5672/%2f --hub-url http://127.0.0.1:8080 --step-delay-ms 2000
//! curl -X POST -H 'Content-Type: application/json' -d '{"mode":"hang"}' http://127.0.0.1:9301/control/mode
//! ```
//!
//! Without a reachable broker it says so and exits (status 2): the system is skipped.

#[path = "systems/mod.rs"]
mod systems;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use systems::cli::{init_logging, shutdown_signal};
use systems::{Mode, ga};

#[derive(Parser)]
#[command(about = "Simulated dl-ga-hukou: XML over AMQP in and out")]
struct Args {
    /// The broker.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// The hub's base URL, for the keys that check identity assertions
    /// ({hub}/.well-known/jwks.json). Without it assertions are not checked.
    #[arg(long, env = "TONGBAN_HUB_URL", value_name = "URL")]
    hub_url: Option<String>,
    /// Whether messages need a valid identity assertion (true or false); default: true when
    /// --hub-url is given. With false, assertions that come are still checked and recorded.
    #[arg(long, env = "TONGBAN_REQUIRE_ASSERTION", action = clap::ArgAction::Set)]
    require_assertion: Option<bool>,
    /// The issuer (`iss`) identity assertions must name.
    #[arg(long, env = "TONGBAN_ASSERTION_ISSUER", default_value = systems::assertion::DEFAULT_ISSUER)]
    assertion_issuer: String,
    /// ok, fail500, fail400, hang, garbage, down or slow:<ms> (see the systems module).
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
    /// The queue applications are taken from (bound to the adapter's exchange and routing key).
    #[arg(long, default_value = ga::APPLY_QUEUE)]
    apply_queue: String,
    /// The queue certificates are published to.
    #[arg(long, default_value = ga::RESULTS_QUEUE)]
    results_queue: String,
    /// Publish no certificates.
    #[arg(long)]
    no_results: bool,
    /// Where the control API is served.
    #[arg(long, default_value = "127.0.0.1:9301")]
    control_listen: SocketAddr,
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
    // Said here, before a missing broker could be blamed for it.
    if args.require_assertion == Some(true) && args.hub_url.is_none() {
        anyhow::bail!("--require-assertion true needs --hub-url, for the hub's keys");
    }
    let config = systems::load_config(&args.config)?;
    let mut settings = ga::GaSettings::new(config, args.amqp.clone())?;
    settings.apply_queue = args.apply_queue.clone();
    settings.results_queue = (!args.no_results).then(|| args.results_queue.clone());
    settings.control_listen = Some(args.control_listen);
    settings.hub_url = args.hub_url.clone();
    settings.require_assertion = args.require_assertion;
    settings.assertion_issuer = args.assertion_issuer.clone();
    settings.step_delay = Duration::from_millis(args.step_delay_ms);
    settings.late_by = Duration::from_millis(args.late_by_ms);
    settings.mode = args.mode;
    settings.heartbeat_every =
        (args.heartbeat_secs > 0).then(|| Duration::from_secs(args.heartbeat_secs));
    let exchange = settings.exchange.clone();
    let routing_key = settings.routing_key.clone();
    let system = match ga::start(settings).await {
        Ok(system) => system,
        Err(e) => {
            eprintln!("dl-ga-hukou (simulated) skipped: {e}");
            std::process::exit(2);
        }
    };
    system.control.set_report_late(args.report_late);
    system.control.set_skip_steps(args.skip_steps);
    let control = system
        .control_addr
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "dl-ga-hukou (simulated) is up on {}",
        ga::redact(&args.amqp)
    );
    println!(
        "  applications  exchange {exchange}, routing key {routing_key} → queue {}",
        system.apply_queue
    );
    println!("  case events   queue {}", system.events_queue);
    match &system.results_queue {
        Some(queue) => println!("  certificates  queue {queue}"),
        None => println!("  certificates  not published"),
    }
    println!(
        "  identity      {}",
        assertion_line(args.hub_url.as_deref(), args.require_assertion)
    );
    println!(
        "  mode          {}, a step every {} ms",
        args.mode, args.step_delay_ms
    );
    println!(
        "  control API   POST http://{control}/control/mode {{\"mode\":\"…\"}}, GET http://{control}/control/stats"
    );
    println!("  Ctrl-C or SIGTERM stops.");
    shutdown_signal().await;
    println!(
        "stopping; stats: {}",
        serde_json::to_string(&system.stats()).unwrap_or_default()
    );
    system.shutdown().await;
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
