//! The short chaos schedule against a local cluster of real processes
//! (3 drivers, 3 executors): every fault kind at every timing, 24 faults,
//! and the output of both jobs exact per key. `WEIR_CHAOS_SEED` picks
//! another seed (the default is fixed so that CI runs one known schedule).

use std::collections::BTreeSet;
use weir_tests::chaos::schedule::{FaultKind, Schedule, Shape};
use weir_tests::chaos::{run, ChaosOptions};

#[test]
fn short_chaos_schedule_loses_and_duplicates_nothing() {
    let seed = std::env::var("WEIR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let schedule = Schedule::generate(&Shape::Short, seed, None).unwrap();
    let mut options = ChaosOptions::new(schedule);
    let report_dir = tempfile::tempdir().unwrap();
    options.report = Some(report_dir.path().join("chaos.json"));
    let report = run(options).expect("the chaos run could not be set up");

    assert!(report.faults.len() >= 20, "{} faults", report.faults.len());
    let kinds: BTreeSet<FaultKind> = report.faults.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds.len(),
        FaultKind::ALL.len(),
        "every kind ran: {kinds:?}"
    );
    assert!(
        report.passed,
        "chaos run failed (seed {seed}):\n{}",
        report.table()
    );
    assert!(report.faults.iter().all(|f| f.recovery_ms.is_some()));
    assert!(report.jobs.len() >= 2 && report.jobs.iter().all(|j| j.problems.is_empty()));
    // the JSON report is complete
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.path().join("chaos.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["faults"].as_array().map(Vec::len),
        Some(report.faults.len())
    );
    assert_eq!(json["passed"], true);
}
