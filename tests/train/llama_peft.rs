//! The Llama family's LoRA backward against PEFT (tests/reference/make_llama_fixtures.py):
//! one step's loss and the gradients of every lora_A / lora_B of all seven modules, on a tiny
//! Llama (GQA, Llama 3 RoPE, untied head) and a tiny Qwen2 (one KV head, q/k/v biases, tied
//! head) with f32 bases, and on the Llama with a bitsandbytes NF4 base.

use safetensors::SafeTensors;
use wgtune::gpu::Tensor;
use wgtune::kernels::optim::{AdamW, NORM_PARTIALS, adamw, grad_norm};
use wgtune::model::gpt2::Quant;
use wgtune::model::llama::{Llama, module_dims};
use wgtune::model::llama_config::LlamaConfig;
use wgtune::model::llama_forward::LlamaActs;
use wgtune::model::safetensors_file::SafetensorsFile;
use wgtune::model::{AdapterRef, LoraSlot, Module};
use wgtune::train::Batch;
use wgtune::train::llama_backward::record_loss_and_backward;

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
const RANK: usize = 4;
const ALPHA: f32 = 8.0;

/// PEFT's key of a slot's module, without the `.lora_A.weight` suffix.
fn key(s: &LoraSlot) -> String {
    format!("base_model.model.{}", s.module.full_name(s.layer))
}

/// Every module of every layer, laid out A then B one after another, with PEFT's initial
/// weights.
fn adapter(cfg: &LlamaConfig, case: &Case) -> (Vec<LoraSlot>, Vec<f32>) {
    let bytes = std::fs::read(case.dir.join("adapter_init/adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut slots = Vec::new();
    let mut params = Vec::new();
    for layer in 0..cfg.num_hidden_layers {
        for module in Module::LLAMA {
            let (k_in, n_out) = module_dims(cfg, module);
            let a = params.len();
            let b = a + RANK * k_in;
            let slot = LoraSlot {
                layer,
                module,
                k_in,
                n_out,
                a,
                b,
            };
            for part in ["lora_A", "lora_B"] {
                let t = st.tensor(&format!("{}.{part}.weight", key(&slot))).unwrap();
                params.extend(bytemuck::pod_collect_to_vec::<u8, f32>(t.data()));
            }
            slots.push(slot);
        }
    }
    (slots, params)
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

/// Record one micro-batch's forward and backward: LoRA gradients accumulated into `grads`,
/// per-position losses into the returned tensor; returns it with the trained-token count.
fn record_step(
    cmd: &mut wgtune::gpu::Commands,
    m: &Llama,
    ad: &AdapterRef,
    grads: &Tensor,
    batch: &Batch,
) -> (Tensor, usize) {
    let gpu = cmd.gpu();
    let (b, t) = (batch.b, batch.t);
    let trained = batch.targets.iter().filter(|&&x| x >= 0).count();
    let target_words: Vec<u32> = batch.targets.iter().map(|&x| x as u32).collect();
    let (ids, mask) = (gpu.upload_u32(&batch.ids), gpu.upload_u32(&batch.mask));
    let targets = gpu.upload_u32(&target_words);
    let loss = gpu.tensor(b * t);
    let acts: LlamaActs = m.record_forward(cmd, &ids, &mask, (b, t), Some(ad), true);
    let scale = 1.0 / trained as f32;
    record_loss_and_backward(m, cmd, &acts, &mask, &targets, &loss, ad, grads, scale);
    (loss, trained)
}

/// The mean of the trained positions' losses.
fn mean_loss(losses: &[f32], batch: &Batch, trained: usize) -> f32 {
    let sum: f64 = batch
        .targets
        .iter()
        .zip(losses)
        .filter(|(t, _)| **t >= 0)
        .map(|(_, l)| *l as f64)
        .sum();
    (sum / trained as f64) as f32
}

fn adapter_ref<'a>(slots: &'a [LoraSlot], params: &'a Tensor) -> AdapterRef<'a> {
    AdapterRef {
        slots,
        params,
        rank: RANK,
        scale: ALPHA / RANK as f32,
        p_drop: 0.0,
        seed: 0,
    }
}

/// PEFT's tensors `{prefix}{key}.lora_{A,B}.weight` against the flat `got`, each within `rel`
/// of its largest value.
fn assert_matches(
    what: &str,
    case: &Case,
    prefix: &str,
    slots: &[LoraSlot],
    got: &[f32],
    rel: f32,
) {
    for s in slots {
        let k = key(s);
        for (part, off, n) in [
            ("lora_A", s.a, RANK * s.k_in),
            ("lora_B", s.b, s.n_out * RANK),
        ] {
            let want = case.f32(&format!("{prefix}{k}.{part}.weight"));
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let name = format!("{what} {k}.{part}");
            assert_close(&name, &got[off..off + n], &want, rel * scale, rel);
        }
    }
}

/// The loss within 1e-5 relative, every gradient within 1e-4 of its tensor's largest.
#[test]
fn one_step_gradients_match_peft() {
    let gpu = gpu_or_skip!();
    for (name, model_name, quant) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let m = model(model_name, quant);
        let (slots, params) = adapter(&m.config, &case);
        let (p, grads) = (gpu.upload_f32(&params), gpu.zeros(params.len()));
        let ad = adapter_ref(&slots, &p);
        let batch = case.batch(0);
        let mut cmd = gpu.commands();
        let (loss, trained) = record_step(&mut cmd, &m, &ad, &grads, &batch);
        cmd.submit();
        let losses = pollster::block_on(gpu.read_f32(&loss)).unwrap();
        let loss = mean_loss(&losses, &batch, trained);
        assert_close(
            &format!("{name} loss0"),
            &[loss],
            &case.f32("loss0"),
            0.0,
            1e-5,
        );
        let grads = pollster::block_on(gpu.read_f32(&grads)).unwrap();
        assert_matches(
            &format!("{name} grad"),
            &case,
            "grad.",
            &slots,
            &grads,
            1e-4,
        );
    }
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
        let (slots, params) = adapter(&m.config, &case);
        let n = params.len();
        let p = gpu.upload_f32(&params);
        let (grads, exp_avg, exp_avg_sq) = (gpu.tensor(n), gpu.zeros(n), gpu.zeros(n));
        let (norm, partials) = (gpu.zeros(2), gpu.tensor(NORM_PARTIALS));
        let ad = adapter_ref(&slots, &p);
        let (want_loss, want_norm) = (case.f32("steps.loss"), case.f32("steps.grad_norm"));
        let (mut losses, mut norms) = (Vec::new(), Vec::new());
        for step in 0..want_loss.len() {
            let batch = case.batch(step % 2);
            let mut cmd = gpu.commands();
            cmd.copy(&gpu.zeros(n), &grads);
            let (loss, trained) = record_step(&mut cmd, &m, &ad, &grads, &batch);
            grad_norm(&mut cmd, &norm, &partials, &grads, n, 1.0);
            let h = AdamW {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                step: step as u32 + 1,
            };
            adamw(&mut cmd, &p, &exp_avg, &exp_avg_sq, &grads, &norm, n, &h);
            cmd.submit();
            let l = pollster::block_on(gpu.read_f32(&loss)).unwrap();
            losses.push(mean_loss(&l, &batch, trained));
            norms.push(pollster::block_on(gpu.read_f32(&norm)).unwrap()[0]);
        }
        assert_close(
            &format!("{name} step losses"),
            &losses,
            &want_loss,
            0.0,
            1e-4,
        );
        assert_close(&format!("{name} grad norms"), &norms, &want_norm, 0.0, 1e-4);
        let got = pollster::block_on(gpu.read_f32(&p)).unwrap();
        assert_matches(
            &format!("{name} final"),
            &case,
            "final.",
            &slots,
            &got,
            1e-4,
        );
    }
}
