//! Waiting for what should happen: every wait is a poll with a deadline, so that a test fails
//! with what it saw instead of hanging, and no assertion rests on how long something took.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `probe` until it gives `Ok`, at most [`PATIENCE`]; `Err` says what it saw instead.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => {
                if start.elapsed() > PATIENCE {
                    panic!("waited {PATIENCE:?} for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `condition` holds, looking often, at most [`PATIENCE`].
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
