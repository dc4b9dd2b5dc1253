//! The Llama family through the core's LoRA code against PEFT
//! (tests/reference/make_llama_fixtures.py), on a tiny Llama (GQA 6/3, Llama 3 RoPE, untied
//! head) and a tiny Qwen2 (one KV head, q/k/v biases, tied head) with f32 bases, and on the
//! Llama with a bitsandbytes NF4 base: PEFT's adapters read by `adapter::load_dir`; one
//! step's loss and every lora_A / lora_B gradient of all seven modules, and ten AdamW steps
//! (five on NF4), through `LoraTrainer` as the training job runs them; the adapter files
//! wgtune writes against PEFT's; PEFT's trainable-parameters line; the merge against
//! `merge_and_unload()`.

use std::path::Path;

use safetensors::SafeTensors;
use wgtune::adapter;
use wgtune::lora::{Layout, LoraConfig, trainable_line};
use wgtune::model::ModelConfig;
use wgtune::model::gpt2::Quant;
use wgtune::model::llama::Llama;
use wgtune::model::llama_config::LlamaConfig;
use wgtune::model::safetensors_file::SafetensorsFile;
use wgtune::train::{LoraTrainer, OptimConfig};

use crate::common::{assert_close, gpu};
use crate::fixtures::dir;
use crate::gpu_or_skip;
use crate::peft::Case;

const NF4: Quant = Quant::Nf4 {
    double_quant: false,
};
/// (case, model, base)
const CASES: [(&str, &str, Quant); 3] = [
    ("llama_tiny_r4", "llama_tiny", Quant::F32),
    ("qwen2_tiny_r4", "qwen2_tiny", Quant::F32),
    ("llama_tiny_nf4_r4", "llama_tiny", NF4),
];

fn config(name: &str) -> ModelConfig {
    ModelConfig::from_file(&dir(&format!("models/{name}/config.json"))).unwrap()
}

fn model(name: &str, quant: Quant) -> Llama {
    let d = dir(&format!("models/{name}"));
    let cfg = LlamaConfig::from_file(&d.join("config.json")).unwrap();
    let file = SafetensorsFile::open(&d.join("model.safetensors")).unwrap();
    let gpu = gpu().unwrap();
    let mut m = Llama::load(gpu, cfg, &file, quant).unwrap();
    // PEFT's side keeps the embedding and head in f32 (bitsandbytes quantizes the Linears).
    m.use_f32_tables(gpu, &file).unwrap();
    m
}

/// PEFT's adapter `which` (adapter_init, adapter_final) of `case`, read as the CLI reads
/// `--init-adapter`.
fn peft_adapter(case: &Case, which: &str, model: &ModelConfig) -> (LoraConfig, Vec<f32>) {
    adapter::load_dir(&case.dir.join(which), model).unwrap()
}

/// A trainer from PEFT's initial adapter, with the fixtures' AdamW (lr set per step; weight
/// decay 0.01, clipping at 1.0).
fn trainer<'m>(m: &'m Llama, case: &Case) -> LoraTrainer<'m> {
    let (lora, params) = peft_adapter(case, "adapter_init", &m.model_config());
    let optim = OptimConfig {
        weight_decay: 0.01,
        ..Default::default()
    };
    LoraTrainer::new(gpu().unwrap(), m, lora, optim, &params).unwrap()
}

/// PEFT's tensors `{prefix}base_model.model.{module}.lora_{A,B}.weight` against the flat
/// `got` laid out by `layout`, each within `rel` of its largest value.
fn assert_matches(
    what: &str,
    case: &Case,
    prefix: &str,
    layout: &Layout,
    r: usize,
    got: &[f32],
    rel: f32,
) {
    for s in &layout.slots {
        let k = wgtune::lora::peft_prefix(s);
        for (part, off, n) in [("lora_A", s.a, r * s.k_in), ("lora_B", s.b, s.n_out * r)] {
            let want = case.f32(&format!("{prefix}{k}.{part}.weight"));
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let name = format!("{what} {k}.{part}");
            assert_close(&name, &got[off..off + n], &want, rel * scale, rel);
        }
    }
}

/// The loss within 1e-5 relative, every gradient within 1e-4 of its tensor's largest, with
/// every layer's activations kept and with gradient checkpointing (each layer recomputed in
/// the backward pass from its kept input).
#[test]
fn one_step_gradients_match_peft() {
    let gpu = gpu_or_skip!();
    for (name, model_name, quant) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let m = model(model_name, quant);
        for grad_checkpoint in [false, true] {
            let mut t = trainer(&m, &case);
            t.grad_checkpoint = grad_checkpoint;
            assert_eq!(
                t.layout.slots.len(),
                14,
                "{name}: all seven modules of both layers"
            );
            let batch = case.batch(0);
            let (loss, grads) = pollster::block_on(t.gradients(gpu, &[batch], 0)).unwrap();
            let what = format!("{name} (grad_checkpoint {grad_checkpoint})");
            assert_close(
                &format!("{what} loss0"),
                &[loss],
                &case.f32("loss0"),
                0.0,
                1e-5,
            );
            let r = t.config.r;
            assert_matches(
                &format!("{what} grad"),
                &case,
                "grad.",
                &t.layout,
                r,
                &grads,
                1e-4,
            );
        }
    }
}

/// With LoRA dropout, the checkpointed backward recomputes each layer with the same dropout
/// masks: its gradients are the kept pass's, to f32 rounding.
#[test]
fn gradient_checkpointing_keeps_the_dropout_masks() {
    let gpu = gpu_or_skip!();
    let case = Case::at("peft/llama_tiny_nf4_r4");
    let m = model("llama_tiny", NF4);
    let grads = |grad_checkpoint: bool| {
        let mut t = trainer(&m, &case);
        t.config.lora_dropout = 0.1;
        t.grad_checkpoint = grad_checkpoint;
        pollster::block_on(t.gradients(gpu, &[case.batch(1)], 7)).unwrap()
    };
    let ((l0, g0), (l1, g1)) = (grads(false), grads(true));
    assert_close("loss", &[l1], &[l0], 0.0, 1e-6);
    let scale = g0.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close("gradients", &g1, &g0, 1e-6 * scale, 0.0);
    let (_, without) = {
        let mut t = trainer(&m, &case);
        t.config.lora_dropout = 0.0;
        pollster::block_on(t.gradients(gpu, &[case.batch(1)], 7)).unwrap()
    };
    assert!(without != g0, "dropout 0.1 changes the gradients");
}

/// Ten AdamW steps (five on the NF4 base; lr 1e-2, wd 0.01, clip 1.0, batches 0, 1, 0, ...)
/// from PEFT's initial adapter: per-step losses and grad norms within 1e-4 relative of
/// PyTorch's, the final A/B within 1e-4 of each tensor's scale.
#[test]
fn adamw_steps_match_pytorch() {
    let gpu = gpu_or_skip!();
    for (name, model_name, quant) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let m = model(model_name, quant);
        let mut t = trainer(&m, &case);
        let (want_loss, want_norm) = (case.f32("steps.loss"), case.f32("steps.grad_norm"));
        let (mut losses, mut norms) = (Vec::new(), Vec::new());
        for step in 0..want_loss.len() {
            let batch = case.batch(step % 2);
            let (loss, norm) = pollster::block_on(t.train_step(gpu, &[batch], 1e-2, 0)).unwrap();
            losses.push(loss);
            norms.push(norm);
        }
        assert_close(
            &format!("{name} step losses"),
            &losses,
            &want_loss,
            0.0,
            1e-4,
        );
        assert_close(&format!("{name} grad norms"), &norms, &want_norm, 0.0, 1e-4);
        let got = pollster::block_on(t.params_host(gpu)).unwrap();
        let r = t.config.r;
        assert_matches(
            &format!("{name} final"),
            &case,
            "final.",
            &t.layout,
            r,
            &got,
            1e-4,
        );
    }
}

/// What wgtune writes for PEFT's trained adapter is PEFT's adapter: the same tensors (names,
/// shapes, values) with `{"format":"pt"}`, and the same adapter_config.json (target_modules
/// compared as a set: PEFT writes a Python set's order). Read back, it is the same adapter.
#[test]
fn written_adapters_are_pefts_files() {
    for (name, model_name, quant) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let model = config(model_name);
        let (lora, params) = peft_adapter(&case, "adapter_final", &model);
        let layout = Layout::new(&model, &lora);
        let peft_dir = case.dir.join("adapter_final");
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(peft_dir.join(adapter::CONFIG_FILE)).unwrap())
                .unwrap();
        let base = theirs["base_model_name_or_path"].as_str().unwrap();
        let (weights, config_text) =
            adapter::encode(&lora, &layout, &params, base, &model, quant.is_nf4()).unwrap();

        let peft_bytes = std::fs::read(peft_dir.join(adapter::WEIGHTS_FILE)).unwrap();
        let (peft, ours) = (
            SafeTensors::deserialize(&peft_bytes).unwrap(),
            SafeTensors::deserialize(&weights).unwrap(),
        );
        let mut names = ours.names();
        names.sort();
        let mut want_names = peft.names();
        want_names.sort();
        assert_eq!(names, want_names, "{name}: tensor names");
        for n in names {
            let (a, b) = (ours.tensor(n).unwrap(), peft.tensor(n).unwrap());
            assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{name} {n}");
            assert_eq!(a.data(), b.data(), "{name} {n}: values");
        }
        let (_, meta) = SafeTensors::read_metadata(&weights).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"));

        let mut ours: serde_json::Value = serde_json::from_slice(&config_text).unwrap();
        let mut theirs = theirs;
        for v in [&mut ours, &mut theirs] {
            let mut t: Vec<String> = serde_json::from_value(v["target_modules"].take()).unwrap();
            t.sort();
            v["target_modules"] = serde_json::json!(t);
        }
        assert_eq!(ours, theirs, "{name}: adapter_config.json");

        let back = adapter::parse_config_for(
            std::str::from_utf8(&config_text).unwrap(),
            Path::new("adapter_config.json"),
            &model,
        )
        .unwrap();
        let back_params =
            adapter::params_from_weights(&weights, Path::new("w"), &model, &back).unwrap();
        let sorted = |l: &LoraConfig| {
            let mut t = l.target_modules.clone();
            t.sort();
            LoraConfig {
                target_modules: t,
                ..l.clone()
            }
        };
        assert_eq!(sorted(&back), sorted(&lora), "{name}: read back");
        assert!(back_params == params, "{name}: parameters read back");
    }
}

/// PEFT's `print_trainable_parameters` line, and the modules `all-linear` selects.
#[test]
fn trainable_lines_and_all_linear_match_peft() {
    for (name, model_name, _) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let model = config(model_name);
        let want: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.dir.join("print_trainable.json")).unwrap())
                .unwrap();
        let (lora, _) = peft_adapter(&case, "adapter_final", &model);
        let layout = Layout::new(&model, &lora);
        assert_eq!(
            trainable_line(layout.trainable, model.num_params()),
            want["line"].as_str().unwrap(),
            "{name}"
        );
        let all = LoraConfig {
            target_modules: vec!["all-linear".into()],
            ..lora
        };
        let want_modules: Vec<String> =
            serde_json::from_value(want["all_linear_modules"].clone()).unwrap();
        assert_eq!(
            all.full_target_names(&model),
            want_modules,
            "{name}: all-linear"
        );
    }
}

/// `merge_dir` folds PEFT's trained adapter into the f32 base as `merge_and_unload()` does:
/// every Linear within 1e-6 of PEFT's merged weight (relative to its largest value), every
/// other tensor unchanged, and the tied head left out.
#[test]
fn merge_matches_pefts_merge_and_unload() {
    for (name, model_name) in [
        ("llama_tiny_r4", "llama_tiny"),
        ("qwen2_tiny_r4", "qwen2_tiny"),
    ] {
        let case = Case::at(&format!("peft/{name}"));
        let out =
            std::env::temp_dir().join(format!("wgtune-llama-merge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let base_dir = dir(&format!("models/{model_name}"));
        wgtune::merge::merge_dir(&base_dir, &case.dir.join("adapter_final"), &out).unwrap();
        let merged_bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let merged = SafeTensors::deserialize(&merged_bytes).unwrap();
        let want_bytes = std::fs::read(case.dir.join("merged.safetensors")).unwrap();
        let want = SafeTensors::deserialize(&want_bytes).unwrap();
        let base_bytes = std::fs::read(base_dir.join("model.safetensors")).unwrap();
        let base = SafeTensors::deserialize(&base_bytes).unwrap();
        for (n, t) in merged.tensors() {
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
            match want.tensor(&n) {
                Ok(w) => {
                    let w: Vec<f32> = bytemuck::pod_collect_to_vec(w.data());
                    let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    assert_close(&format!("{name} {n}"), &got, &w, 1e-6 * scale, 0.0);
                }
                Err(_) => assert_eq!(t.data(), base.tensor(&n).unwrap().data(), "{name} {n}"),
            }
        }
        assert_eq!(
            merged.names().len(),
            base.names().len(),
            "{name}: every tensor kept"
        );
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            assert!(out.join(f).exists(), "{name}: {f} copied");
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// PEFT loads the adapters wgtune wrote for a Llama (all-linear, rsLoRA) and a Qwen2 (default
/// targets) as they are (tests/reference/check_wgtune_llama_adapters.py), and wgtune gives
/// PEFT's logits from the same files, on a batch with a padded row.
#[test]
fn wgtune_written_adapters_give_pefts_logits() {
    let gpu = gpu_or_skip!();
    for (case, model_name) in [
        ("wgtune_written_llama", "llama_tiny"),
        ("wgtune_written_qwen2", "qwen2_tiny"),
    ] {
        let d = dir(&format!("peft/{case}"));
        let m = model(model_name, Quant::F32);
        let (lora, params) = adapter::load_dir(&d.join("adapter"), &m.model_config()).unwrap();
        let gpu_adapter = wgtune::lora::GpuAdapter::new(gpu, &m.model_config(), lora, &params);
        let bytes = std::fs::read(d.join("reference.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let ids: Vec<u32> =
            bytemuck::pod_collect_to_vec::<u8, i64>(st.tensor("input_ids").unwrap().data())
                .into_iter()
                .map(|v| v as u32)
                .collect();
        let mask: Vec<u32> =
            bytemuck::pod_collect_to_vec::<u8, i64>(st.tensor("attention_mask").unwrap().data())
                .into_iter()
                .map(|v| v as u32)
                .collect();
        let want: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("logits").unwrap().data());
        let a = gpu_adapter.as_ref();
        let got = pollster::block_on(m.logits(gpu, &ids, &mask, (2, 16), Some(&a))).unwrap();
        assert_close(&format!("{case} logits"), &got, &want, 1e-4, 1e-4);
    }
}
