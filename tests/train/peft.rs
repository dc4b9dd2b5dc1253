use std::path::{Path, PathBuf};

use crate::common::{assert_close, gpu};
use crate::fixtures::dir;
use crate::gpu_or_skip;
use safetensors::SafeTensors;
use wgtune::lora::{GpuAdapter, Layout, trainable_line};
use wgtune::model::ModelConfig;
use wgtune::model::{Gpt2, Quant, load_dir};
use wgtune::train::{Batch, LoraTrainer, OptimConfig};
use wgtune::{adapter, lora};

/// (case, base quantization) of tests/fixtures/peft.
const CASES: [(&str, Quant); 3] = [
    ("attn_r4", Quant::F32),
    ("all_r8_rslora", Quant::F32),
    (
        "all_linear_nf4",
        Quant::Nf4 {
            double_quant: false,
        },
    ),
];

/// A fixture directory with a `reference.safetensors`.
pub(crate) struct Case {
    pub(crate) dir: PathBuf,
    bytes: Vec<u8>,
}

impl Case {
    fn new(name: &str) -> Self {
        Self::at(&format!("peft/{name}"))
    }
    /// `tests/fixtures/<rel>`.
    pub(crate) fn at(rel: &str) -> Self {
        let dir = dir(rel);
        let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
        Self { dir, bytes }
    }
    pub(crate) fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }
    pub(crate) fn f32(&self, name: &str) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(self.st().tensor(name).unwrap().data())
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        bytemuck::pod_collect_to_vec(self.st().tensor(name).unwrap().data())
    }
    pub(crate) fn batch(&self, k: usize) -> Batch {
        let ids = self
            .i64(&format!("batch{k}.input_ids"))
            .iter()
            .map(|&v| v as u32)
            .collect();
        let mask = self
            .i64(&format!("batch{k}.attention_mask"))
            .iter()
            .map(|&v| v as u32)
            .collect();
        let labels: Vec<i32> = self
            .i64(&format!("batch{k}.labels"))
            .iter()
            .map(|&v| v as i32)
            .collect();
        Batch::from_labels(ids, mask, &labels, 2, 24)
    }
}

/// The tiny model with wte in f32, as the PyTorch side keeps it (see `load_like_reference`).
fn model(quant: Quant) -> Gpt2 {
    crate::fixtures::load_like_reference(gpu().unwrap(), "tiny", quant)
}

/// Compare the flat parameters/gradients `got` with PEFT's tensors `{prefix}{key}`:
/// |diff| <= rel · max|tensor| + rel·|value| per tensor.
pub(crate) fn assert_matches_peft(
    what: &str,
    case: &Case,
    prefix: &str,
    layout: &Layout,
    r: usize,
    got: &[f32],
    rel: f32,
) {
    for s in &layout.slots {
        let key = lora::peft_prefix(s);
        for (suffix, off, n) in [("lora_A", s.a, r * s.k_in), ("lora_B", s.b, s.n_out * r)] {
            let want = case.f32(&format!("{prefix}{key}.{suffix}.weight"));
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_close(
                &format!("{what} {key}.{suffix}"),
                &got[off..off + n],
                &want,
                rel * scale,
                rel,
            );
        }
    }
}

/// One step's LoRA gradients (A and B of every targeted module) equal PEFT's within 1e-4
/// relative (to each tensor's largest gradient), on an f32 base and, against bitsandbytes +
/// PEFT, on an NF4 base; the loss within 1e-5.
#[test]
fn one_step_gradients_match_peft() {
    let gpu = gpu_or_skip!();
    for (name, quant) in CASES {
        let case = Case::new(name);
        let m = model(quant);
        let (cfg, params) =
            adapter::load_dir(&case.dir.join("adapter_init"), &m.model_config()).unwrap();
        let trainer =
            LoraTrainer::new(gpu, &m, cfg.clone(), OptimConfig::default(), &params).unwrap();
        let (loss, grads) =
            pollster::block_on(trainer.gradients(gpu, &[case.batch(0)], 0)).unwrap();
        assert_close(
            &format!("{name} loss0"),
            &[loss],
            &case.f32("loss0"),
            0.0,
            1e-5,
        );
        assert_matches_peft(
            &format!("{name} grad"),
            &case,
            "grad.",
            &trainer.layout,
            cfg.r,
            &grads,
            1e-4,
        );
    }
}

/// Ten AdamW steps (lr 1e-2, wd 0.01, clip 1.0, alternating two batches) from a fixed
/// adapter with B != 0: per-step losses and grad norms within 1e-4 relative of PyTorch's; final
/// A/B within 1e-4 of each tensor's scale. Measured on lavapipe: losses within 1e-6, grad
/// norms within 2.4e-5, final A/B within 8.8e-6 (f32 bases) and 4.6e-5 (NF4) of the scale;
/// PyTorch itself, rerun on another x86 CPU, moves the final A/B by up to 1.5e-5. (Weight
/// decay is checked where it matters: tests/train/parity.rs.)
#[test]
fn ten_adamw_steps_match_pytorch() {
    let gpu = gpu_or_skip!();
    for (name, quant) in CASES {
        let case = Case::new(name);
        let m = model(quant);
        let (cfg, params) =
            adapter::load_dir(&case.dir.join("adapter_init"), &m.model_config()).unwrap();
        let optim = OptimConfig {
            weight_decay: 0.01,
            ..OptimConfig::default()
        };
        let mut trainer = LoraTrainer::new(gpu, &m, cfg.clone(), optim, &params).unwrap();
        let (want_loss, want_norm) = (case.f32("steps.loss"), case.f32("steps.grad_norm"));
        for step in 0..10 {
            let (loss, norm) =
                pollster::block_on(trainer.train_step(gpu, &[case.batch(step % 2)], 1e-2, 0))
                    .unwrap();
            assert_close(
                &format!("{name} step {step} loss"),
                &[loss],
                &want_loss[step..step + 1],
                0.0,
                1e-4,
            );
            assert_close(
                &format!("{name} step {step} grad norm"),
                &[norm],
                &want_norm[step..step + 1],
                0.0,
                1e-4,
            );
        }
        let got = pollster::block_on(trainer.params_host(gpu)).unwrap();
        assert_matches_peft(
            &format!("{name} final"),
            &case,
            "final.",
            &trainer.layout,
            cfg.r,
            &got,
            1e-4,
        );
    }
}

/// An adapter PEFT saved loads here and gives PEFT's logits (f32 bound, 1e-4).
#[test]
fn peft_saved_adapters_give_pefts_logits() {
    let gpu = gpu_or_skip!();
    for (name, quant) in CASES {
        let case = Case::new(name);
        let m = model(quant);
        let (cfg, params) =
            adapter::load_dir(&case.dir.join("adapter_final"), &m.model_config()).unwrap();
        let gpu_adapter = GpuAdapter::new(gpu, &m.model_config(), cfg, &params);
        let a = gpu_adapter.as_ref();
        let b = case.batch(0);
        let got = pollster::block_on(m.logits(gpu, &b.ids, &b.mask, 2, 24, Some(&a))).unwrap();
        assert_close(
            &format!("{name} logits with adapter"),
            &got,
            &case.f32("logits_final"),
            1e-4,
            0.0,
        );
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// An adapter saved here has exactly the tensor names, shapes, dtypes, metadata and config
/// fields (values and JSON types) that PEFT wrote for the same settings, and reloads to the
/// same values. (The reference script proves PEFT loads such files and reproduces logits.)
#[test]
fn saved_adapters_match_pefts_files() {
    for (name, quant) in CASES {
        let case = Case::new(name);
        let peft_dir = case.dir.join("adapter_final");
        let cfg_text = std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap();
        let mcfg = wgtune::model::Gpt2Config::from_file(&dir("models/tiny/config.json")).unwrap();
        let (cfg, params) = adapter::load_dir(&peft_dir, &ModelConfig::from(mcfg.clone())).unwrap();
        let layout = Layout::new(&ModelConfig::from(mcfg.clone()), &cfg);
        let out =
            std::env::temp_dir().join(format!("wgtune-adapter-{name}-{}", std::process::id()));
        let nf4 = matches!(quant, Quant::Nf4 { .. });
        adapter::save_dir(
            &out,
            &cfg,
            &layout,
            &params,
            "tests/fixtures/models/tiny",
            &ModelConfig::from(mcfg.clone()),
            nf4,
        )
        .unwrap();

        // Config: same keys and values; target_modules compared as a set (PEFT's order is a
        // Python set's).
        let mut want: serde_json::Value = serde_json::from_str(&cfg_text).unwrap();
        let mut got: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        for v in [&mut want, &mut got] {
            if let Some(serde_json::Value::Array(t)) = v.get_mut("target_modules") {
                t.sort_by_key(|x| x.to_string());
            }
        }
        assert_eq!(got, want, "{name}: adapter_config.json");

        // Weights: names, shapes, dtypes, metadata, values.
        let (a, b) = (
            read(&out.join("adapter_model.safetensors")),
            read(&peft_dir.join("adapter_model.safetensors")),
        );
        let (sa, sb) = (
            SafeTensors::deserialize(&a).unwrap(),
            SafeTensors::deserialize(&b).unwrap(),
        );
        let (mut na, mut nb) = (sa.names(), sb.names());
        na.sort();
        nb.sort();
        assert_eq!(na, nb, "{name}: tensor names");
        for n in na {
            let (ta, tb) = (sa.tensor(n).unwrap(), sb.tensor(n).unwrap());
            assert_eq!(
                (ta.dtype(), ta.shape()),
                (tb.dtype(), tb.shape()),
                "{name}: {n}"
            );
            assert_eq!(ta.data(), tb.data(), "{name}: {n} values");
        }
        let meta = |bytes: &[u8]| {
            SafeTensors::read_metadata(bytes)
                .unwrap()
                .1
                .metadata()
                .clone()
        };
        assert_eq!(meta(&a), meta(&b), "{name}: safetensors metadata");
        // No temporary files left behind by the atomic writes.
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{name}: {leftovers:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// PEFT's print_trainable_parameters line for each case.
#[test]
fn trainable_parameter_lines_match_peft() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("peft/print_trainable.json")).unwrap())
            .unwrap();
    let mcfg = wgtune::model::Gpt2Config::from_file(&dir("models/tiny/config.json")).unwrap();
    for (name, _) in CASES {
        let (cfg, _) = adapter::load_dir(
            &dir(&format!("peft/{name}/adapter_init")),
            &ModelConfig::from(mcfg.clone()),
        )
        .unwrap();
        let layout = lora::Layout::new(&ModelConfig::from(mcfg.clone()), &cfg);
        assert_eq!(
            trainable_line(layout.trainable, mcfg.num_params()),
            want[name].as_str().unwrap(),
            "{name}"
        );
    }
}

/// `merge` folds PEFT's adapter into the base exactly as `merge_and_unload()` +
/// `save_pretrained` do: same tensor names and metadata, weights within 1e-6, and the merged
/// model's logits equal PEFT's merged logits (f32 bound 1e-4).
#[test]
fn merged_model_matches_pefts_merge() {
    let gpu = gpu_or_skip!();
    let case = Case::new("attn_r4");
    let out = std::env::temp_dir().join(format!("wgtune-merged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    wgtune::merge::merge_dir(&dir("models/tiny"), &case.dir.join("adapter_final"), &out).unwrap();
    let (a, b) = (
        read(&out.join("model.safetensors")),
        read(&case.dir.join("merged/model.safetensors")),
    );
    let (sa, sb) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    let (mut na, mut nb) = (sa.names(), sb.names());
    na.sort();
    nb.sort();
    assert_eq!(na, nb, "merged tensor names");
    for n in na {
        let (ta, tb) = (sa.tensor(n).unwrap(), sb.tensor(n).unwrap());
        assert_eq!((ta.dtype(), ta.shape()), (tb.dtype(), tb.shape()), "{n}");
        let (va, vb): (Vec<f32>, Vec<f32>) = (
            bytemuck::pod_collect_to_vec(ta.data()),
            bytemuck::pod_collect_to_vec(tb.data()),
        );
        assert_close(n, &va, &vb, 1e-6, 0.0);
    }
    let (m, _) = load_dir(gpu, &out, Quant::F32).unwrap();
    let batch = case.batch(0);
    let got = pollster::block_on(m.logits(gpu, &batch.ids, &batch.mask, 2, 24, None)).unwrap();
    assert_close("merged logits", &got, &case.f32("merged_logits"), 1e-4, 0.0);
    std::fs::remove_dir_all(&out).unwrap();
}

/// Generation with an adapter through the KV cache picks the same greedy tokens as the full
/// forward pass with the adapter (which matches PEFT's logits above).
#[test]
fn kv_cache_generation_applies_the_adapter() {
    let gpu = gpu_or_skip!();
    let case = Case::new("all_r8_rslora");
    let m = model(Quant::F32);
    let (cfg, params) =
        adapter::load_dir(&case.dir.join("adapter_final"), &m.model_config()).unwrap();
    let gpu_adapter = GpuAdapter::new(gpu, &m.model_config(), cfg, &params);
    let a = gpu_adapter.as_ref();
    let mut ids: Vec<u32> = case.batch(0).ids[..6].to_vec();
    let mut cache = wgtune::model::generate::KvCache::new(gpu, &m);
    let mut next = ids.clone();
    for _ in 0..8 {
        let cached = pollster::block_on(m.step(gpu, &mut cache, &next, Some(&a))).unwrap();
        let t = ids.len();
        let full = pollster::block_on(m.logits(gpu, &ids, &vec![1; t], 1, t, Some(&a))).unwrap();
        let v = m.config.vocab_size;
        assert_close(
            "cached vs full logits",
            &cached,
            &full[(t - 1) * v..],
            1e-4,
            0.0,
        );
        let id = wgtune::sample::argmax(&cached);
        ids.push(id);
        next = vec![id];
    }
}

/// PEFT loads an adapter that `wgtune train` wrote (tests/reference/check_wgtune_adapter.py
/// records PEFT's logits with it) and gives the logits wgtune gives with it (f32 bound 1e-4).
#[test]
fn wgtune_adapters_give_pefts_logits() {
    let gpu = gpu_or_skip!();
    let case = dir("peft/wgtune_written");
    let bytes = std::fs::read(case.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let i64s = |n: &str| -> Vec<u32> {
        bytemuck::pod_collect_to_vec::<u8, i64>(st.tensor(n).unwrap().data())
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let m = model(Quant::F32);
    let (cfg, params) = adapter::load_dir(&case.join("adapter"), &m.model_config()).unwrap();
    let gpu_adapter = GpuAdapter::new(gpu, &m.model_config(), cfg, &params);
    let a = gpu_adapter.as_ref();
    let got = pollster::block_on(m.logits(
        gpu,
        &i64s("input_ids"),
        &i64s("attention_mask"),
        2,
        16,
        Some(&a),
    ))
    .unwrap();
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("logits").unwrap().data());
    assert_close(
        "wgtune adapter: ours vs PEFT logits",
        &got,
        &want,
        1e-4,
        0.0,
    );
}

/// `all-linear` selects exactly the modules PEFT selects for it, on the bitsandbytes 4-bit
/// model and on the f32 one (`all_linear_nf4/all_linear_modules.json`): every Conv1D of
/// every block, never the LM head.
#[test]
fn all_linear_selects_the_modules_peft_selects() {
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir("peft/all_linear_nf4/all_linear_modules.json")).unwrap(),
    )
    .unwrap();
    let mcfg = wgtune::model::Gpt2Config::from_file(&dir("models/tiny/config.json")).unwrap();
    let lora = lora::LoraConfig {
        r: 4,
        lora_alpha: 16.0,
        lora_dropout: 0.0,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    let got = lora.full_target_names(&ModelConfig::from(mcfg.clone()));
    for base in ["nf4", "f32"] {
        let names: Vec<String> = want[base]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, names, "all-linear on the {base} model");
    }
}
