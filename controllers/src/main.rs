//! `shoal-controllers`: the scheduler and the controllers in one process.

use std::process::ExitCode;

use clap::Parser;
use shoal_controllers::config::Cli;
use shoal_controllers::runner;

/// Set by `shoal up`: stop when the supervisor is gone, so a killed
/// supervisor never leaves a controller behind.
const EXIT_WITH_PARENT: &str = "SHOAL_EXIT_WITH_PARENT";

async fn supervisor_gone() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return std::future::pending().await;
    }
    let parent = std::os::unix::process::parent_id();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    while std::os::unix::process::parent_id() == parent {
        tick.tick().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = supervisor_gone() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let config = match cli.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("shoal-controllers: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shoal-controllers: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        runner::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-controllers: {e:#}");
            ExitCode::FAILURE
        }
    }
}
