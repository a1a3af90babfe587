//! `shoal`: run a store member with etcd's flags, or `shoal up` for a local cluster.

use std::process::ExitCode;

/// mimalloc: the gRPC and protobuf paths allocate per request, and glibc's
/// malloc showed up as a tenth of the CPU under load.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use shoal_store::config::{normalize_args, Cli, Command};
use shoal_store::{server, up};

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Set by `shoal up` on its members: stop when the supervisor is gone, so a
/// killed supervisor never leaves members behind.
const EXIT_WITH_PARENT: &str = "SHOAL_EXIT_WITH_PARENT";

async fn parent_gone() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return std::future::pending().await;
    }
    let parent = nix::unistd::getppid();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if nix::unistd::getppid() != parent {
            return;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
        _ = parent_gone() => tracing::warn!("supervisor exited; stopping"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args()));
    match cli.command {
        Some(Command::Up(args)) => up::run(args),
        None => {
            init_logging(&cli.member.log_level);
            let config = match cli.member.validate() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("shoal: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cli.member.worker_threads())
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("shoal: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(server::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), "member failed");
                    eprintln!("shoal: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
