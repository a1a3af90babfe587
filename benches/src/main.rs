//! `shoal-bench`: drive an etcd v3 API cluster with one workload and report.

use std::process::ExitCode;

use clap::Parser;
use shoal_bench::cli::Cli;
use shoal_bench::workload;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(workload::run(&cli)) {
        Ok(report) => {
            report.print();
            if let Some(path) = &cli.json {
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                if let Err(e) = std::fs::write(path, json) {
                    eprintln!("shoal-bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
