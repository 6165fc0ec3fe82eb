//! HTTP plumbing the simulated systems share: a listener that really goes away in mode `down`
//! and comes back on the same port, the control server, request helpers, random garbage,
//! posting to the hub with retries, and heartbeats.

use super::Tasks;
use super::control::{Control, Mode};
use axum::Router;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::serve::Listener;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP listener that closes while the system is `down` (so connections are refused) and binds
/// the same address again when it is not.
pub struct SwitchableListener {
    addr: SocketAddr,
    inner: Option<TcpListener>,
    mode: watch::Receiver<Mode>,
    control: Control,
}

impl SwitchableListener {
    /// Binds `addr` now (so a port in use is an error at start) unless the system starts
    /// `down`; with port 0 the port chosen is kept for later binds.
    pub async fn bind(addr: SocketAddr, control: Control) -> io::Result<SwitchableListener> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = (control.mode() != Mode::Down).then_some(listener);
        Ok(SwitchableListener {
            addr,
            inner,
            mode: control.watch_mode(),
            control,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Listener for SwitchableListener {
    type Io = CutOnDown;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutOnDown, SocketAddr) {
        loop {
            let down = *self.mode.borrow_and_update() == Mode::Down;
            if down {
                if self.inner.take().is_some() {
                    tracing::info!(addr = %self.addr, "down: stopped listening");
                }
                if self.mode.changed().await.is_err() {
                    // The control is gone: stay down.
                    std::future::pending::<()>().await;
                }
                continue;
            }
            let listener = match &self.inner {
                Some(listener) => listener,
                None => match TcpListener::bind(self.addr).await {
                    Ok(listener) => {
                        tracing::info!(addr = %self.addr, "up: listening again");
                        self.inner.insert(listener)
                    }
                    Err(e) => {
                        tracing::warn!(addr = %self.addr, "cannot bind again yet: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        return (CutOnDown::new(stream, self.control.clone()), peer);
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = self.mode.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A connection that is cut when the system goes `down` after it was accepted: an idle
/// kept-alive connection is closed at once, a busy one fails on its next read or write, so no
/// connection outlives the "outage".
pub struct CutOnDown {
    stream: TcpStream,
    epoch: u64,
    control: Control,
    /// Completes when the mode becomes `down`.
    down: Pin<Box<dyn Future<Output = ()> + Send>>,
    cut: bool,
}

impl CutOnDown {
    fn new(stream: TcpStream, control: Control) -> CutOnDown {
        let mut mode = control.watch_mode();
        CutOnDown {
            stream,
            epoch: control.down_epoch(),
            down: Box::pin(async move {
                let _ = mode.wait_for(|m| *m == Mode::Down).await;
            }),
            control,
            cut: false,
        }
    }

    /// Whether the connection is cut, registering `cx` to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.cut
            && (self.control.down_epoch() != self.epoch || self.down.as_mut().poll(cx).is_ready())
        {
            self.cut = true;
        }
        self.cut
            .then(|| io::Error::new(io::ErrorKind::ConnectionReset, "the system went down"))
    }
}

impl AsyncRead for CutOnDown {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutOnDown {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `router` on a [`SwitchableListener`] at `listen`, and the control API alone on
/// `control_listen` if given; returns the two addresses.
pub async fn serve(
    listen: SocketAddr,
    control_listen: Option<SocketAddr>,
    control: &Control,
    router: Router,
    tasks: &Tasks,
) -> anyhow::Result<(SocketAddr, Option<SocketAddr>)> {
    let listener = SwitchableListener::bind(listen, control.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.addr();
    let router = router.merge(super::control::router(control.clone()));
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("server stopped: {e}");
        }
    });
    let control_addr = match control_listen {
        Some(at) => Some(serve_control(at, control, tasks).await?),
        None => None,
    };
    Ok((addr, control_addr))
}

/// Serves only the control API on `at`.
pub async fn serve_control(
    at: SocketAddr,
    control: &Control,
    tasks: &Tasks,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {at} for the control API: {e}"))?;
    let addr = listener.local_addr()?;
    let router = super::control::router(control.clone());
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("control server stopped: {e}");
        }
    });
    Ok(addr)
}

/// The media type of a request (`text/xml` of `text/xml; charset=GB18030`), lower case.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// A header's value as text, trimmed, if present and not empty.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim().to_string();
    (!value.is_empty()).then_some(value)
}

/// `len` random bytes that are neither XML nor JSON nor UTF-8: what a broken gateway answers.
pub fn garbage(len: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = (nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)) | 1;
    let mut out = Vec::with_capacity(len.max(2));
    // Not `<`, `{`, `[` or whitespace up front, and a byte no UTF-8 text has.
    out.extend_from_slice(&[0xFF, 0x00]);
    while out.len() < len.max(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
    out
}

/// Why a post to the hub did not get through.
#[derive(Debug)]
pub enum PostError {
    /// 4xx other than 408/429: trying again will not help.
    Refused { status: u16, body: String },
    /// Still failing after every attempt.
    GaveUp { attempts: u32, last: String },
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Refused { status, body } => write!(f, "refused with {status}: {body}"),
            PostError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
        }
    }
}

/// How a system retries a post to the hub.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// POSTs `body` to `url`, with `Authorization: Bearer <key>` when a key is given (the hub's
/// `/api/v1` wants the system's credential), retrying connection failures, timeouts, 5xx, 408
/// and 429 with exponential backoff; returns the status of the answer that took it.
pub async fn post_with_retry(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    retry: Retry,
) -> Result<u16, PostError> {
    let mut backoff = retry.initial_backoff;
    let mut last = String::new();
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
        }
        let mut request = client
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .body(body.clone());
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if response.status().is_success() {
                    return Ok(status);
                }
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                if matches!(status, 400..=499) && status != 408 && status != 429 {
                    return Err(PostError::Refused { status, body: text });
                }
                last = format!("{status}: {text}");
            }
            Err(e) => {
                last = if e.is_connect() {
                    "cannot connect".to_string()
                } else if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    e.to_string()
                };
            }
        }
        tracing::warn!(url, attempt, "post to the hub failed: {last}");
    }
    Err(PostError::GaveUp { attempts, last })
}

/// Every `every`, tells the hub at `url` (`…/api/v1/systems/{id}/heartbeat`) that the system is
/// up, unless it is `down`: a system that is down is silent, which is what the hub's silence
/// rule is for. A failed heartbeat is only logged; the next one comes on time.
pub async fn heartbeats(
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    every: Duration,
    control: Control,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if control.mode() == Mode::Down {
            continue;
        }
        let mut request = client.post(&url);
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => tracing::debug!(url, "heartbeat sent"),
            Ok(r) => tracing::warn!(url, status = r.status().as_u16(), "heartbeat refused"),
            Err(e) => tracing::warn!(url, "heartbeat failed: {e}"),
        }
    }
}
