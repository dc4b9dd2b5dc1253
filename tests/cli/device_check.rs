//! `scripts/device-check.sh --quick` as CI runs it on lavapipe: the script itself is tested
//! (selftest, autotune, benches on the tiny shape, the report), not the figures.

use crate::harness::{Scratch, bin};

#[test]
fn device_check_quick_writes_its_json_and_table() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("device-check");
    let out = s.path("report");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/device-check.sh");
    let o = std::process::Command::new("bash")
        .args([script, "--quick", "--bin", bin(), "--out"])
        .arg(&out)
        .output()
        .expect("run device-check.sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "device-check.sh --quick failed:\n{stdout}\n{stderr}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("device-check.json")).unwrap())
            .expect("device-check.json is JSON");
    assert_eq!(json["quick"], true);
    assert_eq!(json["selftest"]["passed"], true, "{json:#}");
    let lines = json["selftest"]["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l.as_str().unwrap().contains("PASS")),
        "selftest lines: {lines:?}"
    );
    let rows = json["wgtune"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json:#}");
    for r in rows {
        let w = &r["wgtune"];
        for field in [
            "train_tokens_per_s",
            "host_ms_per_step",
            "host_ms_per_token",
            "decode_tokens_per_s",
        ] {
            let v = w[field].as_f64();
            assert!(
                v.is_some_and(|v| v > 0.0),
                "{}: {field} = {v:?}",
                r["config"]
            );
        }
    }
    // The first benchmark tuned and wrote the cache; the second read it and timed nothing.
    assert!(
        out.join("kernel-cache")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    let summary = |i: usize| rows[i]["wgtune"]["autotune"].as_str().unwrap().to_string();
    assert!(
        summary(0).starts_with("tuned ") && summary(0).contains("(0 from the cache)"),
        "first bench: {}",
        summary(0)
    );
    assert!(
        json["torch_note"]
            .as_str()
            .is_some_and(|n| n.contains("PyTorch")),
        "{json:#}"
    );

    let md = std::fs::read_to_string(out.join("device-check.md")).unwrap();
    assert!(
        md.contains("| tiny-1x16-f32 |") && md.contains("| tiny-1x16-nf4 |"),
        "{md}"
    );
    assert!(md.contains("host ms/step"), "{md}");
}
