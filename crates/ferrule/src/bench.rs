//! `ferrule bench …` hands over to the `ferrule-bench` binary (the
//! `ferrule-bench` crate) beside this one, naming this binary as the server
//! to measure: the server itself carries none of the load generators, HTTP
//! clients and baselines.

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

pub fn main(args: BenchArgs) -> ExitCode {
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
            "error: `ferrule bench` runs {}, which is not there: build it with \
             `cargo build --release -p ferrule-bench` (or `--workspace`)",
            runner.display()
        );
        return ExitCode::from(2);
    }
    // `exec` replaces this process: signals and the exit status are the
    // runner's own. It returns only on failure.
    let error = Command::new(&runner)
        .arg("--server")
        .arg(&me)
        .args(args.args)
        .exec();
    eprintln!("error: cannot run {}: {error}", runner.display());
    ExitCode::FAILURE
}
