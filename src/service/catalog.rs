//! The item catalog's use cases: writing an item (`PUT /api/v1/catalog/items/{code}`), importing
//! a file of items (`tongban catalog import`, the seed at first start), and the current items as
//! every application reads them ([`CurrentItems`]).

use crate::catalog::{self, ImportError, Item, PutOutcome};
use crate::schema::{Schemas, Violation};
use crate::store::{Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How an item was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// A new item: its first version.
    Created(Item),
    /// A new version of an item.
    Updated(Item),
    /// Content equal to the current version: nothing recorded.
    Unchanged(Item),
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the item has {} problem(s)", .0.len())]
    Invalid(Vec<Violation>),
    /// The change is based on a version that is no longer current.
    #[error("the change is based on version {base}, but the current version is {current}")]
    Conflict { base: i64, current: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes `body` as the item `code`, based on version `base` (the caller's `If-Match`) or the
/// body's own `version`: a new immutable version and a change feed entry, unless the content
/// equals the current version. `current` learns of it at once.
pub async fn put(
    store: &Store,
    schemas: &Schemas,
    current: &CurrentItems,
    code: &str,
    body: &Value,
    base: Option<i64>,
) -> Result<Written, PutError> {
    let mut violations = Vec::new();
    if body
        .get("code")
        .and_then(Value::as_str)
        .is_some_and(|c| c != code)
    {
        violations.push(Violation::new("/code", "must equal the code in the URL"));
    }
    let item = match catalog::parse_item(schemas, body) {
        Ok(item) if violations.is_empty() => item,
        Ok(_) => return Err(PutError::Invalid(violations)),
        Err(found) => {
            violations.extend(found);
            return Err(PutError::Invalid(violations));
        }
    };
    let base = base.or(item.version);
    let outcome = store.put_item(&item, base).await?;
    let version = match outcome {
        PutOutcome::Conflict { current } => {
            return Err(PutError::Conflict {
                base: base.unwrap_or_default(),
                current,
            });
        }
        PutOutcome::Created { version }
        | PutOutcome::Updated { version, .. }
        | PutOutcome::Unchanged { version } => version,
    };
    current.forget(&item.code);
    let stored = store
        .item_version(&item.code, version)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a version just written cannot be read".into()))?;
    Ok(match outcome {
        PutOutcome::Created { .. } => Written::Created(stored),
        PutOutcome::Updated { .. } => Written::Updated(stored),
        _ => Written::Unchanged(stored),
    })
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    /// Records that are not valid items; nothing was imported.
    #[error("{} bad record(s); nothing imported", .0.len())]
    Invalid(Vec<ImportError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports the items of `text` (a JSON array or NDJSON): all of them, or none when any record is
/// bad, every bad record named. Items equal to their current version stay as they are.
pub async fn import(
    store: &Store,
    schemas: &Schemas,
    text: &str,
) -> Result<ImportSummary, ImportFailure> {
    let items = catalog::parse_import(schemas, text).map_err(ImportFailure::Invalid)?;
    let mut summary = ImportSummary::default();
    for outcome in store.import_items(&items).await? {
        match outcome {
            PutOutcome::Created { .. } => summary.created += 1,
            PutOutcome::Updated { .. } => summary.updated += 1,
            PutOutcome::Unchanged { .. } | PutOutcome::Conflict { .. } => summary.unchanged += 1,
        }
    }
    Ok(summary)
}

/// How long what [`CurrentItems`] knows may lag behind a change made by another process (another
/// hub on the same store, `tongban catalog import`): it reads the change feed at most this often.
pub const CATALOG_FOLLOW: Duration = Duration::from_secs(1);

/// The catalog's current items as applications are checked against them, in memory: an item is
/// read from the store once, then served from here until the change feed says it changed.
/// Changes written through [`put`] in this process apply at once; others within
/// [`CATALOG_FOLLOW`]. An unknown code is remembered as unknown the same way, so a flood of
/// made-up codes does not reach the store.
#[derive(Clone)]
pub struct CurrentItems {
    inner: Arc<Mutex<Known>>,
    /// How often the change feed is read: [`CATALOG_FOLLOW`].
    follow_every: Duration,
}

struct Known {
    items: HashMap<String, Option<Arc<Item>>>,
    /// The change feed's position this cache has caught up to; `None` before the first look.
    seen: Option<i64>,
    looked_at: Instant,
}

/// Items remembered at most; beyond, the cache starts afresh (a catalog has thousands).
const REMEMBERED: usize = 50_000;

impl Default for CurrentItems {
    fn default() -> CurrentItems {
        CurrentItems::following_every(CATALOG_FOLLOW)
    }
}

impl CurrentItems {
    /// Current items that read the change feed at most every `period`.
    pub fn following_every(period: Duration) -> CurrentItems {
        CurrentItems {
            inner: Arc::new(Mutex::new(Known {
                items: HashMap::new(),
                seen: None,
                looked_at: Instant::now(),
            })),
            follow_every: period,
        }
    }

    /// The current version of item `code`, or `None` when the catalog has no such item.
    pub async fn get(&self, store: &Store, code: &str) -> Result<Option<Arc<Item>>, StoreError> {
        self.follow(store).await?;
        if let Some(known) = self.known().items.get(code) {
            return Ok(known.clone());
        }
        let item = store.current_item(code).await?.map(Arc::new);
        let mut known = self.known();
        if known.items.len() >= REMEMBERED {
            known.items.clear();
        }
        known.items.insert(code.to_owned(), item.clone());
        Ok(item)
    }

    /// Forgets `code`, so that the next look reads it again.
    pub fn forget(&self, code: &str) {
        self.known().items.remove(code);
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // Nothing panics while holding the lock, so it cannot be poisoned in practice; recover
        // the data all the same.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Catches up with the change feed, at most every `follow_every`: every item changed since
    /// is forgotten.
    async fn follow(&self, store: &Store) -> Result<(), StoreError> {
        let after = {
            let known = self.known();
            match known.seen {
                Some(_) if known.looked_at.elapsed() < self.follow_every => return Ok(()),
                seen => seen,
            }
        };
        let Some(after) = after else {
            // First look: nothing is known yet, so only the feed's position matters.
            let head = store.catalog_head().await?;
            let mut known = self.known();
            known.seen = Some(known.seen.map_or(head, |s| s.max(head)));
            known.looked_at = Instant::now();
            return Ok(());
        };
        let mut seen = after;
        loop {
            let changes = store.changes_after(seen, 1000).await?;
            let mut known = self.known();
            for change in &changes {
                known.items.remove(&change.code);
                seen = seen.max(change.seq);
            }
            if changes.len() < 1000 {
                known.seen = Some(known.seen.map_or(seen, |s| s.max(seen)));
                known.looked_at = Instant::now();
                return Ok(());
            }
        }
    }
}

/// The cursor a system's reading of the change feed is kept under.
fn read_cursor(system: &str) -> String {
    format!("catalog_read:{system}")
}

/// System `system` asked for the changes after `after`: it has taken every change up to it
/// (as far as the feed goes). Kept when it moves forward; reading from further back again
/// changes nothing.
pub async fn confirm_read(store: &Store, system: &str, after: i64) -> Result<(), StoreError> {
    let name = read_cursor(system);
    if after <= store.cursor(&name).await? {
        return Ok(());
    }
    let taken = after.min(store.catalog_head().await?);
    store.set_cursor(&name, taken).await
}

/// How far `system` has taken the change feed: 0 when it has not followed it.
pub async fn read_to(store: &Store, system: &str) -> Result<i64, StoreError> {
    store.cursor(&read_cursor(system)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &std::path::Path) -> Store {
        Store::open("sqlite://data/t.db", dir, 2).await.unwrap()
    }

    fn example_item() -> Item {
        let items: Vec<Item> =
            serde_json::from_str(include_str!("../../examples/province/catalog.json")).unwrap();
        items.into_iter().next().unwrap()
    }

    /// An item is read once and served from memory; a change another process makes (here
    /// straight to the store, past these caches) is seen once the change feed has been
    /// followed, and not before; an unknown code is remembered too, until the feed says it
    /// exists. One cache never looks at the feed again, the other every time.
    #[tokio::test]
    async fn items_are_served_from_memory_until_the_change_feed_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let item = example_item();
        store.put_item(&item, None).await.unwrap();
        let stale = CurrentItems::following_every(Duration::from_secs(3600));
        let fresh = CurrentItems::following_every(Duration::ZERO);
        for current in [&stale, &fresh] {
            assert_eq!(
                current
                    .get(&store, &item.code)
                    .await
                    .unwrap()
                    .unwrap()
                    .version,
                Some(1)
            );
            assert!(current.get(&store, "NO-SUCH-CODE").await.unwrap().is_none());
        }

        let mut changed = item.clone();
        changed.name.push_str("（新）");
        store.put_item(&changed, Some(1)).await.unwrap();
        let mut unknown = item.clone();
        unknown.code = "NO-SUCH-CODE".into();
        // Not a code the catalog's rules allow, but the store keeps what it is given.
        store.put_item(&unknown, None).await.unwrap();

        let cached = stale.get(&store, &item.code).await.unwrap().unwrap();
        assert_eq!(cached.version, Some(1), "served from memory");
        assert!(stale.get(&store, "NO-SUCH-CODE").await.unwrap().is_none());
        let seen = fresh.get(&store, &item.code).await.unwrap().unwrap();
        assert_eq!((seen.version, &seen.name), (Some(2), &changed.name));
        assert!(fresh.get(&store, "NO-SUCH-CODE").await.unwrap().is_some());
    }

    /// A change written through [`put`] is seen at once, whatever the follow period.
    #[tokio::test]
    async fn a_put_in_this_process_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let config =
            crate::config::Config::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let item = example_item();
        store.put_item(&item, None).await.unwrap();
        let current = CurrentItems::following_every(Duration::from_secs(3600));
        assert_eq!(
            current
                .get(&store, &item.code)
                .await
                .unwrap()
                .unwrap()
                .version,
            Some(1)
        );
        let mut body = serde_json::to_value(&item).unwrap();
        body["name"] = Value::from(format!("{}（新）", item.name));
        let written = put(&store, &config.schemas, &current, &item.code, &body, None)
            .await
            .unwrap();
        assert!(matches!(written, Written::Updated(_)), "{written:?}");
        assert_eq!(
            current
                .get(&store, &item.code)
                .await
                .unwrap()
                .unwrap()
                .version,
            Some(2)
        );
    }
}
