//! Bad input everywhere a user can hand wgtune something: JSONL, model directories, adapters,
//! checkpoints and flags. Every case must end with exit status 1, no panic, a one-line
//! `error: ...` naming the file and line or tensor, and no file created or changed.
//! README.md's Troubleshooting section lists the same cases.

use std::time::{Duration, Instant};

use wgtune::lora::{Layout, LoraConfig, init_params};
use wgtune::model::ModelConfig;
use wgtune::train::checkpoint::{self, Checkpoint, TrainerState};
use wgtune::train::settings::TrainSettings;

use crate::harness::{Scratch, check_failure, fixture, run};

pub(super) struct Case {
    name: &'static str,
    /// Builds the inputs in the scratch directory and returns the command line.
    setup: fn(&Scratch) -> Vec<String>,
    /// Substrings of the error line.
    expect: &'static [&'static str],
}

const GOOD_TEXT: &str = "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n{\"text\": \"Hello world, hello again.\"}\n{\"text\": \"Numbers: 1234567, 3.14 and 42.\"}\n";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `wgtune train` on `model` and `data`, writing to `<scratch>/out`, plus `extra` flags.
fn train_with(s: &Scratch, model: String, data: String, extra: &[&str]) -> Vec<String> {
    let out = s.path("out").display().to_string();
    let mut v = strings(&["train", "--model", &model, "--data", &data, "--out", &out]);
    // Small defaults, unless the case sets the flag itself.
    for (flag, value) in [
        ("--max-steps", "1"),
        ("--batch-size", "2"),
        ("--seq-len", "32"),
    ] {
        if !extra.contains(&flag) {
            v.extend(strings(&[flag, value]));
        }
    }
    v.extend(strings(extra));
    v
}

/// Train on the tiny model with `data.jsonl` holding `text`.
fn train_data(s: &Scratch, text: &[u8]) -> Vec<String> {
    let data = s.write("data.jsonl", text);
    train_with(s, s.tiny_model("model"), data, &[])
}

/// Train good data with extra flags.
fn train_flags(s: &Scratch, extra: &[&str]) -> Vec<String> {
    let data = s.write("data.jsonl", GOOD_TEXT);
    train_with(s, s.tiny_model("model"), data, extra)
}

/// Train on a copy of the tiny model changed by `edit` (given the model directory).
fn train_model(s: &Scratch, edit: impl FnOnce(&std::path::Path)) -> Vec<String> {
    let model = s.tiny_model("model");
    edit(std::path::Path::new(&model));
    let data = s.write("data.jsonl", GOOD_TEXT);
    train_with(s, model, data, &[])
}

fn eval_with(model: String, data: String, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&["eval", "--model", &model, "--data", &data]);
    v.extend(strings(extra));
    v
}

/// One tensor of a safetensors file being rewritten: name, dtype, shape, bytes.
type Entry = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Rewrite the model's safetensors with `edit` applied to its tensor list.
fn rewrite_weights(dir: &std::path::Path, edit: impl FnOnce(&mut Vec<Entry>)) {
    rewrite_file(&dir.join("model.safetensors"), edit)
}

/// Set element `i` of the tensor whose name ends with `suffix` to `v`, in its own dtype.
fn set_value(ts: &mut [Entry], suffix: &str, i: usize, v: f32) {
    let t = ts.iter_mut().find(|t| t.0.ends_with(suffix)).unwrap();
    let bytes = match t.1 {
        safetensors::Dtype::F32 => v.to_le_bytes().to_vec(),
        safetensors::Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
        safetensors::Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        d => panic!("{d:?}"),
    };
    t.3[i * bytes.len()..(i + 1) * bytes.len()].copy_from_slice(&bytes);
}

/// Rewrite a safetensors file with `edit` applied to its tensor list.
fn rewrite_file(path: &std::path::Path, edit: impl FnOnce(&mut Vec<Entry>)) {
    let path = path.to_path_buf();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Replace `key` in the tiny model's config.json.
fn edit_config(dir: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, v.to_string()).unwrap();
}

fn tiny_config() -> ModelConfig {
    ModelConfig::from_file(&fixture("models/tiny/config.json")).unwrap()
}

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        target_modules: targets.iter().map(|t| t.to_string()).collect(),
        use_rslora: false,
    }
}

/// A valid adapter for `config` at `<scratch>/rel`.
fn write_adapter(s: &Scratch, rel: &str, config: &ModelConfig, l: &LoraConfig) -> String {
    let layout = Layout::new(config, l);
    let params = init_params(&layout, l.r, 1);
    let dir = s.path(rel);
    wgtune::adapter::save_dir(&dir, l, &layout, &params, "tiny", config, false).unwrap();
    dir.display().to_string()
}

/// Train from the tiny model with `--init-adapter` an adapter changed by `edit`.
fn train_adapter(s: &Scratch, edit: impl FnOnce(&std::path::Path)) -> Vec<String> {
    let adapter = write_adapter(s, "adapter", &tiny_config(), &lora(&["c_attn"]));
    edit(std::path::Path::new(&adapter));
    train_flags(s, &["--init-adapter", &adapter])
}

fn edit_adapter_config(dir: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = dir.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, v.to_string()).unwrap();
}

mod adapter;
mod data;
mod flags;
mod model;

fn cases() -> Vec<Case> {
    let parts = [data::cases, model::cases, adapter::cases, flags::cases];
    parts.iter().flat_map(|part| part()).collect()
}

/// Every case fails cleanly, and none leaves or changes a file.
#[test]
fn every_bad_input_gets_a_one_line_error_and_changes_no_file() {
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let s = Scratch::new(case.name);
                    let args = (case.setup)(&s);
                    let before = s.snapshot();
                    let start = Instant::now();
                    let out = run(&args);
                    let took = start.elapsed();
                    // With --nocapture: the table of messages (README's Troubleshooting).
                    println!("{}\t{}", case.name, crate::harness::last_line(&out));
                    let mut problem = check_failure(&out, case.expect);
                    if problem.is_none() && s.snapshot() != before {
                        problem = Some("files were created or changed".into());
                    }
                    // Every case is refused before any GPU work; a slow one is a regression
                    // (the 100 MiB line included).
                    if problem.is_none() && took > Duration::from_secs(30) {
                        problem = Some(format!("took {took:?}"));
                    }
                    if let Some(p) = problem {
                        failures.lock().unwrap().push(format!("{}: {p}", case.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Fields that newer PEFT versions add to adapter_config.json are ignored, not errors.
#[test]
fn adapter_config_fields_from_newer_peft_are_accepted() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("newer-peft");
    let a = write_adapter(&s, "adapter", &tiny_config(), &lora(&["c_attn"]));
    edit_adapter_config(
        std::path::Path::new(&a),
        "some_future_option",
        serde_json::json!({"nested": [1, 2]}),
    );
    edit_adapter_config(std::path::Path::new(&a), "peft_version", "9.9.9".into());
    let d = s.write("data.jsonl", GOOD_TEXT);
    let out = run(&eval_with(
        s.tiny_model("model"),
        d,
        &["--adapter", &a, "--quant", "f32"],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["loss"].as_f64().unwrap().is_finite());
}

/// PEFT's ways of naming the same modules (a regular expression, layers_to_transform,
/// exclude_modules) evaluate exactly as the adapter that names them in full.
#[test]
fn peft_target_rules_evaluate_as_the_modules_they_select() {
    let _gpu = crate::gpu_or_skip!();
    let s = Scratch::new("peft-targets");
    let full = write_adapter(
        &s,
        "full",
        &tiny_config(),
        &lora(&["transformer.h.1.attn.c_attn"]),
    );
    let d = s.write("data.jsonl", GOOD_TEXT);
    let model = s.tiny_model("model");
    let eval = |a: &str| {
        let out = run(&eval_with(
            model.clone(),
            d.clone(),
            &["--adapter", a, "--quant", "f32"],
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["loss"].as_f64().unwrap()
    };
    let want = eval(&full);
    for (i, rule) in [
        serde_json::json!({"target_modules": r"transformer\.h\.1\.attn\.c_attn"}),
        serde_json::json!({"target_modules": ["c_attn"], "layers_to_transform": [1]}),
        serde_json::json!({"target_modules": ["c_attn"], "exclude_modules": ["transformer.h.0.attn.c_attn"]}),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = s.path(&format!("rule{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            s.path("full/adapter_model.safetensors"),
            dir.join("adapter_model.safetensors"),
        )
        .unwrap();
        std::fs::copy(s.path("full/adapter_config.json"), dir.join("adapter_config.json")).unwrap();
        for (k, v) in rule.as_object().unwrap() {
            edit_adapter_config(&dir, k, v.clone());
        }
        assert_eq!(eval(&dir.display().to_string()), want, "{rule}");
    }
}

/// A batch whose activations exceed the GPU's binding limit is refused before training,
/// after the memory estimate is printed, naming the flags to lower.
#[test]
fn a_batch_beyond_the_gpu_limits_names_what_to_lower() {
    let gpu = crate::gpu_or_skip!();
    let s = Scratch::new("too-big");
    // Enough sequences of 128 tokens that the (B*T, 4C) MLP activation (C = 64) exceeds one
    // binding: 1025 on lavapipe (128 MiB bindings).
    let batch = gpu.max_binding_words() / (4 * 64) / 128 + 1;
    let line = format!("{{\"text\": \"{}\"}}\n", "word ".repeat(130));
    let data = s.write("data.jsonl", line.repeat(batch));
    let b = batch.to_string();
    let args = train_with(
        &s,
        s.tiny_model("model"),
        data,
        &["--batch-size", &b, "--seq-len", "128"],
    );
    let out = run(&args);
    if let Some(p) = check_failure(&out, &["lower --batch-size or --seq-len"]) {
        panic!("{p}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("estimated GPU memory:"), "{stderr}");
    assert!(!s.path("out").exists());
}
