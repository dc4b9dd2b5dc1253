//! The Llama family's LoRA backward against PEFT (tests/reference/make_llama_fixtures.py):
//! one step's loss and the gradients of every lora_A / lora_B of all seven modules, on a tiny
//! Llama (GQA, Llama 3 RoPE, untied head) and a tiny Qwen2 (one KV head, q/k/v biases, tied
//! head) with f32 bases, and on the Llama with a bitsandbytes NF4 base.

use safetensors::SafeTensors;
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

/// One micro-batch's mean loss and LoRA gradients.
fn gradients(m: &Llama, slots: &[LoraSlot], params: &[f32], batch: &Batch) -> (f32, Vec<f32>) {
    let gpu = gpu().unwrap();
    let (b, t) = (batch.b, batch.t);
    let trained = batch.targets.iter().filter(|&&x| x >= 0).count();
    let target_words: Vec<u32> = batch.targets.iter().map(|&x| x as u32).collect();
    let (ids, mask) = (gpu.upload_u32(&batch.ids), gpu.upload_u32(&batch.mask));
    let targets = gpu.upload_u32(&target_words);
    let (p, grads, loss) = (
        gpu.upload_f32(params),
        gpu.zeros(params.len()),
        gpu.tensor(b * t),
    );
    let ad = AdapterRef {
        slots,
        params: &p,
        rank: RANK,
        scale: ALPHA / RANK as f32,
        p_drop: 0.0,
        seed: 0,
    };
    let mut cmd = gpu.commands();
    let acts: LlamaActs = m.record_forward(&mut cmd, &ids, &mask, (b, t), Some(&ad), true);
    let scale = 1.0 / trained as f32;
    record_loss_and_backward(
        m, &mut cmd, &acts, &mask, &targets, &loss, &ad, &grads, scale,
    );
    cmd.submit();
    let losses = pollster::block_on(gpu.read_f32(&loss)).unwrap();
    let mean = batch
        .targets
        .iter()
        .zip(&losses)
        .filter(|(t, _)| **t >= 0)
        .map(|(_, l)| *l as f64)
        .sum::<f64>()
        / trained as f64;
    (
        mean as f32,
        pollster::block_on(gpu.read_f32(&grads)).unwrap(),
    )
}

/// The loss within 1e-5 relative, every gradient within 1e-4 of its tensor's largest.
#[test]
fn one_step_gradients_match_peft() {
    let _ = gpu_or_skip!();
    for (name, model_name, quant) in CASES {
        let case = Case::at(&format!("peft/{name}"));
        let m = model(model_name, quant);
        let (slots, params) = adapter(&m.config, &case);
        let (loss, grads) = gradients(&m, &slots, &params, &case.batch(0));
        assert_close(
            &format!("{name} loss0"),
            &[loss],
            &case.f32("loss0"),
            0.0,
            1e-5,
        );
        for s in &slots {
            let k = key(s);
            for (part, off, n) in [
                ("lora_A", s.a, RANK * s.k_in),
                ("lora_B", s.b, s.n_out * RANK),
            ] {
                let want = case.f32(&format!("grad.{k}.{part}.weight"));
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let what = format!("{name} grad {k}.{part}");
                assert_close(&what, &grads[off..off + n], &want, 1e-4 * scale, 1e-4);
            }
        }
    }
}
