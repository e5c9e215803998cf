//! `ferrule bench rules` on a small scale against the real server: its
//! rules are accepted, the engine evaluates and republishes the bench's
//! messages, and the report carries every figure and both targets. (How
//! fast is not asserted: this is a debug build on a shared machine.)

use ferrule_bench::rules::{RulesArgs, run};

use crate::util::ferrule_bin;

#[tokio::test]
async fn bench_rules_measures_the_engine_and_the_fan_in_with_rules_off_and_on() {
    ferrule_bench::launch::set_server_binary(ferrule_bin().into());
    let args = RulesArgs {
        duration: 1,
        tenants: 2,
        rules: 10,
        publishers: 1,
        quiet_wait_secs: 0,
        attempts: 1,
        // A rate a debug build keeps up with, then one step up.
        engine_rate: 2_000,
        steps: 2,
    };
    let report = run(&args).await.expect("the bench ran");
    assert!(report.failures().is_empty(), "{:?}", report.failures());

    let engine = &report.engine;
    assert!(engine.published > 0.0, "{engine:?}");
    assert!(engine.evaluated > 0.0, "{engine:?}");
    assert!(engine.republished > 0.0, "{engine:?}");
    assert_eq!(engine.delivered, 0.0, "nobody subscribes in the engine run");
    assert_eq!(engine.actions_failed, 0.0, "{engine:?}");
    // Each message passes exactly one of the ten rules, and each pass is
    // one republish (counted a moment apart, hence the slack).
    let per_message = engine.passed / engine.evaluated;
    assert!((0.8..=1.2).contains(&per_message), "{engine:?}");
    let republished_per_pass = engine.republished / engine.passed;
    assert!((0.8..=1.2).contains(&republished_per_pass), "{engine:?}");

    // The sustained search offered steady rates: the first one paced.
    assert!(!report.sustained.is_empty() && report.sustained.len() <= 2);
    let first = &report.sustained[0];
    assert_eq!(first.rate, 2_000.0);
    assert!(
        (1_500.0..=2_500.0).contains(&first.rates.published),
        "paced publishers send at the offered rate: {first:?}"
    );
    assert!(first.rates.evaluated > 0.0, "{first:?}");

    // Without rules the engine sees none of the fan-in; with them it does.
    assert!(report.fanin_off.delivered > 0.0, "{:?}", report.fanin_off);
    assert_eq!(report.fanin_off.evaluated, 0.0, "{:?}", report.fanin_off);
    assert!(report.fanin_on.delivered > 0.0, "{:?}", report.fanin_on);
    assert!(report.fanin_on.evaluated > 0.0, "{:?}", report.fanin_on);
    assert!(report.fanin_ratio().is_some());

    let md = report.markdown(&args);
    assert!(
        md.contains("`ferrule bench rules --duration 1 --tenants 2 --rules 10 --publishers 1 --engine-rate 2000 --steps 2`"),
        "{md}"
    );
    assert!(md.contains("| engine, sustained: messages evaluated/s (2 tenants × 10 rules, "));
    assert!(md.contains("≥ 300,000 msgs/s"));
    assert!(md.contains("| fan-in with rules ÷ without | "));
    assert!(md.contains("≥ 80 %"));
    assert!(md.contains("Machine: "));
}
