//! `ferrule bench …` and `ferrule simulate …` hand over to the
//! `ferrule-bench` binary (the `ferrule-bench` crate) beside this one,
//! naming this binary as the server to measure: the server itself carries
//! none of the load generators, simulated devices, HTTP clients and
//! baselines.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use clap::Args;

/// Everything after `bench`, passed on untouched (`--help` included).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "SCENARIO"
    )]
    pub args: Vec<OsString>,
}

/// Everything after `simulate`, passed on untouched (`--help` included).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct SimulateArgs {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OPTIONS"
    )]
    pub args: Vec<OsString>,
}

pub fn bench(args: BenchArgs) -> ExitCode {
    hand_over("bench", |runner, me| {
        runner.arg("--server").arg(me).args(args.args);
    })
}

pub fn simulate(args: SimulateArgs) -> ExitCode {
    hand_over("simulate", |runner, _| {
        runner.arg("simulate").args(args.args);
    })
}

/// Replaces this process with `ferrule-bench`, its arguments set by
/// `arguments` (given this binary's path).
fn hand_over(command: &str, arguments: impl FnOnce(&mut Command, &std::path::Path)) -> ExitCode {
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("error: cannot locate the ferrule binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runner = me.with_file_name("ferrule-bench");
    if !runner.exists() {
        eprintln!(
            "error: `ferrule {command}` runs {}, which is not there: build it with \
             `cargo build --release -p ferrule-bench` (or `--workspace`)",
            runner.display()
        );
        return ExitCode::from(2);
    }
    let mut exec = Command::new(&runner);
    arguments(&mut exec, &me);
    // `exec` replaces this process: signals and the exit status are the
    // runner's own. It returns only on failure.
    let error = exec.exec();
    eprintln!("error: cannot run {}: {error}", runner.display());
    ExitCode::FAILURE
}
