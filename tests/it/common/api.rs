//! The hub's API in this process without a socket: requests go straight to the router.

use super::{Issuer, TestSigner, TestStore};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tongban::api::audit_writer::AuditWriter;
use tongban::api::{self, AppState};
use tongban::config::Config;
use tongban::store::Store;
use tower::ServiceExt;

/// The API router over a fresh SQLite store with the example catalog seeded, and whatever must
/// live as long as it.
pub struct TestApi {
    pub router: axum::Router,
    pub store: Store,
    /// The guard's audit writer, to see how records share commits.
    pub audit: AuditWriter,
    _store: Option<TestStore>,
    _signer: TestSigner,
}

impl TestApi {
    /// The repository's configuration trusting `issuer` as the identity system, a fresh SQLite
    /// store with the catalog seeded and signing keys of its own.
    pub async fn new(issuer: &Issuer) -> TestApi {
        let t = super::sqlite_store().await;
        let mut config = super::config();
        issuer.install(&mut config);
        let store = t.store.clone();
        TestApi::build(config, store, Some(t)).await
    }

    /// The API with `config` over `store` (whose owner keeps it alive), the catalog seeded,
    /// signing keys of its own.
    pub async fn over(config: Config, store: &Store) -> TestApi {
        TestApi::build(config, store.clone(), None).await
    }

    async fn build(config: Config, store: Store, keep: Option<TestStore>) -> TestApi {
        let signer = super::test_signer();
        let state = AppState::new(
            Arc::new(config),
            store.clone(),
            signer.signer.clone(),
            signer.sealer.clone(),
        );
        tongban::hub::seed_catalog(&store, &state.config())
            .await
            .expect("catalog seeds");
        TestApi {
            audit: state.audit.clone(),
            router: api::router(state),
            store,
            _store: keep,
            _signer: signer,
        }
    }

    /// Sends `request` to the router: the status and the body as text.
    pub async fn send_text(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Sends `request` to the router: the status and the JSON body (null when there is none).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
