//! Serving the API over HTTP/1.1 with hyper, with the limits and timeouts of `[server]`.
//!
//! What the HTTP layer decides before the API sees a request:
//! - A connection has `header_read_timeout_seconds` to send a request's whole head, counted
//!   from when the hub starts waiting for it: just after connecting, and after each answer on a
//!   connection kept alive. A connection that sends nothing, stays idle, or sends half a head
//!   is closed then, without an answer (there is no request to answer).
//! - Heads are read up to a hard limit of [`HARD_LIMIT_FACTOR`] times `max_header_bytes` plus
//!   `max_uri_bytes`, and [`HARD_LIMIT_FACTOR`] times [`MAX_HEADER_FIELDS`] fields. Within it
//!   the API's own limits ([`super::edge::limits`]) answer 414 and 431 as problem+json.
//!
//! hyper answers some requests itself, with a status line and no body, and closes the
//! connection; nothing in hyper lets a server give those a body:
//! - 400 for a request that does not parse as HTTP/1.1 (a malformed request line, a header
//!   line without a colon, a control character in a header name or value, an invalid
//!   `Content-Length` or `Transfer-Encoding`);
//! - 431 for a head beyond the hard limit above;
//! - 414 for a request target over 65 534 bytes that fits within it.
//!
//! Bodies are the API's: their size and time limits are in [`super::input`]. HTTP/2 is not
//! served: the province's gateway speaks HTTP/1.1 to the hub.

use super::edge::MAX_HEADER_FIELDS;
use crate::config::Config;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How far above the API's own limits the HTTP layer's hard limits are.
pub const HARD_LIMIT_FACTOR: usize = 4;

/// The API, ready to serve on a listener: [`Server::with_graceful_shutdown`] runs it.
pub struct Server {
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    max_buf_size: usize,
}

/// Serves `router` on `listener` with the limits and timeouts of `[server]` in `config`.
pub fn serve(listener: TcpListener, router: Router, config: &Config) -> Server {
    let config = &config.hub.server;
    Server {
        listener,
        router,
        header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
        max_buf_size: HARD_LIMIT_FACTOR * (config.max_header_bytes + config.max_uri_bytes),
    }
}

impl Server {
    /// Serves until `signal` completes, then stops accepting, lets every connection finish
    /// the request it is on, and returns when all are closed. Dropped before that, it aborts
    /// the connections still open.
    pub async fn with_graceful_shutdown(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_buf_size.max(8192))
            .max_headers(HARD_LIMIT_FACTOR * MAX_HEADER_FIELDS)
            .keep_alive(true);
        // Connections watch `stopping` for the signal; the server waits for every connection
        // to drop its `open` receiver.
        let (stop, stopping) = watch::channel(());
        let (all_closed, open) = watch::channel(());
        // Dropping this future (a shutdown whose grace ran out) aborts every connection, with
        // the request it is on.
        let mut connections = tokio::task::JoinSet::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            while connections.try_join_next().is_some() {}
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
                _ = &mut signal => break,
            };
            let service = TowerToHyperService::new(self.router.clone());
            let builder = builder.clone();
            let (mut stopping, open) = (stopping.clone(), open.clone());
            connections.spawn(async move {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let mut connection = std::pin::pin!(connection);
                let mut stopping_seen = false;
                loop {
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(cause = %e, "connection ended with an error");
                            }
                            break;
                        }
                        // Its sender dropped: the server is stopping.
                        _ = stopping.changed(), if !stopping_seen => {
                            stopping_seen = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
                drop(open);
            });
        }
        drop(self.listener);
        // Dropping the sender wakes every connection's `changed()`.
        drop(stop);
        drop(stopping);
        drop(open);
        all_closed.closed().await;
        Ok(())
    }
}

/// A failed accept: one connection's trouble passes at once; running out of file descriptors
/// or memory needs a moment before trying again.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::error!(cause = %e, "cannot accept a connection; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
