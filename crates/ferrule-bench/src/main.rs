//! `ferrule-bench`: the runner behind `ferrule bench …` and, when its first
//! argument is `simulate`, behind `ferrule simulate …`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "simulate") {
        // `ferrule simulate` names itself in help and errors.
        args.splice(0..2, [std::ffi::OsString::from("ferrule simulate")]);
        return ferrule_bench::simulate::main(ferrule_bench::simulate::SimulateArgs::parse_from(
            args,
        ));
    }
    ferrule_bench::main(ferrule_bench::BenchArgs::parse_from(args))
}
