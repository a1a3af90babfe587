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
    shoal_client::signals::run_until_stopped("shoal-controllers", "stopping", |shutdown| runner::run(config, shutdown))
}
