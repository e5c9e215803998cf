//! The `ferrule` binary: parses the command line and hands over to a
//! subcommand. Wiring lives in `serve`; the parts live in the library crates.

mod admin;
mod api_broker;
mod bench;
mod broker_state;
mod cli;
mod config;
mod data_dir;
mod device_services;
mod gate;
mod logging;
mod rule_services;
mod serve;
mod startup;
mod tenant_move;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
        Command::Admin(command) => admin::main(command),
        Command::Bench(args) => bench::main(args),
        Command::Backup(args) => backup(args),
        Command::Restore(args) => restore(args),
    }
}

fn backup(args: cli::BackupArgs) -> ExitCode {
    data_dir::private_umask();
    let result = match &args.tenant {
        Some(tenant) => tenant_move::backup(
            args.config.as_deref(),
            args.data_dir.clone(),
            tenant,
            &args.file,
        ),
        None => Err(tenant_move::Refused(
            "full backups are not in this build yet: give --tenant ID".into(),
        )
        .into()),
    };
    tenant_move::exit_code(result)
}

fn restore(args: cli::RestoreArgs) -> ExitCode {
    data_dir::private_umask();
    let result = if args.tenant {
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
        tenant_move::restore(&args.file, args.as_id.as_deref(), target)
    } else {
        Err(tenant_move::Refused(
            "full restores are not in this build yet: give --tenant for a tenant archive".into(),
        )
        .into())
    };
    tenant_move::exit_code(result)
}
