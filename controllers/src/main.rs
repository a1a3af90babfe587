//! `shoal-controllers`: the scheduler and the controllers in one process.

use std::process::ExitCode;

use clap::Parser;
use shoal_controllers::config::Cli;
use shoal_controllers::runner;

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
            shoal_client::signals::shutdown().await;
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
