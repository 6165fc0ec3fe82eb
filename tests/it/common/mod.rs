//! Shared test fixtures: the repository's configuration, stores on SQLite and PostgreSQL, and
//! sample items and applications; the submodules hold what end-to-end tests share.

pub mod api;
pub mod broker;
pub mod browser;
pub mod edit;
pub mod feed_queue;
pub mod hub;
pub mod logs;
pub mod mock;
pub mod process;
pub mod wait;

use serde_json::Value;
use sqlx::Executor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use tongban::config::Config;
use tongban::store::Store;

/// The repository root, which is also the default configuration directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's own configuration, compiled.
pub fn config() -> Config {
    Config::load(&repo())
        .unwrap_or_else(|e| panic!("the repository configuration must compile: {e}"))
}

/// A store and whatever must live as long as it (a temporary directory for SQLite).
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

/// A fresh, migrated SQLite store in a temporary directory.
pub async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open("sqlite://data/test.db", dir.path(), 4)
        .await
        .expect("SQLite store opens");
    TestStore {
        store,
        _dir: Some(dir),
        _database: None,
    }
}

/// The PostgreSQL server tests use: `TONGBAN_TEST_POSTGRES_URL` names a database on it whose
/// user may create databases. In CI (`CI` set) its absence is a failure; locally the test is
/// skipped, loudly.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TONGBAN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but TONGBAN_TEST_POSTGRES_URL is not: .ci/run must start PostgreSQL and export it"
            )
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL test, TONGBAN_TEST_POSTGRES_URL is not set (CI runs it against a real server) !!!\n"
            );
            None
        }
    }
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A database of a test's own on the test PostgreSQL server, dropped (its connections ended
/// first) when this is dropped, so that test runs leave nothing behind on a shared server.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async code: the statement gets a thread and a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop a test database");
            runtime.block_on(async {
                let pool = sqlx::AnyPool::connect(&admin).await?;
                pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                pool.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// A fresh, empty database on the test PostgreSQL server, or `None` when there is none (see
/// [`postgres_admin_url`]).
pub async fn postgres_database() -> Option<TestDatabase> {
    let admin = postgres_admin_url()?;
    sqlx::any::install_default_drivers();
    let name = format!(
        "tongban_test_{}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("the test PostgreSQL server answers");
    pool.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("URL has a database path");
    Some(TestDatabase {
        url: format!("{base}/{name}"),
        name,
        admin,
    })
}

/// A fresh, migrated store in a database of its own on the test PostgreSQL server, or `None`
/// when there is none (see [`postgres_admin_url`]).
pub async fn postgres_store() -> Option<TestStore> {
    let database = postgres_database().await?;
    let store = Store::open(&database.url, &repo(), 4)
        .await
        .expect("PostgreSQL store opens");
    Some(TestStore {
        store,
        _dir: None,
        _database: Some(database),
    })
}

/// The example province catalog.
pub fn example_items() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("examples/province/catalog.json"))
        .expect("examples/province/catalog.json");
    serde_json::from_str(&text).expect("the example catalog is a JSON array")
}

/// A valid item (the first of the example catalog).
pub fn sample_item() -> Value {
    example_items().remove(0)
}

/// The text of a file in the repository.
pub fn read_text(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap()
}

/// A JSON file in the repository.
pub fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read_text(relative)).unwrap()
}

/// A valid application for 食品经营许可 (sy-scjg-food), without an id.
pub fn scjg_application() -> Value {
    let mut app = read_json("examples/messages/application.json");
    app.as_object_mut().unwrap().remove("id");
    app
}

/// A valid application for 社会保障卡申领 (ln-rst-card), without an id.
pub fn rst_application() -> Value {
    let mut app = read_json("mappings/tests/rst-card-application/card-online.canonical.json");
    app.as_object_mut().unwrap().remove("id");
    app
}

/// Runs an async store test on SQLite and, when available, PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = $crate::common::sqlite_store().await;
                    super::$name(&t.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(t) = $crate::common::postgres_store().await {
                        super::$name(&t.store).await;
                    }
                }
            )*
        }
    };
}

/// Runs an async API test (taking a [`api::TestApi`]) over SQLite and, when available,
/// PostgreSQL.
#[macro_export]
macro_rules! on_both_apis {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let issuer = $crate::common::Issuer::new();
                    super::$name($crate::common::api::TestApi::new(&issuer).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(pg) = $crate::common::postgres_store().await else {
                        return;
                    };
                    let config = $crate::common::config();
                    super::$name($crate::common::api::TestApi::over(config, &pg.store).await).await;
                }
            )*
        }
    };
}

/// A temporary copy of the repository's configuration, as a fresh clone has it: `hub.toml`,
/// `adapters/`, `mappings/` (with its tests), `schemas/`, the example catalog and the demo
/// identity issuer's keys.
pub fn config_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = repo();
    for file in ["hub.toml", "sharing.toml"] {
        std::fs::copy(root.join(file), dir.path().join(file)).expect("copy a configuration file");
    }
    for folder in [
        "adapters",
        "mappings",
        "schemas",
        "examples/province",
        "examples/identity",
        "examples/calendar",
    ] {
        copy_tree(&root.join(folder), &dir.path().join(folder));
    }
    dir
}

/// Copies the directory `from`, with everything below it, to `to`.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

// ---- identity: an issuer with keys made in the test, API keys, the hub's signing keys ----

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::Arc;
use tongban::auth::Role;
use tongban::auth::assertion::Signer;

/// A unified identity issuer for tests: one RS256, one ES256 and one EdDSA key, generated now.
pub struct Issuer {
    pub issuer: String,
    pub user_audience: String,
    pub staff_audience: String,
    keys: Vec<(String, Algorithm, EncodingKey, Jwk)>,
}

impl Issuer {
    pub fn new() -> Issuer {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let rsa =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let rsa_der = rsa.as_der().expect("RSA PKCS#8").as_ref().to_vec();
        let rsa_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", rsa_der));
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let ed = Ed25519KeyPair::generate_pkcs8v1(&rng).expect("Ed25519 key");
        let made = [
            (
                "t-rsa",
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("RSA key loads"),
            ),
            (
                "t-ec",
                Algorithm::ES256,
                EncodingKey::from_ec_der(ec.as_ref()),
            ),
            (
                "t-ed",
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(ed.as_ref()),
            ),
        ];
        let keys = made
            .into_iter()
            .map(|(kid, alg, key)| {
                let mut jwk = Jwk::from_encoding_key(&key, alg).expect("public JWK");
                jwk.common.key_id = Some(kid.to_string());
                jwk.common.key_algorithm = Some(match alg {
                    Algorithm::RS256 => KeyAlgorithm::RS256,
                    Algorithm::ES256 => KeyAlgorithm::ES256,
                    _ => KeyAlgorithm::EdDSA,
                });
                (kid.to_string(), alg, key, jwk)
            })
            .collect();
        let config = config();
        Issuer {
            issuer: config.hub.identity.issuer.clone(),
            user_audience: config.hub.identity.user_audience.clone(),
            staff_audience: config.hub.identity.staff_audience.clone(),
            keys,
        }
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.3.clone()).collect(),
        }
    }

    /// Makes `config` trust this issuer's keys.
    pub fn install(&self, config: &mut Config) {
        config.hub.identity.jwks = tongban::config::JwksSource::File {
            path: "test-jwks.json".into(),
            keys: self.jwks(),
        };
    }

    /// Writes this issuer's JWK Set where a configuration directory's hub.toml expects it.
    pub fn install_in_dir(&self, dir: &std::path::Path) {
        let path = dir.join("examples/identity/jwks.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_vec_pretty(&self.jwks()).unwrap()).unwrap();
    }

    /// A token signed with key `key` (t-rsa, t-ec or t-ed) but naming `kid` in its header, as
    /// after a rotation that renamed the key.
    pub fn sign_as(&self, key: &str, kid: &str, claims: &Value) -> String {
        let (_, alg, key, _) = self
            .keys
            .iter()
            .find(|k| k.0 == key)
            .unwrap_or_else(|| panic!("no test key {key}"));
        let mut header = Header::new(*alg);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, key).expect("token signs")
    }

    /// A token with `claims`, signed with the key `kid` (t-rsa, t-ec or t-ed).
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let (kid, alg, key, _) = self
            .keys
            .iter()
            .find(|k| k.0 == kid)
            .unwrap_or_else(|| panic!("no test key {kid}"));
        let mut header = Header::new(*alg);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).expect("token signs")
    }

    /// Claims of a valid user token for the natural person `id_number` named `name`.
    pub fn user_claims(
        &self,
        kind: &str,
        id_type: &str,
        id_number: &str,
        name: &str,
        level: u8,
    ) -> Value {
        let now = tongban::clock::now_millis() / 1000;
        serde_json::json!({
            "iss": self.issuer, "aud": self.user_audience, "sub": format!("u-{id_number}"),
            "iat": now, "nbf": now - 5, "exp": now + 600,
            "name": name, "id_type": id_type, "id_number": id_number,
            "real_name_level": level, "applicant_kind": kind,
        })
    }

    /// A valid user token for the applicant of `application` (a canonical application body).
    pub fn token_for(&self, application: &Value, level: u8) -> String {
        let a = &application["applicant"];
        let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        self.sign(
            "t-rsa",
            &self.user_claims(
                &text("kind"),
                &text("id_type"),
                &text("id_number"),
                &text("name"),
                level,
            ),
        )
    }

    /// A staff token granting `roles`.
    pub fn staff_token(&self, subject: &str, roles: &[&str]) -> String {
        let now = tongban::clock::now_millis() / 1000;
        self.sign(
            "t-ec",
            &serde_json::json!({
                "iss": self.issuer, "aud": self.staff_audience, "sub": subject,
                "iat": now, "exp": now + 600, "roles": roles,
            }),
        )
    }
}

/// The hub's signing keys in a temporary directory (one Ed25519 key), and its sealing keys
/// (one, in `seal/`) for a hub reached at [`TEST_PUBLIC_URL`].
pub struct TestSigner {
    pub signer: Arc<Signer>,
    pub sealer: Arc<tongban::service::sealing::Sealer>,
    pub dir: tempfile::TempDir,
}

/// Where a hub of the tests that is not listening says it is.
pub const TEST_PUBLIC_URL: &str = "http://hub.test";

pub fn test_signer() -> TestSigner {
    let dir = tempfile::tempdir().expect("temporary directory");
    tongban::auth::keys::generate(dir.path(), tongban::auth::keys::KeyAlg::EdDSA)
        .expect("signing key");
    let signer = Arc::new(Signer::load(dir.path(), "tongban", 120).expect("signer loads"));
    let seal_dir = dir.path().join("seal");
    tongban::auth::keys::generate(&seal_dir, tongban::auth::keys::KeyAlg::EdDSA)
        .expect("sealing key");
    let sealer = Arc::new(
        tongban::service::sealing::Sealer::load(&seal_dir, TEST_PUBLIC_URL).expect("sealer loads"),
    );
    TestSigner {
        signer,
        sealer,
        dir,
    }
}

/// A recorder of inbound messages over `store`, sealing with a key of its own.
pub fn recorder(store: &Store) -> tongban::service::inbound::Recorder {
    // The keys are in memory once loaded: the directory may go.
    let keys = test_signer();
    tongban::service::inbound::Recorder::spawn(
        store.clone(),
        keys.sealer.clone(),
        tongban::telemetry::Telemetry::unexported(),
    )
}

/// Issues an API key for `role` (and `system`) straight into the store; returns its secret.
pub async fn api_key(store: &Store, role: Role, system: Option<&str>) -> String {
    let issued = tongban::auth::issue_key(role, system, "test", "test", None);
    store
        .insert_api_key(&issued.record)
        .await
        .expect("API key stored");
    issued.secret
}

/// `Authorization` header value for a secret or token.
pub fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

// ---- end-to-end runs: API keys issued by the command line, personal data found in text ----

/// Issues an API key with the real `tongban keys issue` against the configuration in `dir` (its
/// hub.toml's store, or `store` when given), as an operator does before starting the binary;
/// returns the secret, which is all the command prints on stdout.
pub fn cli_api_key(
    dir: &std::path::Path,
    role: &str,
    system: Option<&str>,
    store: Option<&str>,
) -> String {
    let mut command = process::tongban();
    command
        .args(["keys", "issue", "--role", role, "--label", "test"])
        .arg("--config")
        .arg(dir);
    if let Some(system) = system {
        command.args(["--system", system]);
    }
    if let Some(store) = store {
        command.args(["--store", store]);
    }
    let out = command.output().expect("the tongban binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tongban keys issue --role {role}: {:?}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = stdout.trim();
    assert!(
        secret.starts_with("tbk_") && secret.lines().count() == 1,
        "stdout is the key alone: {stdout}"
    );
    secret.to_string()
}

/// Every clear citizen ID number in `text`: each run of 18 characters that GB 11643 accepts
/// (region, birth date and check character), wherever it stands.
pub fn clear_citizen_ids(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for (i, window) in chars.windows(18).enumerate() {
        // Most windows fail on their first character; skip building a string for them.
        if !window[0].is_ascii_digit() || !window[..17].iter().all(char::is_ascii_digit) {
            continue;
        }
        // A lower-case check character is the same number written carelessly.
        let candidate: String = window.iter().collect::<String>().to_ascii_uppercase();
        if tongban::ids::check_citizen_id(&candidate).is_ok() {
            found.push(format!("{candidate} (at character {i})"));
        }
    }
    found
}

/// Stores the canonical case event `body` (JSON text) about an application the store holds, as
/// the inbound side would (its feed entry masked with the application's values); whether it
/// was new.
pub async fn record_event(store: &Store, body: &str) -> bool {
    let canonical: Value = serde_json::from_str(body).expect("the event is JSON");
    let id = canonical["application_id"]
        .as_str()
        .expect("an application id");
    let application = store
        .application(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the store holds application {id}"));
    let event = tongban::service::inbound::event_to_record(&application, &canonical)
        .expect("a canonical case event");
    store.record_event(&event).await.unwrap()
}

/// The shared RabbitMQ a test of `what` connects to (`TONGBAN_TEST_AMQP_URL`), or `None` after a
/// loud notice when there is none locally; in CI (`CI` set) its absence fails the test.
pub fn amqp_url(what: &str) -> Option<String> {
    match std::env::var("TONGBAN_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but TONGBAN_TEST_AMQP_URL is not: .ci/run must start RabbitMQ and export it"
            )
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPED: {what}, TONGBAN_TEST_AMQP_URL is not set (e.g. amqp://guest:guest@127.0.0.1:5672/%2f; CI runs it against a real RabbitMQ) !!!\n"
            );
            None
        }
    }
}
