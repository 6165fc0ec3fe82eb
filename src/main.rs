//! The `tongban` command line: serve the hub, check a configuration, import catalog items.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tongban::config::Config;
use tongban::hub;

/// Tongban (通办): the integration hub between departments' self-built systems and the unified
/// 一网通办 platform.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration directory holding hub.toml, adapters/, mappings/ and schemas/.
    #[arg(long, global = true, env = "TONGBAN_CONFIG", default_value = ".")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: open (and migrate) the store, import the example catalog when the catalog is
    /// empty, and serve the HTTP API until Ctrl-C or SIGTERM, letting in-flight requests finish.
    Serve {
        /// Listen on this address instead of hub.toml's server.listen.
        #[arg(long, env = "TONGBAN_LISTEN")]
        listen: Option<SocketAddr>,
        /// Use this store instead of hub.toml's store.url (sqlite:PATH or postgres://…).
        #[arg(long, env = "TONGBAN_STORE_URL")]
        store: Option<String>,
    },
    /// Compile the whole configuration and report every error with its file, line and key.
    /// Exits 0 with a one-line summary when the configuration is valid, 1 otherwise.
    Check,
    /// Map one document with a mapping from mappings/: legacy → canonical (the default), or
    /// canonical → legacy with `--to legacy`. Prints the mapped document, or every error with the
    /// field and its path in the input, and exits 1 on error. Nothing is sent anywhere.
    Map {
        /// The mapping's name: its file name in mappings/ without `.toml`.
        #[arg(long)]
        mapping: String,
        /// The document to map.
        #[arg(long)]
        input: PathBuf,
        /// Which side to produce.
        #[arg(long, value_enum, default_value_t = Side::Canonical)]
        to: Side,
    },
    /// Run the mapping tests in mappings/tests/<mapping>/ (see README): each case maps both ways
    /// and must give exactly the expected documents or errors. Prints a diff for each failure
    /// and exits 1 if any fails.
    Test,
    /// Work with the item catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Side {
    Canonical,
    Legacy,
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Import items from a JSON array or NDJSON file. Every bad record is reported with its
    /// index; a file with any bad record imports nothing. Items whose content equals the current
    /// version are left as they are; changed ones become new versions.
    Import {
        /// The file to import.
        file: PathBuf,
        /// Use this store instead of hub.toml's store.url.
        #[arg(long, env = "TONGBAN_STORE_URL")]
        store: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check => {
            let config = match Config::load(&cli.config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            println!(
                "configuration in {} is valid: hub on {}, store {}, {} adapter(s), {} mapping(s), {} schema(s)",
                cli.config.display(),
                config.hub.server.listen,
                tongban::store::redact(&config.hub.store.url),
                config.adapters.len(),
                config.mappings.len(),
                config.schemas.documents().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen, store } => {
            let mut config = load(&cli.config)?;
            if let Some(listen) = listen {
                config.hub.server.listen = listen;
            }
            if let Some(store) = store {
                config.hub.store.url = store;
            }
            let store = hub::open_store(&config)
                .await
                .context("starting the store")?;
            if let Some(summary) = hub::seed_catalog(&store, &config)
                .await
                .context("seeding the catalog")?
            {
                tracing::info!(
                    created = summary.created,
                    "catalog was empty: imported the seed file"
                );
            }
            let listener = hub::bind(&config).await?;
            tracing::info!(
                addr = %listener.local_addr()?,
                store = %tongban::store::redact(&config.hub.store.url),
                "tongban serving"
            );
            hub::serve(&config, store, listener, hub::shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Map { mapping, input, to } => {
            let config = load(&cli.config)?;
            let Some(m) = config.mappings.get(&mapping) else {
                anyhow::bail!(
                    "no mapping `{mapping}` in {} (known: {})",
                    cli.config.join("mappings").display(),
                    config
                        .mappings
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let mapped = match to {
                Side::Canonical => m.to_canonical(&bytes).map(|v| {
                    let mut text = serde_json::to_vec_pretty(&v).unwrap_or_default();
                    text.push(b'\n');
                    text
                }),
                Side::Legacy => match serde_json::from_slice(&bytes) {
                    Ok(canonical) => m.to_legacy(&canonical),
                    Err(e) => anyhow::bail!("{} is not JSON: {e}", input.display()),
                },
            };
            match mapped {
                Ok(out) => {
                    use std::io::Write;
                    std::io::stdout().write_all(&out)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!("{} error(s):", errors.len());
                    for e in errors {
                        eprintln!("  {e}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Test => {
            let config = load(&cli.config)?;
            let reports = tongban::mapping::cases::run_all(&config.dir, &config.mappings);
            let failed = reports.iter().filter(|r| !r.passed()).count();
            for r in &reports {
                if r.passed() {
                    println!("ok   {}/{}", r.mapping, r.case);
                } else {
                    println!("FAIL {}/{}", r.mapping, r.case);
                    for f in &r.failures {
                        println!(
                            "{}",
                            f.lines()
                                .map(|l| format!("     {l}"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        );
                    }
                }
            }
            println!(
                "mapping tests: {} passed, {failed} failed",
                reports.len() - failed
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Catalog {
            command: CatalogCommand::Import { file, store },
        } => {
            let mut config = load(&cli.config)?;
            if let Some(store) = store {
                config.hub.store.url = store;
            }
            let store = hub::open_store(&config)
                .await
                .context("starting the store")?;
            let summary = hub::import_file(&store, &config, &file).await?;
            println!(
                "imported {}: {} created, {} new version(s), {} unchanged",
                file.display(),
                summary.created,
                summary.updated,
                summary.unchanged
            );
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(dir).map_err(|errors| anyhow::anyhow!("{errors}"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
