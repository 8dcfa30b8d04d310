//! Bounded waiting: every wait in the tests ends, so a broken build fails
//! instead of hanging.

use std::{future::Future, time::Duration};

/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `condition` until it holds; panics naming `what` after `WAIT`.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls an async `condition` until it holds; panics naming `what` after `WAIT`.
pub async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
