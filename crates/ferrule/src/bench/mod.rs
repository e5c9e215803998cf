//! `ferrule bench`: the project's benchmark scenarios. Each runs Ferrule and,
//! where one exists, a baseline on the same machine in the same run, and prints
//! a Markdown table ready for docs/BENCHMARKS.md.

mod process;
mod startup;

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Time from process start to /readyz, and idle RSS; mosquitto as baseline.
    Startup(startup::StartupArgs),
}

pub fn main(args: BenchArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match args.scenario {
            Scenario::Startup(a) => startup::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
