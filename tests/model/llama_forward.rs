//! The Llama family on the GPU against transformers and bitsandbytes
//! (tests/reference/make_llama_fixtures.py): f32 logits of a tiny Llama (GQA 6/3, head_dim
//! 12, Llama 3 RoPE scaling, untied head) and a tiny Qwen2 (one KV head, head_dim 20, q/k/v
//! biases, tied head) with a padded row; NF4 bytes of the nn.Linear layout and NF4 logits.

use wgtune::model::Module;
use wgtune::model::gpt2::Quant;
use wgtune::model::llama::{Llama, module_dims};
use wgtune::model::llama_config::LlamaConfig;
use wgtune::model::safetensors_file::SafetensorsFile;
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
    pollster::block_on(m.logits(gpu().unwrap(), &ids, &mask, shape[0], shape[1])).unwrap()
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
