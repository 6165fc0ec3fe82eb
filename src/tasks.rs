//! Background tasks that come back after a panic: a lane, a poller, a queue consumer or the
//! supervision engine that panicked would otherwise be gone without a word while the hub goes
//! on answering, and its system would get no deliveries or no events until a restart.
//!
//! [`restarting`] runs the task made by its factory; when it panics, says so (with the task's
//! name) and makes a fresh one after a pause that doubles up to a minute. A task that returns
//! is done; shutdown ends the pause. Aborting or dropping `restarting` aborts the task it runs
//! too, so that a shutdown that gives up on it at its deadline really stops it.

use crate::backoff::Backoff;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Runs `make()` until it returns, starting a new one each time one panics, until `shutdown`
/// turns true. Returns how many times it panicked.
pub async fn restarting<F, Fut>(name: String, shutdown: watch::Receiver<bool>, make: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    restarting_after(FIRST_PAUSE, name, shutdown, make).await
}

async fn restarting_after<F, Fut>(
    first_pause: Duration,
    name: String,
    mut shutdown: watch::Receiver<bool>,
    mut make: F,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pauses = Backoff {
        initial: first_pause,
        max: LONGEST_PAUSE,
    };
    // Panics since the task last ran a good while: the pause doubles with each.
    let mut in_a_row = 0u32;
    let mut panics = 0;
    loop {
        let started = tokio::time::Instant::now();
        let pause = match AbortOnDrop(tokio::spawn(make())).await {
            Ok(()) => return panics,
            Err(e) if e.is_panic() => {
                panics += 1;
                // A task that ran a good while before it failed starts over with a short pause.
                in_a_row = if started.elapsed() > LONGEST_PAUSE {
                    1
                } else {
                    in_a_row.saturating_add(1)
                };
                let pause = pauses.after(in_a_row);
                tracing::error!(
                    task = %name,
                    panics,
                    restart_in_ms = pause.as_millis() as u64,
                    "a background task panicked; starting it again"
                );
                pause
            }
            // Cancelled: the runtime is going away.
            Err(_) => return panics,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|stop| *stop) => return panics,
        }
    }
}

/// A spawned task that is aborted when its handle is dropped: the task runs on its own (so that
/// a panic is caught as a `JoinError`), yet does not outlive whoever waits for it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_is_started_again_until_it_returns() {
        let (_stop, shutdown) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let panics = restarting_after(
            Duration::from_millis(1),
            "flaky".into(),
            shutdown,
            move || {
                let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    assert!(run > 2, "run {run} fails");
                }
            },
        )
        .await;
        assert_eq!((panics, runs.load(Ordering::SeqCst)), (2, 3));
    }

    #[tokio::test]
    async fn aborting_it_aborts_the_task_it_runs() {
        let (_stop, shutdown) = watch::channel(false);
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let (held, released) = tokio::sync::oneshot::channel::<()>();
        let started = std::sync::Mutex::new(Some((started, held)));
        let outer = tokio::spawn(restarting("never ends".into(), shutdown, move || {
            let (started, held) = started.lock().unwrap().take().expect("made once");
            async move {
                let _held = held;
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
        }));
        running.await.expect("the task started");
        outer.abort();
        // The task's state is dropped (its sender with it) only when the task itself ends.
        let ended = tokio::time::timeout(Duration::from_secs(30), released).await;
        assert!(
            matches!(ended, Ok(Err(_))),
            "the task went on after `restarting` was aborted"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_pause_before_a_restart() {
        let (stop, shutdown) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task = tokio::spawn(restarting_after(
            Duration::from_secs(3600),
            "always panics".into(),
            shutdown,
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { panic!("broken") }
            },
        ));
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        stop.send(true).unwrap();
        let panics = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("it stops without waiting out the pause")
            .unwrap();
        assert_eq!((panics, runs.load(Ordering::SeqCst)), (1, 1));
    }
}
