//! `ferrule-bench`: the benchmark runner behind `ferrule bench …`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ferrule_bench::main(ferrule_bench::BenchArgs::parse())
}
