//! `shoal-agent`: the node agent. The same binary is also each container's
//! supervisor (`supervise`), the container's first process before it runs
//! the command (`init`), and the probe helper (`enter`); those modes are
//! chosen by the first argument, before any thread starts.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use shoal_agent::config::Cli;
use shoal_agent::runtime::linux::{enter, init, supervise};

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("supervise"), Some(dir)) => return exit_code(supervise::run(Path::new(dir))),
        (Some("init"), Some(dir)) => return exit_code(init::run(Path::new(dir))),
        (Some("enter"), Some(_)) => return exit_code(enter::run(&args[2..])),
        _ => {}
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let config = match cli.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("shoal-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if config.hollow > 0 {
        let count = config.hollow;
        return shoal_client::signals::run_until_stopped("shoal-agent", "stopping the hollow nodes", |shutdown| {
            shoal_agent::hollow::run(config, count, shutdown)
        });
    }
    shoal_client::signals::run_until_stopped("shoal-agent", "stopping; containers keep running", |shutdown| {
        shoal_agent::agent::run(config, shutdown)
    })
}
