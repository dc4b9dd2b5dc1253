//! `wgtune inspect` and `wgtune compare` as users run them.

use std::process::Command;

use super::harness::{Scratch, bin, fixture};

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each compared example's losses are what `wgtune eval` reports on that line alone, with
/// and without the adapter; the summary's means are their token-weighted means.
#[test]
fn compare_losses_equal_eval_on_each_example() {
    if crate::common::gpu().is_none() {
        return;
    }
    let s = Scratch::new("compare");
    let model = fixture("models/tiny").display().to_string();
    let adapter = fixture("peft/attn_r4/adapter_final").display().to_string();
    let data_path = fixture("data/prompt_completion.jsonl");
    let data = data_path.display().to_string();
    let common = ["--model", &model, "--quant", "f32", "--seq-len", "64"];
    let c = json_of(
        &Command::new(bin())
            .args([
                "compare",
                "--adapter",
                &adapter,
                "--data",
                &data,
                "--n",
                "3",
            ])
            .args(["--max-new-tokens", "4", "--json"])
            .args(common)
            .output()
            .unwrap(),
    );
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let lines: Vec<&str> = std::fs::read_to_string(&data_path)
        .unwrap()
        .lines()
        .map(|l| l.to_owned().leak() as &str)
        .collect();
    let (mut sum_base, mut sum_tuned, mut tokens) = (0.0, 0.0, 0.0);
    for row in rows {
        let line = row["line"].as_u64().unwrap() as usize;
        let one = s.write(&format!("line{line}.jsonl"), lines[line - 1]);
        let eval = |with_adapter: bool| {
            let mut cmd = Command::new(bin());
            cmd.args(["eval", "--data", &one]).args(common);
            if with_adapter {
                cmd.args(["--adapter", &adapter]);
            }
            json_of(&cmd.output().unwrap())
        };
        let (base, tuned) = (eval(false), eval(true));
        for (what, got, want) in [
            ("base", &row["base_loss"], &base["loss"]),
            ("tuned", &row["tuned_loss"], &tuned["loss"]),
        ] {
            let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-6 * w.abs(),
                "line {line} {what}: compare {g} vs eval {w}"
            );
        }
        assert_eq!(row["tokens"], base["tokens"], "line {line}: tokens");
        let n = row["tokens"].as_f64().unwrap();
        sum_base += n * base["loss"].as_f64().unwrap();
        sum_tuned += n * tuned["loss"].as_f64().unwrap();
        tokens += n;
        assert!(row["prompt"].as_str().unwrap().len() > 1, "{row}");
    }
    let mean = c["base_loss"].as_f64().unwrap();
    assert!(
        (mean - sum_base / tokens).abs() <= 1e-9 * mean,
        "mean base loss"
    );
    let mean = c["tuned_loss"].as_f64().unwrap();
    assert!(
        (mean - sum_tuned / tokens).abs() <= 1e-9 * mean,
        "mean tuned loss"
    );
    let better = c["better"].as_array().unwrap().len();
    let worse = c["worse"].as_array().unwrap().len();
    assert!(better + worse <= 3);
}

#[test]
fn inspect_prints_the_table_and_json() {
    let adapter = fixture("peft/all_r8_rslora/adapter_final")
        .display()
        .to_string();
    let model = fixture("models/tiny").display().to_string();
    let out = Command::new(bin())
        .args(["inspect", "--adapter", &adapter, "--model", &model])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "r=8, lora_alpha=16, rsLoRA, scale 5.6569, 8 modules",
        "transformer.h.1.mlp.c_proj",
        "trainable params: 16,384 || all params: 188,672 || trainable%: 8.6839",
        "full fine-tune (f32)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let j = json_of(
        &Command::new(bin())
            .args(["inspect", "--adapter", &adapter, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(j["modules"].as_array().unwrap().len(), 8);
    assert!(j["base"].is_null());
    // Not an adapter: one line naming the file.
    let s = Scratch::new("inspect-bad");
    let dir = s.path("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(bin())
        .args(["inspect", "--adapter", &dir.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(err.contains("adapter_config.json: cannot read"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
