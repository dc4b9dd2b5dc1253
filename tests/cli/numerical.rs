//! A non-finite loss or gradient stops training with a clear message that names the step,
//! suggests a lower --lr and points to the last good checkpoint, which stays intact (resuming
//! it as it is would diverge again: the way on is its adapter, with a lower --lr).

use wgtune::lora::{Layout, LoraConfig};
use wgtune::model::ModelConfig;
use wgtune::train::checkpoint;

use crate::harness::{Scratch, check_failure, fixture, run, run_env};

const DATA: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n{\"text\": \"One more line of text.\"}\n";

fn args(s: &Scratch, extra: &[&str]) -> Vec<String> {
    let model = s.tiny_model("model");
    let data = s.write("data.jsonl", DATA);
    let out = s.path("out").display().to_string();
    let mut v: Vec<String> = [
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        &out,
        "--quant",
        "f32",
        "--batch-size",
        "2",
        "--seq-len",
        "32",
        "--max-steps",
        "6",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

/// A real overflow: an initial adapter whose A and B hold 1e30 makes the LoRA branch
/// overflow f32 in the first forward pass.
#[test]
fn an_overflowing_adapter_stops_training_and_keeps_the_existing_adapter() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("overflow");
    let cfg = ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap();
    let lora = LoraConfig {
        r: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        target_modules: vec!["c_attn".into()],
        use_rslora: false,
    };
    let layout = Layout::new(&cfg, &lora);
    let huge = vec![1e30f32; layout.len];
    wgtune::adapter::save_dir(&s.path("huge"), &lora, &layout, &huge, "tiny", &cfg, false).unwrap();
    // An adapter already in --out must survive the failed run (--overwrite given).
    let small = vec![0.01f32; layout.len];
    wgtune::adapter::save_dir(&s.path("out"), &lora, &layout, &small, "tiny", &cfg, false).unwrap();
    let before = s.snapshot();

    let huge_dir = s.path("huge").display().to_string();
    let out = run(&args(&s, &["--init-adapter", &huge_dir, "--overwrite"]));
    if let Some(p) = check_failure(&out, &["step 1:", "diverged", "lower --lr (now 0.0002)"]) {
        panic!("{p}");
    }
    let mut after = s.snapshot();
    after.retain(|p, _| before.contains_key(p));
    assert!(after == before, "existing files changed");
    assert!(!s.path("out/checkpoint-1").exists());
}

/// A NaN at step 5 (the test hook WGTUNE_TEST_NAN_AT_STEP places it) with checkpoints every
/// 2 steps: the message names checkpoint-4, whose adapter training continues from.
#[test]
fn a_nan_loss_points_to_the_last_good_checkpoint() {
    let _gpu = crate::gpu_or_skip!();
    if !crate::harness::hooks_or_skip() {
        return;
    }
    let s = Scratch::new("nan");
    let a = args(&s, &["--save-every", "2"]);
    let out = run_env(&a, &[("WGTUNE_TEST_NAN_AT_STEP", "5")]);
    let ck = s.path("out/checkpoint-4").display().to_string();
    if let Some(p) = check_failure(
        &out,
        &[
            "step 5:",
            "the loss became NaN",
            &format!("--init-adapter {ck}"),
            "lower --lr",
        ],
    ) {
        panic!("{p}");
    }
    let cfg = ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap();
    let c = checkpoint::load(&s.path("out/checkpoint-4"), &cfg).unwrap();
    assert_eq!(c.state.step, 4);
    assert!(c.params.iter().all(|v| v.is_finite()));
    assert!(!s.path("out/adapter_model.safetensors").exists());
    let mut resume = a.clone();
    resume.extend([
        "--init-adapter".to_string(),
        ck,
        "--lr".to_string(),
        "1e-4".to_string(),
    ]);
    let out = run(&resume);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
