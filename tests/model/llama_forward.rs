//! The Llama family on the GPU against transformers and bitsandbytes
//! (tests/reference/make_llama_fixtures.py): f32 logits of a tiny Llama (GQA 6/3, head_dim
//! 12, Llama 3 RoPE scaling, untied head) and a tiny Qwen2 (one KV head, head_dim 20, q/k/v
//! biases, tied head) with a padded row; NF4 bytes of the nn.Linear layout and NF4 logits.

use wgtune::model::gpt2::Quant;
use wgtune::model::llama::{Llama, module_dims};
use wgtune::model::llama_config::LlamaConfig;
use wgtune::model::safetensors_file::SafetensorsFile;
use wgtune::model::{ModelRef, Module};
use wgtune::nf4;

use crate::common::{assert_close, gpu};
use crate::fixtures::{Reference, dir};
use crate::gpu_or_skip;

const MODELS: [&str; 2] = ["llama_tiny", "qwen2_tiny"];

fn load(model: &str, quant: Quant) -> (Llama, SafetensorsFile) {
    let d = dir(&format!("models/{model}"));
    let cfg = LlamaConfig::from_file(&d.join("config.json")).unwrap();
    let file = SafetensorsFile::open(&d.join("model.safetensors")).unwrap();
    let m = Llama::load(gpu().unwrap(), cfg, &file, quant).unwrap();
    (m, file)
}

fn logits(m: &Llama, r: &Reference) -> Vec<f32> {
    let shape = r.shape("input_ids");
    let (ids, mask) = (r.ids("input_ids"), r.ids("attention_mask"));
    pollster::block_on(m.logits(gpu().unwrap(), &ids, &mask, (shape[0], shape[1]), None)).unwrap()
}

#[test]
fn f32_logits_match_transformers() {
    let _ = gpu_or_skip!();
    for model in MODELS {
        let (m, _) = load(model, Quant::F32);
        let r = Reference::of(model);
        assert_close(
            &format!("{model} logits"),
            &logits(&m, &r),
            &r.f32("logits"),
            1e-4,
            1e-4,
        );
    }
}

/// bitsandbytes' NF4 bytes of every Linear, from wgtune's host quantizer on the weight as it
/// is stored (transposed to Conv1D): the nn.Linear layout's flat blocks of 64, partial last
/// blocks included.
#[test]
fn nf4_bytes_match_bitsandbytes() {
    for model in MODELS {
        let d = dir(&format!("models/{model}"));
        let cfg = LlamaConfig::from_file(&d.join("config.json")).unwrap();
        let file = SafetensorsFile::open(&d.join("model.safetensors")).unwrap();
        let r = Reference::of(model);
        for l in 0..cfg.num_hidden_layers {
            for m in Module::LLAMA {
                let name = format!("model.layers.{l}.{}", m.path());
                let (k_in, n_out) = module_dims(&cfg, m);
                let info = file.info(&format!("{name}.weight")).unwrap();
                let raw = file.bytes(&format!("{name}.weight")).unwrap();
                let w = wgtune::model::load::to_f32(raw, info.dtype, file.path(), &name).unwrap();
                let mut conv1d = vec![0.0; w.len()];
                for o in 0..n_out {
                    for i in 0..k_in {
                        conv1d[i * n_out + o] = w[o * k_in + i];
                    }
                }
                let q = nf4::quantize_conv1d(&conv1d, k_in, n_out);
                assert_eq!(
                    q.packed,
                    r.u8(&format!("nf4.{name}.packed")),
                    "{model} {name} packed"
                );
                assert_eq!(
                    q.absmax,
                    r.f32(&format!("nf4.{name}.absmax")),
                    "{model} {name} absmax"
                );
            }
        }
    }
}

/// The NF4 model's logits against bitsandbytes' 4-bit model (embedding and head in f32 on
/// both sides).
#[test]
fn nf4_logits_match_bitsandbytes() {
    let gpu = gpu_or_skip!();
    for model in MODELS {
        let (mut m, file) = load(
            model,
            Quant::Nf4 {
                double_quant: false,
            },
        );
        m.use_f32_tables(gpu, &file).unwrap();
        let r = Reference::of(model);
        let got = logits(&m, &r);
        assert_close(
            &format!("{model} nf4 logits"),
            &got,
            &r.f32("nf4_logits"),
            1e-4,
            1e-4,
        );
    }
}

/// Greedy decoding through the KV cache (prefill of the prompt, then one token a step)
/// gives transformers' greedy tokens, on both models.
#[test]
fn greedy_generation_with_kv_cache_matches_transformers() {
    let gpu = gpu_or_skip!();
    for model in MODELS {
        let (m, _) = load(model, Quant::F32);
        let m = ModelRef::Llama(&m);
        let r = Reference::of(model);
        let prompt = r.ids("greedy_prompt");
        let want = r.ids("greedy_output");
        let mut cache = m.kv_cache(gpu, want.len());
        let mut out = prompt.clone();
        let mut next = prompt.clone();
        while out.len() < want.len() {
            let logits = pollster::block_on(m.step(gpu, &mut cache, &next, None)).unwrap();
            let id = wgtune::sample::argmax(&logits);
            out.push(id);
            next = vec![id];
        }
        assert_eq!(out, want, "{model}: greedy tokens");
        // The last token fills the cache; one more is refused, not written past its end.
        pollster::block_on(m.step(gpu, &mut cache, &next, None)).unwrap();
        let e = pollster::block_on(m.step(gpu, &mut cache, &[1], None)).unwrap_err();
        assert!(e.to_string().contains("exceed the KV cache"), "{e}");
    }
}

/// Evaluation's per-position losses of the batch's rows equal the fixture's per-sequence
/// mean losses (the padded row's padding excluded).
#[test]
fn position_losses_match_transformers() {
    let gpu = gpu_or_skip!();
    for model in MODELS {
        let (m, _) = load(model, Quant::F32);
        let r = Reference::of(model);
        let shape = r.shape("input_ids");
        let (b, t) = (shape[0], shape[1]);
        let (ids, mask) = (r.ids("input_ids"), r.ids("attention_mask"));
        // transformers' labels: the ids, -100 on padding; position j predicts token j+1.
        let targets: Vec<i32> = (0..b * t)
            .map(|i| {
                let next = i + 1;
                if i % t + 1 < t && mask[next] == 1 {
                    ids[next] as i32
                } else {
                    -100
                }
            })
            .collect();
        let losses = pollster::block_on(
            ModelRef::Llama(&m).position_losses(gpu, &ids, &mask, &targets, b, t, None),
        )
        .unwrap();
        let per_row: Vec<f32> = (0..b)
            .map(|row| {
                let (mut s, mut n) = (0.0f64, 0);
                for j in 0..t {
                    if targets[row * t + j] >= 0 {
                        s += losses[row * t + j] as f64;
                        n += 1;
                    }
                }
                (s / n as f64) as f32
            })
            .collect();
        assert_close(
            &format!("{model} losses"),
            &per_row,
            &r.f32("losses"),
            0.0,
            1e-5,
        );
    }
}
