//! The `tongban` command line: serve the hub, check a configuration, import catalog items,
//! manage keys and verify the audit log.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tongban::clock::now_millis;
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
    /// (or the one way its files name) and must give exactly the expected documents or errors.
    /// Prints a diff for each failure and exits 1 if any fails.
    Test {
        /// Only this mapping's cases.
        #[arg(long)]
        mapping: Option<String>,
    },
    /// Work with the item catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Manage the hub's signing keys and the API keys callers authenticate with. Every key
    /// operation is written to the audit log.
    Keys {
        /// Use this store instead of hub.toml's store.url.
        #[arg(long, global = true, env = "TONGBAN_STORE_URL")]
        store: Option<String>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The inventory of self-built systems (systems.toml) and whether each is connected.
    Systems {
        #[command(subcommand)]
        command: SystemsCommand,
    },
    /// Onboard a system: submit its bundle to a running hub and follow the request.
    Onboard {
        /// The hub's address.
        #[arg(
            long,
            global = true,
            env = "TONGBAN_HUB",
            default_value = "http://127.0.0.1:8080"
        )]
        hub: String,
        /// The system's own API key (or an administrator's).
        #[arg(long, global = true, env = "TONGBAN_API_KEY", hide_env_values = true)]
        key: Option<String>,
        #[command(subcommand)]
        command: OnboardCommand,
    },
    /// Work with sealed results (credentials the hub seals for the issuing department).
    Results {
        #[command(subcommand)]
        command: ResultsCommand,
    },
    /// Work with the hash-chained audit log.
    Audit {
        /// Use this store instead of hub.toml's store.url.
        #[arg(long, global = true, env = "TONGBAN_STORE_URL")]
        store: Option<String>,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a signing key and make it the active one. The key it replaces is retired but
    /// stays published in /.well-known/jwks.json until assertions it signed have expired. A
    /// running hub picks the new key up within seconds.
    Generate {
        #[arg(long, value_enum, default_value_t = Alg::EdDSA)]
        alg: Alg,
        /// Make a sealing key instead ([sealing] keys_dir; Ed25519 only): it seals results from
        /// the hub's next start, and the keys before it stay published for good, so every seal
        /// made still verifies.
        #[arg(long)]
        sealing: bool,
    },
    /// List signing keys and API keys (never their secrets).
    List,
    /// Delete retired signing keys no verifier needs any more.
    Prune,
    /// Issue an API key and print it once; only its SHA-256 is kept.
    Issue {
        /// platform, system, reviewer, finance, supervisor or admin.
        #[arg(long)]
        role: String,
        /// For a system key: the system's id (its adapter file's name).
        #[arg(long)]
        system: Option<String>,
        /// Who or what the key is for.
        #[arg(long)]
        label: String,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API key by its id.
    Revoke { key_id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    #[value(name = "EdDSA")]
    EdDSA,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "RS256")]
    RS256,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole chain: every changed, deleted, inserted or reordered record is named.
    /// Prints the record count and the head hash (record them elsewhere as an anchor); exits 1
    /// when anything is wrong.
    Verify,
}

#[derive(Subcommand)]
enum SystemsCommand {
    /// Print the ledger: every system on the inventory, its department, plan, funding request,
    /// whether it is connected (has an adapter), and its status on each of the four
    /// integrations as the hub last judged it (from the store); exits 1 without an inventory.
    List {
        /// Use this store instead of hub.toml's store.url.
        #[arg(long, env = "TONGBAN_STORE_URL")]
        store: Option<String>,
    },
}

#[derive(Subcommand)]
enum OnboardCommand {
    /// Submit the bundle in DIR: `adapters/<system>.toml` (one), `mappings/*.toml` and
    /// `mappings/tests/<mapping>/*`, as a department keeps them. Prints the request, or every
    /// problem (exit 1).
    Submit { dir: PathBuf },
    /// Print a request: its state, probes and decision with reasons.
    Status { id: String },
}

#[derive(Subcommand)]
enum ResultsCommand {
    /// Verify a sealed result: its `eddsa-jcs-2022` proof, with the key the proof names looked
    /// up in the hub's controller document; that its issuer is the department its license
    /// names; and, when its status lists can be fetched, that it is neither revoked nor
    /// suspended. Exits 0 when all holds, 1 naming what does not.
    Verify {
        /// The sealed result (a JSON credential with a `proof`).
        file: PathBuf,
        /// The hub's controller document listing its sealing keys (saved from the hub), to
        /// verify offline; without it, it is fetched from the address the proof names.
        #[arg(long)]
        controller: Option<PathBuf>,
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

/// The compiled mapping `name`, or an error naming the ones there are.
fn mapping_named<'a>(
    config: &std::path::Path,
    mappings: &'a std::collections::BTreeMap<String, std::sync::Arc<tongban::mapping::Mapping>>,
    name: &str,
) -> anyhow::Result<&'a std::sync::Arc<tongban::mapping::Mapping>> {
    mappings.get(name).ok_or_else(|| {
        anyhow::anyhow!(
            "no mapping `{name}` in {} (known: {})",
            config.join("mappings").display(),
            mappings.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
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
                "configuration in {} is valid: hub on {}, store {}, {} adapter(s), {} mapping(s), {} schema(s), sharing: {} purpose(s), {} rule(s) on the negative list",
                cli.config.display(),
                config.hub.server.listen,
                tongban::store::redact(&config.hub.store.url),
                config.adapters.len(),
                config.mappings.len(),
                config.schemas.documents().count(),
                config.sharing.purposes.len(),
                config.sharing.rules.len()
            );
            if let Some(warning) = tongban::workers::calendar::check_calendar(&config, now_millis())
            {
                eprintln!("warning: {warning}");
            }
            for warning in tongban::mapping::cases::warnings(&cli.config, &config.mappings) {
                eprintln!("warning: {warning}");
            }
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
            let Some(compiled) = load_mappings(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            let m = mapping_named(&cli.config, &compiled.mappings, &mapping)?;
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
        Command::Test { mapping } => {
            let Some(compiled) = load_mappings(&cli.config) else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(name) = &mapping {
                mapping_named(&cli.config, &compiled.mappings, name)?;
            }
            let reports =
                tongban::mapping::cases::run(&cli.config, &compiled.mappings, mapping.as_deref());
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
        Command::Keys { store, command } => keys_command(&cli.config, store, command).await,
        Command::Onboard { hub, key, command } => onboard_command(&hub, key, command).await,
        Command::Systems {
            command: SystemsCommand::List { store },
        } => {
            let config = match Config::load(&cli.config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let (_, store) = open_with(&cli.config, store).await?;
            let statuses = store.integration_statuses().await?;
            store.close().await;
            let Some(inventory) = &config.systems else {
                eprintln!("no inventory: {} has no systems.toml", cli.config.display());
                return Ok(ExitCode::FAILURE);
            };
            println!(
                "{} system(s) on the inventory, {} connected",
                inventory.len(),
                inventory
                    .iter()
                    .filter(|s| config.adapters.contains_key(&s.id))
                    .count()
            );
            for s in inventory {
                let status = if config.adapters.contains_key(&s.id) {
                    format!("connected (adapters/{}.toml)", s.id)
                } else {
                    "not connected: not integrated".to_string()
                };
                println!(
                    "  {}  {}  {} ({})  plan {}  funding {} yuan for {}  {} item(s)  {}",
                    s.id,
                    s.name,
                    s.department_name,
                    s.department_uscc,
                    s.plan.as_str(),
                    s.funding_yuan,
                    s.funding_year,
                    s.items.len(),
                    status
                );
                let mut of_system: Vec<_> =
                    statuses.iter().filter(|r| r.system_id == s.id).collect();
                of_system.sort_by_key(|r| {
                    tongban::model::Probe::ALL
                        .iter()
                        .position(|p| *p == r.integration)
                });
                let judged: Vec<String> = of_system
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} since {}",
                            r.integration.as_str(),
                            r.status.as_str(),
                            tongban::clock::format_millis(r.since)
                        )
                    })
                    .collect();
                if judged.is_empty() {
                    println!("      not judged yet (a running hub judges the four integrations)");
                } else {
                    println!("      {}", judged.join(" · "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Results {
            command: ResultsCommand::Verify { file, controller },
        } => verify_sealed(&file, controller.as_deref()).await,
        Command::Audit {
            store,
            command: AuditCommand::Verify,
        } => {
            let (_, store) = open_with(&cli.config, store).await?;
            let records = store.audit_records().await?;
            let verification = tongban::audit::verify(&records);
            store.close().await;
            for finding in &verification.findings {
                println!("TAMPERED: {finding}");
            }
            println!(
                "audit log: {} record(s), head {}: {}",
                verification.records,
                verification.head,
                if verification.findings.is_empty() {
                    "chain intact".to_string()
                } else {
                    format!("{} problem(s)", verification.findings.len())
                }
            );
            Ok(if verification.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `tongban results verify`: whether the sealed result in `file` verifies with a key the hub's
/// controller document lists (from `controller`, or fetched from the address the proof names),
/// whether its issuer is the department its license names, and, when its status lists can be
/// fetched, whether it is revoked or suspended. Said on stdout (verifies, with the status) or
/// stderr (does not, and why); exits 1 when the seal or issuer is wrong or the result revoked
/// or suspended.
async fn verify_sealed(
    file: &std::path::Path,
    controller: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use tongban::seal::credential::{self, StatusFinding, StatusPurpose};
    let read = |path: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))
    };
    let sealed = read(file)?;
    let text = |pointer: &str| {
        sealed
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("(not given)")
            .to_string()
    };
    // What the verification needs from the network, fetched first: the check itself is pure.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let controller = match controller {
        Some(path) => read(path)?,
        None => {
            let method = text("/proof/verificationMethod");
            let address = method.split('#').next().unwrap_or_default();
            match fetch_json(&client, address).await {
                Ok(document) => document,
                Err(why) => {
                    eprintln!(
                        "{}: cannot fetch the controller document {address}: {why} (give it with --controller)",
                        file.display()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    let method = match tongban::seal::verify_with_controller(&sealed, &controller) {
        Ok(method) => method,
        Err(e) => {
            eprintln!("{}: the seal does not verify: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let issuer = credential::issuer_problems(&sealed);
    if !issuer.is_empty() {
        eprintln!(
            "{}: the seal verifies, but {}",
            file.display(),
            issuer.join("; ")
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut lists = std::collections::BTreeMap::new();
    for purpose in StatusPurpose::ALL {
        if let Some((url, _)) = credential::status_entry(&sealed, purpose) {
            let list = fetch_json(&client, &url).await;
            lists.insert(url, list);
        }
    }
    let fetch = |url: &str| lists.get(url).cloned().unwrap_or(Err("not fetched".into()));
    println!(
        "{}: the seal verifies: signed by {method} on {}, issuer {} ({})",
        file.display(),
        text("/proof/created"),
        text("/issuer/name"),
        text("/issuer/id"),
    );
    let mut invalid = false;
    for purpose in StatusPurpose::ALL {
        let finding = credential::status_finding(&sealed, purpose, &controller, &fetch);
        let said = match &finding {
            StatusFinding::Clear => format!("not {}", purpose_word(purpose)),
            StatusFinding::Set => {
                invalid = true;
                purpose_word(purpose).to_uppercase()
            }
            StatusFinding::NoEntry => "no status entry".into(),
            StatusFinding::NotChecked(why) => format!("not checked ({why})"),
        };
        println!("  {}: {said}", purpose.as_str());
    }
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn purpose_word(purpose: tongban::seal::credential::StatusPurpose) -> &'static str {
    match purpose {
        tongban::seal::credential::StatusPurpose::Revocation => "revoked",
        tongban::seal::credential::StatusPurpose::Suspension => "suspended",
    }
}

/// A JSON document fetched over HTTP, or why not.
async fn fetch_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

/// Who runs the command line, for the audit log.
fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

async fn open_with(
    dir: &std::path::Path,
    store: Option<String>,
) -> anyhow::Result<(Config, tongban::store::Store)> {
    let mut config = load(dir)?;
    if let Some(store) = store {
        config.hub.store.url = store;
    }
    let store = hub::open_store(&config)
        .await
        .context("starting the store")?;
    Ok((config, store))
}

async fn audit(
    store: &tongban::store::Store,
    action: &str,
    target: &str,
    detail: String,
) -> anyhow::Result<()> {
    store
        .append_audit(&tongban::audit::AuditEntry {
            actor: cli_actor(),
            action: action.into(),
            target: target.into(),
            outcome: "ok".into(),
            detail,
        })
        .await
        .context("writing the audit log")?;
    Ok(())
}

async fn keys_command(
    dir: &std::path::Path,
    store: Option<String>,
    command: KeysCommand,
) -> anyhow::Result<ExitCode> {
    use tongban::auth::keys;
    let (config, store) = open_with(dir, store).await?;
    let key_dir = hub::keys_dir(&config);
    let ttl = config.hub.signing.assertion_ttl_seconds;
    match command {
        KeysCommand::Generate { alg, sealing: true } => {
            if !matches!(alg, Alg::EdDSA) {
                eprintln!("sealing keys are Ed25519 (eddsa-jcs-2022): use --alg EdDSA");
                return Ok(ExitCode::FAILURE);
            }
            let seal_dir = hub::seal_keys_dir(&config);
            let entry = keys::generate(&seal_dir, keys::KeyAlg::EdDSA)?;
            audit(
                &store,
                "key generate",
                &format!("sealing key {}", entry.kid),
                "EdDSA; previous sealing key retired (still published)".into(),
            )
            .await?;
            println!(
                "generated sealing key {} in {}; the hub seals with it from its next start",
                entry.kid,
                seal_dir.display()
            );
        }
        KeysCommand::Generate {
            alg,
            sealing: false,
        } => {
            let alg = match alg {
                Alg::EdDSA => keys::KeyAlg::EdDSA,
                Alg::ES256 => keys::KeyAlg::ES256,
                Alg::RS256 => keys::KeyAlg::RS256,
            };
            let entry = keys::generate(&key_dir, alg)?;
            audit(
                &store,
                "key generate",
                &format!("signing key {}", entry.kid),
                format!("{alg:?}; previous active key retired"),
            )
            .await?;
            println!(
                "generated signing key {} ({alg:?}) in {}; it signs from now on",
                entry.kid,
                key_dir.display()
            );
        }
        KeysCommand::List => {
            println!("signing keys in {}:", key_dir.display());
            for k in keys::list(&key_dir)? {
                println!(
                    "  {}  {:?}  created {}  {}",
                    k.kid,
                    k.alg,
                    tongban::clock::format_millis(k.created_at),
                    match k.retired_at {
                        None => "active".to_string(),
                        Some(at) if k.published(tongban::clock::now_millis(), ttl) => format!(
                            "retired {} (still published)",
                            tongban::clock::format_millis(at)
                        ),
                        Some(at) =>
                            format!("retired {} (prunable)", tongban::clock::format_millis(at)),
                    }
                );
            }
            println!("API keys:");
            for k in store.list_api_keys().await? {
                println!(
                    "  {}  {}{}  \"{}\"  created {} by {}{}{}",
                    k.key_id,
                    k.role,
                    k.system_id.map(|s| format!(" ({s})")).unwrap_or_default(),
                    k.label,
                    tongban::clock::format_millis(k.created_at),
                    k.created_by,
                    k.expires_at
                        .map(|t| format!("  expires {}", tongban::clock::format_millis(t)))
                        .unwrap_or_default(),
                    k.revoked_at
                        .map(|t| format!("  REVOKED {}", tongban::clock::format_millis(t)))
                        .unwrap_or_default(),
                );
            }
        }
        KeysCommand::Prune => {
            let gone = keys::prune(&key_dir, ttl)?;
            for kid in &gone {
                audit(
                    &store,
                    "key prune",
                    &format!("signing key {kid}"),
                    String::new(),
                )
                .await?;
            }
            println!("pruned {} retired signing key(s)", gone.len());
        }
        KeysCommand::Issue {
            role,
            system,
            label,
            expires_in_days,
        } => {
            use tongban::service::api_keys::{self, Field, KeyError, KeyRequest};
            let request = KeyRequest {
                role: Some(role),
                system,
                label: Some(label),
                expires_at: expires_in_days
                    .map(|d| tongban::clock::now_millis() + i64::from(d) * 86_400_000),
            };
            let issued = match api_keys::issue(&store, &config, &request, &cli_actor()).await {
                Ok(issued) => issued,
                Err(KeyError::Invalid(problems)) => {
                    let lines: Vec<String> = problems
                        .iter()
                        .map(|p| {
                            let option = match p.field {
                                Field::Role => "--role",
                                Field::System => "--system",
                                Field::Label => "--label",
                                Field::ExpiresAt => "--expires-in-days",
                            };
                            format!("  {option}: {}", p.message)
                        })
                        .collect();
                    anyhow::bail!(
                        "no key issued; {} problem(s):\n{}",
                        lines.len(),
                        lines.join("\n")
                    );
                }
                Err(e) => return Err(e.into()),
            };
            audit(
                &store,
                "key issue",
                &format!("/api/v1/keys/{}", issued.record.key_id),
                format!("API key for role {}", issued.record.role),
            )
            .await?;
            eprintln!(
                "issued API key {} for role {}; it is shown once:",
                issued.record.key_id, issued.record.role
            );
            println!("{}", issued.secret);
        }
        KeysCommand::Revoke { key_id } => {
            tongban::service::api_keys::revoke(&store, &key_id).await?;
            audit(
                &store,
                "key revoke",
                &format!("/api/v1/keys/{key_id}"),
                String::new(),
            )
            .await?;
            println!("revoked API key {key_id}; running hubs refuse it within seconds");
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn load(dir: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(dir).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// The schemas and mappings alone, for `map` and `test`, which need nothing else: errors in
/// them are printed and give `None`; errors elsewhere (`hub.toml`, adapters) are mentioned and
/// left to `tongban check`, so a department team can work on its mappings whatever the rest
/// of the directory holds.
fn load_mappings(dir: &std::path::Path) -> Option<tongban::config::Mappings> {
    let raw = tongban::config::RawConfig::read(dir);
    let compiled = tongban::config::compile_mappings(&raw);
    if !compiled.errors.is_empty() {
        eprintln!("{}", tongban::config::ConfigErrors(compiled.errors));
        return None;
    }
    if let Err(errors) = tongban::config::compile(&raw) {
        eprintln!(
            "note: the rest of the configuration has {} error(s), which `tongban check` lists; \
             the schemas and mappings compile, which is all this command needs",
            errors.0.len()
        );
    }
    Some(compiled)
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

/// `tongban onboard`: talks to a running hub over its API.
async fn onboard_command(
    hub: &str,
    key: Option<String>,
    command: OnboardCommand,
) -> anyhow::Result<ExitCode> {
    let Some(key) = key else {
        eprintln!("give the system's API key with --key or TONGBAN_API_KEY");
        return Ok(ExitCode::FAILURE);
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let hub = hub.trim_end_matches('/');
    let response = match command {
        OnboardCommand::Submit { dir } => {
            let bundle = match read_bundle_dir(&dir) {
                Ok(bundle) => bundle,
                Err(why) => {
                    eprintln!("{}: {why}", dir.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            client
                .post(format!("{hub}/api/v1/onboarding/requests"))
                .bearer_auth(&key)
                .json(&bundle)
                .send()
                .await?
        }
        OnboardCommand::Status { id } => {
            client
                .get(format!("{hub}/api/v1/onboarding/requests/{id}"))
                .bearer_auth(&key)
                .send()
                .await?
        }
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("{status}: {}", body["detail"].as_str().unwrap_or_default());
        for e in body["errors"].as_array().into_iter().flatten() {
            let at = [&e["path"], &e["pointer"], &e["field"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("  {at}: {}", e["message"].as_str().unwrap_or_default());
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "request {} for system {}: {}",
        body["id"].as_str().unwrap_or_default(),
        body["system"].as_str().unwrap_or_default(),
        body["state"].as_str().unwrap_or_default()
    );
    for p in body["probes"].as_array().into_iter().flatten() {
        println!(
            "  probe {}: {} ({})",
            p["probe"].as_str().unwrap_or_default(),
            p["outcome"].as_str().unwrap_or_default(),
            p["summary"].as_str().unwrap_or_default()
        );
        for reason in p["reasons"].as_array().into_iter().flatten() {
            println!("    - {}", reason.as_str().unwrap_or_default());
        }
    }
    if let Some(decision) = body["decision"].as_object() {
        println!(
            "  decision: {} by {}",
            decision["decision"].as_str().unwrap_or_default(),
            decision["by"].as_str().unwrap_or_default()
        );
        for (point, reason) in decision["reasons"].as_object().into_iter().flatten() {
            println!("    {point}: {}", reason.as_str().unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A bundle directory as the API takes it: `{"system", "files": {path: text | {"base64"}}}`,
/// the system named by its one adapter file.
fn read_bundle_dir(dir: &std::path::Path) -> Result<serde_json::Value, String> {
    use base64::Engine;
    let list = |folder: &std::path::Path| -> Result<Vec<PathBuf>, String> {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(folder) {
            Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot list {}: {e}", folder.display())),
        };
        paths.sort();
        Ok(paths)
    };
    let adapters: Vec<PathBuf> = list(&dir.join("adapters"))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    let [adapter] = adapters.as_slice() else {
        return Err(format!(
            "a bundle has one adapter file in adapters/, not {}",
            adapters.len()
        ));
    };
    let system = adapter
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut files = serde_json::Map::new();
    let mut paths = vec![adapter.clone()];
    paths.extend(
        list(&dir.join("mappings"))?
            .into_iter()
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml")),
    );
    for folder in list(&dir.join("mappings/tests"))?
        .into_iter()
        .filter(|p| p.is_dir())
    {
        paths.extend(list(&folder)?.into_iter().filter(|p| p.is_file()));
    }
    for path in paths {
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let relative = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let value = match String::from_utf8(bytes) {
            Ok(text) => serde_json::Value::String(text),
            Err(e) => serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
            }),
        };
        files.insert(relative, value);
    }
    Ok(serde_json::json!({ "system": system, "files": files }))
}
