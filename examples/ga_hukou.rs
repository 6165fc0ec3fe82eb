//! The simulated 大连市公安局户政管理系统 (`dl-ga-hukou`): consumes applications from the
//! exchange `dl.ga.hukou` (routing key `apply`) and publishes its case steps to the queue
//! `dl.ga.hukou.events`, on a RabbitMQ broker.
//!
//! ```sh
//! cargo run --example ga_hukou -- --amqp amqp://guest:guest@127.0.0.1:5672/%2f --step-delay-ms 2000
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
use systems::{Mode, ga};

#[derive(Parser)]
#[command(about = "Simulated dl-ga-hukou: XML over AMQP in and out")]
struct Args {
    /// The broker.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
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
    /// The hub's configuration directory, for the mappings and the adapter.
    #[arg(long, default_value_os_t = systems::repo_dir())]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let config = systems::load_config(&args.config)?;
    let mut settings = ga::GaSettings::new(config, args.amqp.clone())?;
    settings.apply_queue = args.apply_queue.clone();
    settings.results_queue = (!args.no_results).then(|| args.results_queue.clone());
    settings.control_listen = Some(args.control_listen);
    settings.step_delay = Duration::from_millis(args.step_delay_ms);
    settings.late_by = Duration::from_millis(args.late_by_ms);
    settings.mode = args.mode;
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
