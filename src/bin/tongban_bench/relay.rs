//! The baseline: a bare HTTP relay. `POST /relay/soap` and `POST /relay/rest` forward the body,
//! as it came, to the SOAP or REST mock with reqwest and answer with the mock's status. No
//! authentication, validation, mapping, persistence or logging: what the machine allows for
//! "receive a request over HTTP and pass it on over HTTP" with the same libraries (axum, hyper,
//! reqwest) the hub uses.
//!
//! The mocks take only deliveries with an identity assertion, so the relay passes the user token
//! it received on as one, unchecked: a header of about the same size, and no cryptography.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Upstreams {
    client: reqwest::Client,
    soap: String,
    rest: String,
}

/// The relay, serving until stopped.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Starts the relay on 127.0.0.1, on the current runtime, forwarding to the two URLs.
    pub async fn start(soap: String, rest: String) -> Result<Relay, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the relay's client: {e}"))?;
        let upstreams = Arc::new(Upstreams { client, soap, rest });
        let app = Router::new()
            .route("/relay/{system}", post(forward))
            .with_state(upstreams);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("the relay cannot listen: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Relay {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits (at most `patience`) for in-flight requests.
    pub async fn stop(mut self, patience: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(patience, task).await;
        }
    }
}

async fn forward(
    State(up): State<Arc<Upstreams>>,
    Path(system): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let url = match system.as_str() {
        "soap" => &up.soap,
        "rest" => &up.rest,
        _ => return StatusCode::NOT_FOUND,
    };
    let mut request = up.client.post(url.as_str()).body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    if let Some(token) = headers.get("tongban-user-token") {
        request = request.header("tongban-assertion", token);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the answer so the connection goes back to the pool.
            let _ = response.bytes().await;
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}
