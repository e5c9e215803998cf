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
mod healthcheck;
mod logging;
mod progress;
mod rule_services;
mod serve;
mod startup;
mod tenant_move;
mod upgrade;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
        Command::Admin(command) => admin::main(command),
        Command::Bench(args) => bench::bench(args),
        Command::Simulate(args) => bench::simulate(args),
        Command::Healthcheck(args) => healthcheck::main(args),
        Command::Backup(args) if args.tenant.is_some() => backup_tenant(args),
        Command::Backup(args) => backup::backup_main(args),
        Command::Restore(args) if args.tenant => restore_tenant(args),
        Command::Restore(args) => backup::restore_main(args),
        Command::Check(args) => check::main(args),
    }
}

fn backup_tenant(args: cli::BackupArgs) -> ExitCode {
    data_dir::private_umask();
    let tenant = args.tenant.unwrap_or_default();
    tenant_move::exit_code(tenant_move::backup(
        args.config.as_deref(),
        args.data_dir.clone(),
        &tenant,
        &args.file,
    ))
}

fn restore_tenant(args: cli::RestoreArgs) -> ExitCode {
    data_dir::private_umask();
    let target = match args.server {
        Some(url) => tenant_move::Target::Server {
            url,
            token: args.token,
        },
        None => tenant_move::Target::DataDir {
            config: args.config,
            data_dir: args.data_dir,
        },
    };
    tenant_move::exit_code(tenant_move::restore(
        &args.file,
        args.as_id.as_deref(),
        target,
    ))
}
