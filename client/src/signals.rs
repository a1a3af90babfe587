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

/// Runs a control-plane process's main future on a new runtime, handing it
/// a receiver that turns true when the process must stop (after logging
/// `stopping`); errors are printed as `name: error`.
pub fn run_until_stopped<F, E>(
    name: &str,
    stopping: &'static str,
    main: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown().await;
            tracing::info!("{stopping}");
            let _ = stop.send(true);
        });
        main(stopped).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
