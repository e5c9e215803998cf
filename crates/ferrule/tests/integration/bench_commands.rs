//! `ferrule bench commands` on a small scale against the real server: its
//! devices read real deltas and answer real commands, and its figures add up
//! to what was sent.

use ferrule_bench::commands::{CommandsArgs, run};

use crate::util::ferrule_bin;

fn small() -> CommandsArgs {
    ferrule_bench::launch::set_server_binary(ferrule_bin().into());
    CommandsArgs {
        devices: 4,
        rate: 40,
        seconds: 1,
        warmup: 0,
        concurrency: 8,
        twin_patches: 12,
        timeout: 5.0,
        cpu_pin: false,
    }
}

#[tokio::test]
async fn bench_devices_receive_every_desired_state_change() {
    // Commands are not this test's business: a short wait for the first.
    let args = CommandsArgs {
        timeout: 1.0,
        ..small()
    };
    let report = run(&args).await.expect("the bench's setup");
    let twin = report.twin.expect("the twin section ran");
    assert_eq!(twin.errors.total(), 0, "{:?}", twin.errors);
    assert_eq!(twin.to_device.len(), 12);
    assert_eq!(twin.patch.len(), 12);
    // The device reads the delta after the PATCH left, and within the wait.
    let slowest = twin.to_device.max().unwrap();
    assert!(slowest > std::time::Duration::ZERO);
    assert!(slowest < std::time::Duration::from_secs(1), "{slowest:?}");
    assert_eq!(report.devices_lost.total(), 0, "{:?}", report.devices_lost);
    assert_eq!(report.deltas_dropped, 0);
}

#[tokio::test]
async fn bench_devices_answer_every_command_at_the_set_rate() {
    let args = CommandsArgs {
        twin_patches: 0,
        ..small()
    };
    let report = run(&args).await.expect("the bench's setup");
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let round_trip = report.round_trip.expect("the round trip section ran");
    // 40 commands/s for 1 s, each answered 200 succeeded.
    assert_eq!(round_trip.sent, 40, "{:?}", round_trip.errors);
    assert_eq!(round_trip.succeeded, 40, "{:?}", round_trip.errors);
    assert_eq!(round_trip.errors.total(), 0);
    assert_eq!(round_trip.latencies.len(), 40);
    // The first command before the load, then the window's.
    assert_eq!(report.answered, 41);
    assert_eq!(report.unanswerable, 0);
    assert_eq!(report.devices_lost.total(), 0, "{:?}", report.devices_lost);
}
