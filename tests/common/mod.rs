//! Shared test fixtures: the repository's configuration, stores on SQLite and PostgreSQL, and
//! sample items.
#![allow(dead_code)]

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

/// A fresh, migrated store in a database of its own on the test PostgreSQL server, or `None`
/// when there is none (see [`postgres_admin_url`]).
pub async fn postgres_store() -> Option<TestStore> {
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
    let url = format!("{base}/{name}");
    let store = Store::open(&url, &repo(), 4)
        .await
        .expect("PostgreSQL store opens");
    Some(TestStore { store, _dir: None })
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

/// A temporary copy of the repository's configuration, as a fresh clone has it: `hub.toml`,
/// `adapters/`, `mappings/` (with its tests), `schemas/` and the example catalog.
pub fn config_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = repo();
    std::fs::copy(root.join("hub.toml"), dir.path().join("hub.toml")).expect("copy hub.toml");
    for folder in ["adapters", "mappings", "schemas", "examples/province"] {
        copy_tree(&root.join(folder), &dir.path().join(folder));
    }
    dir
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
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
