//! The `ferrule-bench` binary as `ferrule bench` and `ferrule simulate`
//! start it. (Its being an integration test also makes `cargo test
//! --workspace` build the binary, which the server's `simulate` tests run.)

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrule-bench"))
        .args(args)
        .output()
        .expect("running ferrule-bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_lists_every_scenario_under_its_own_name() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    assert!(out.contains("Usage: ferrule bench"), "{out}");
    for scenario in [
        "startup",
        "mqtt",
        "telemetry",
        "commands",
        "rules",
        "backup",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{scenario} "))),
            "{scenario} missing from:\n{out}"
        );
    }
}

#[test]
fn simulate_names_itself_as_the_user_typed_it() {
    let (ok, out, _) = run(&["simulate", "--help"]);
    assert!(ok);
    assert!(out.contains("Usage: ferrule simulate"), "{out}");
    let (ok, _, err) = run(&["simulate", "--devices", "none"]);
    assert!(!ok);
    assert!(err.contains("--devices"), "{err}");
    let (ok, _, err) = run(&["simulate", "--no-such-flag"]);
    assert!(!ok);
    assert!(err.contains("Usage: ferrule simulate"), "{err}");
}

#[test]
fn a_backup_bench_with_nothing_to_time_is_refused() {
    let (ok, _, err) = run(&["backup", "--runs", "0"]);
    assert!(!ok);
    assert!(err.contains("--runs"), "{err}");
}
