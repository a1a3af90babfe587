//! Waiting on observable state, with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it yields `Some`, failing the test after `timeout`.
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match within(timeout, probe).await {
        Ok(value) => value,
        Err(how) => panic!("timed out after {timeout:?} waiting for {what}{how}"),
    }
}

/// Polls `probe` until it yields `Some`; after `timeout`, says how it
/// failed (an empty string, or a note that the probe itself hung), so the
/// caller can add what it knows to the failure.
pub async fn within<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, &'static str>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        // A probe that hangs (a request without a timeout) must not hang the test.
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        match tokio::time::timeout(left, probe()).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(_) => return Err(" (the probe itself hung)"),
        }
        if Instant::now() >= deadline {
            return Err("");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
