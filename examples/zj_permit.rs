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
use systems::cli::{SoapArgs, init_logging};
use systems::zj;

#[derive(Parser)]
#[command(
    about = "Simulated dl-zj-permit: SOAP 1.2 (GBK) in, its own acknowledgement codes, webhook events out. Modes: fail500 answers an HTTP 500 page, fail400 200 with E101, soap_server_fault 200 with E503 (busy)"
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
    let mut settings = zj::settings(config)?;
    args.apply(&mut settings);
    let system = zj::start(settings).await?;
    let endpoint = format!(
        "SOAP 1.2 endpoint  POST {}  (application/soap+xml, GBK; every answer 200 with <zj:HuiZhi>)",
        system.url(zj::APPLY_PATH)
    );
    args.serve(
        &system,
        zj::SYSTEM,
        &endpoint,
        &format!("the SOAP header element zj:{}", zj::ASSERTION_ELEMENT),
    )
    .await;
    Ok(())
}
