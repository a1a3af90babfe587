//! How the control plane's processes learn that they must stop: SIGTERM or
//! SIGINT, or — when started by `shoal up`, which sets
//! `SHOAL_EXIT_WITH_PARENT` — their supervisor going away, so that a killed
//! supervisor never leaves one behind.

use std::time::Duration;

/// Set by `shoal up` on the processes it supervises.
pub const EXIT_WITH_PARENT: &str = "SHOAL_EXIT_WITH_PARENT";

async fn parent_gone() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return std::future::pending().await;
    }
    let parent = std::os::unix::process::parent_id();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while std::os::unix::process::parent_id() == parent {
        tick.tick().await;
    }
}

/// Returns when the process should stop.
pub async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = parent_gone() => {}
    }
}
