//! The hub in this test process: the real start-up (configuration, store, catalog) serving on
//! a port of its own, with keys for its callers put straight into its store.

use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tongban::config::Config;
use tongban::hub;
use tongban::store::Store;

/// The hub in this process, serving on a port of its own; `callers` are the credentials made
/// for it.
pub struct InProcessHub<C> {
    pub base: String,
    pub callers: C,
    /// The hub's store, to read it or to take it away from under the hub.
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), hub::HubError>>,
}

impl<C> InProcessHub<C> {
    /// Compiles the configuration in `dir`, opens its store, seeds the catalog, makes the
    /// callers' credentials with `callers` and serves.
    pub async fn start(dir: &Path, callers: impl AsyncFnOnce(&Store) -> C) -> InProcessHub<C> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        InProcessHub::start_on(dir, listener, callers).await
    }

    /// As [`InProcessHub::start_on`], on `store` (a test's, on either backend) instead of the
    /// configuration's.
    pub async fn start_with_store(
        dir: &Path,
        store: &Store,
        listener: TcpListener,
        callers: impl AsyncFnOnce(&Store) -> C,
    ) -> InProcessHub<C> {
        let config =
            Config::load(dir).unwrap_or_else(|e| panic!("the test configuration compiles: {e}"));
        InProcessHub::serve(config, store.clone(), listener, callers).await
    }

    /// As [`InProcessHub::start`], serving on `listener`, bound before: a system that must know
    /// the hub's URL when it starts can then start before the configuration naming it is
    /// written.
    pub async fn start_on(
        dir: &Path,
        listener: TcpListener,
        callers: impl AsyncFnOnce(&Store) -> C,
    ) -> InProcessHub<C> {
        let config =
            Config::load(dir).unwrap_or_else(|e| panic!("the test configuration compiles: {e}"));
        let store = hub::open_store(&config).await.unwrap();
        InProcessHub::serve(config, store, listener, callers).await
    }

    async fn serve(
        config: Config,
        store: Store,
        listener: TcpListener,
        callers: impl AsyncFnOnce(&Store) -> C,
    ) -> InProcessHub<C> {
        hub::seed_catalog(&store, &config).await.unwrap();
        let callers = callers(&store).await;
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let hub_store = store.clone();
        let task = tokio::spawn(async move {
            hub::serve(&config, hub_store, listener, async {
                let _ = rx.await;
            })
            .await
        });
        InProcessHub {
            base,
            callers,
            store,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self, patience: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(patience, &mut self.task).await {
            Ok(Ok(result)) => result.expect("the hub stops cleanly"),
            Ok(Err(e)) => panic!("the hub task failed: {e}"),
            Err(_) => panic!("the hub did not stop"),
        }
    }
}
