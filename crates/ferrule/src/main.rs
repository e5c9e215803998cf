//! The `ferrule` binary: parses the command line and hands over to a
//! subcommand. Wiring lives in `serve`; the parts live in the library crates.

mod admin;
mod api_broker;
mod backup;
mod bench;
mod broker_state;
mod check;
mod cli;
mod config;
mod data_dir;
mod device_services;
mod gate;
mod logging;
mod progress;
mod rule_services;
mod serve;
mod startup;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
        Command::Admin(command) => admin::main(command),
        Command::Bench(args) => bench::main(args),
        Command::Backup(args) => backup::backup_main(args),
        Command::Restore(args) => backup::restore_main(args),
        Command::Check(args) => check::main(args),
    }
}
