//! `scripts/device-check.sh --quick`: the script a machine with a real GPU runs, tested on
//! whatever adapter is here (lavapipe in CI) with the tiny shape. It must write its JSON file
//! and markdown table, with the selftest's result, the benchmark figures (host time
//! included), and what it could not run (PyTorch where absent) said in the table.

use std::process::Command;

use crate::harness::{Scratch, bin};

#[test]
fn device_check_quick_writes_its_json_and_table() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("device-check");
    let out = s.path("report");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/device-check.sh");
    let run = Command::new("bash")
        .args([script, "--quick", "--bin", bin(), "--out"])
        .arg(&out)
        .env("RUST_LOG", "error")
        .output()
        .expect("run scripts/device-check.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "device-check failed: {stderr}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("device-check.json")).unwrap())
            .unwrap();
    let runs = json["runs"].as_array().unwrap();
    let selftest = runs.iter().find(|r| r["step"] == "selftest").unwrap();
    assert_eq!(selftest["ok"], true, "{selftest}");
    assert!(!selftest["kernels"].as_array().unwrap().is_empty());
    let benches: Vec<_> = runs.iter().filter(|r| r["step"] == "wgtune").collect();
    assert_eq!(benches.len(), 2, "tiny f32 and nf4: {runs:?}");
    for b in &benches {
        assert_eq!(b["ok"], true, "{b}");
        for k in [
            "train_tokens_per_s",
            "host_ms_per_step",
            "host_ms_per_token",
        ] {
            assert!(b[k].as_f64().is_some_and(|v| v > 0.0), "{k} missing in {b}");
        }
    }

    let table = std::fs::read_to_string(out.join("device-check.md")).unwrap();
    let rows = table.lines().filter(|l| l.starts_with("| wgtune")).count();
    assert_eq!(rows, 2, "{table}");
    assert!(table.contains("selftest: all"), "{table}");
    let stack = runs.iter().find(|r| r["step"] == "torch-stack").unwrap();
    if stack["torch"] == false {
        assert!(
            table.contains("PyTorch + peft: not installed here"),
            "{table}"
        );
    }
}
