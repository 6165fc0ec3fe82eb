//! What the simulated systems' binaries share: the options of a SOAP system that reports by
//! webhook (市场监管, 住建), how they become its settings and its start-up lines, Ctrl-C/SIGTERM,
//! and logging.

use super::{Mode, SoapSettings, SystemHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The options of a simulated SOAP system that reports to the hub by webhook.
#[derive(clap::Args)]
pub struct SoapArgs {
    /// The hub's base URL; events go to {hub}/api/v1/systems/<id>/events and /results, and the
    /// keys that check identity assertions come from {hub}/.well-known/jwks.json.
    #[arg(
        long = "hub-url",
        visible_alias = "hub",
        value_name = "URL",
        env = "TONGBAN_HUB_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub hub: String,
    /// The system's credential at the hub, sent as `Authorization: Bearer` with each event.
    #[arg(
        long,
        env = "TONGBAN_SYSTEM_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub hub_key: Option<String>,
    /// Whether deliveries need a valid identity assertion (true or false); with false,
    /// assertions that come are still checked and recorded.
    #[arg(long, env = "TONGBAN_REQUIRE_ASSERTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_assertion: bool,
    /// The issuer (`iss`) identity assertions must name.
    #[arg(long, env = "TONGBAN_ASSERTION_ISSUER", default_value = super::assertion::DEFAULT_ISSUER)]
    pub assertion_issuer: String,
    /// ok, fail500, fail400, soap_server_fault, hang, garbage, down or slow:<ms> (what each
    /// answers is the system's own: see its --help above).
    #[arg(long, default_value = "ok")]
    pub mode: Mode,
    /// Delay before each case step.
    #[arg(long, default_value_t = 2000)]
    pub step_delay_ms: u64,
    /// Report each step this long after it happened (with --report-late).
    #[arg(long, default_value_t = 30000)]
    pub late_by_ms: u64,
    /// Start with the report_late flag set.
    #[arg(long)]
    pub report_late: bool,
    /// Start with the skip_steps flag set (no 审查 step).
    #[arg(long)]
    pub skip_steps: bool,
    /// Where to listen; default: the adapter's url.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the control API is served on its own (it stays up in mode `down`); default: the
    /// listen port + 1.
    #[arg(long)]
    pub control_listen: Option<SocketAddr>,
    /// Seconds between heartbeats to the hub (its silence rule counts them); 0 sends none.
    #[arg(long, default_value_t = 20)]
    pub heartbeat_secs: u64,
    /// The hub's configuration directory, for the mappings and the adapter.
    #[arg(long, default_value_os_t = super::repo_dir())]
    pub config: PathBuf,
}

impl SoapArgs {
    /// `settings` as these options change them.
    pub fn apply(&self, settings: &mut SoapSettings) {
        if let Some(listen) = self.listen {
            settings.listen = listen;
        }
        // The port after the system's; with port 0 (any free one), any free one too.
        let mut control_listen = settings.listen;
        if settings.listen.port() != 0 {
            control_listen.set_port(settings.listen.port().wrapping_add(1));
        }
        settings.control_listen = Some(self.control_listen.unwrap_or(control_listen));
        settings.hub_url = Some(self.hub.clone());
        settings.hub_key = self.hub_key.clone();
        settings.require_assertion = Some(self.require_assertion);
        settings.assertion_issuer = self.assertion_issuer.clone();
        settings.step_delay = Duration::from_millis(self.step_delay_ms);
        settings.late_by = Duration::from_millis(self.late_by_ms);
        settings.mode = self.mode;
        settings.heartbeat_every =
            (self.heartbeat_secs > 0).then(|| Duration::from_secs(self.heartbeat_secs));
    }

    /// Sets the flags the options start with, prints what the system is and where (its
    /// `endpoint` line and where it reads the assertion given by the caller), serves until
    /// Ctrl-C or SIGTERM, and prints its stats.
    pub async fn serve(
        &self,
        system: &SystemHandle,
        id: &str,
        endpoint: &str,
        assertion_place: &str,
    ) {
        system.control.set_report_late(self.report_late);
        system.control.set_skip_steps(self.skip_steps);
        let control = system
            .control_addr
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!("{id} (simulated) is up");
        println!("  {endpoint}");
        println!(
            "  reports to         {}/api/v1/systems/{id}/events and /results",
            self.hub.trim_end_matches('/'),
        );
        println!(
            "  hub key            {}",
            if self.hub_key.is_some() {
                "set (Authorization: Bearer)"
            } else {
                "none: a hub that wants one refuses the events"
            }
        );
        println!(
            "  identity assertion {}, read from {assertion_place}, keys from {}",
            if self.require_assertion {
                "required"
            } else {
                "checked, not required"
            },
            super::assertion::jwks_url(&self.hub)
        );
        println!(
            "  mode               {}, a step every {} ms",
            self.mode, self.step_delay_ms
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
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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

/// Logs at `RUST_LOG`, `info` by default.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
