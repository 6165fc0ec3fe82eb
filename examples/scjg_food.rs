//! The simulated 沈阳市食品经营许可审批系统 (`sy-scjg-food`): SOAP 1.1 on its adapter's address
//! (127.0.0.1:9101), posting its case steps and licences to the hub's webhook with its key,
//! and taking only deliveries that carry a valid identity assertion from the hub in its own
//! SOAP header element `<sp:身份令牌>` (where `mappings/scjg-food-application.toml` has the hub
//! put it).
//!
//! ```sh
//! TONGBAN_SYSTEM_KEY=… cargo run --example scjg_food -- --hub-url http://127.0.0.1:8080 --mode ok --step-delay-ms 2000
//! curl -X POST -H 'Content-Type: application/json' -d '{"mode":"fail500"}' http://127.0.0.1:9102/control/mode
//! curl http://127.0.0.1:9102/control/stats
//! ```

#[path = "systems/mod.rs"]
mod systems;

use clap::Parser;
use systems::cli::{SoapArgs, init_logging};
use systems::scjg;

#[derive(Parser)]
#[command(
    about = "Simulated sy-scjg-food: SOAP 1.1 in, webhook events out. Modes: fail400 and soap_server_fault answer SOAP faults (soap:Client, soap:Server)"
)]
struct Args {
    #[command(flatten)]
    system: SoapArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse().system;
    let config = systems::load_config(&args.config)?;
    let mut settings = scjg::settings(config)?;
    args.apply(&mut settings);
    let system = scjg::start(settings).await?;
    let endpoint = format!(
        "SOAP 1.1 endpoint  POST {}  (text/xml, SOAPAction required)",
        system.url(scjg::APPLY_PATH)
    );
    args.serve(
        &system,
        scjg::SYSTEM,
        &endpoint,
        &format!("the SOAP header element sp:{}", scjg::ASSERTION_ELEMENT),
    )
    .await;
    Ok(())
}
