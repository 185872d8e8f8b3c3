//! A short end-to-end run through the same code as `cargo xtask e2e`: real processes, the seeded
//! workload, and the invariant checks. (The binaries are the workspace's debug builds, which
//! `cargo test --workspace` builds for the service's and the stub's own tests.)

#![allow(clippy::unwrap_used)]

use simulator::e2e::{run, E2eOptions};
use simulator::world::process::is_alive;

#[tokio::test(flavor = "multi_thread")]
async fn a_short_e2e_run_holds_every_invariant_and_leaves_nothing_behind() {
    let out = tempfile::tempdir().unwrap();
    let summary = run(&E2eOptions {
        seed: 5,
        clients: 8,
        operations: 300,
        replicas: 2,
        out: out.path().to_path_buf(),
    })
    .await
    .unwrap();
    assert!(summary.passed(), "{}", summary.render());
    assert!(summary.ops["create"].ok > 0);
    assert_eq!(summary.invariants.len(), 3);
    assert!(out.path().join("summary.md").exists());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["seed"], 5);
    // Every process of the stack is gone.
    let pids = std::fs::read_to_string(out.path().join("logs/pids")).unwrap();
    for pid in pids.split_whitespace() {
        assert!(
            !is_alive(pid.parse().unwrap()),
            "process {pid} outlived the run"
        );
    }
}
