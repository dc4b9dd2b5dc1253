//! The Llama family's layers, composed from the CPU references of the kernels (`wgtune::cpu`)
//! as the GPU passes compose the kernels, against transformers (`LlamaForCausalLM`,
//! `Qwen2ForCausalLM`; tests/reference/make_llama_fixtures.py): the config reader, RoPE's
//! frequencies (Llama 3's scaling included), RMSNorm, q/k/v packing, grouped-query attention
//! with padding, SwiGLU, the tied or untied head and Qwen2's q/k/v biases give the logits
//! and losses transformers gives.

use std::collections::HashMap;

use safetensors::SafeTensors;
use wgtune::cpu;
use wgtune::model::llama_config::{LlamaConfig, LlamaKind, RopeScaling};

use crate::common::assert_close;
use crate::fixtures::{Reference, dir};

const MODELS: [&str; 2] = ["llama_tiny", "qwen2_tiny"];

/// A checkpoint's tensors by name, in f32.
fn weights(model: &str) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir(&format!("models/{model}/model.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let v = wgtune::model::load::to_f32(
                t.data(),
                t.dtype(),
                std::path::Path::new(model),
                &name,
            )
            .unwrap();
            (name, v.into_owned())
        })
        .collect()
}

/// `y (rows, out) = x · Wᵀ + b` for an nn.Linear `W (out, in)`.
fn linear(w: &HashMap<String, Vec<f32>>, name: &str, x: &[f32], rows: usize, k: usize) -> Vec<f32> {
    let weight = &w[&format!("{name}.weight")];
    let n = weight.len() / k;
    let bias = w.get(&format!("{name}.bias")).map(Vec::as_slice);
    let mut y = vec![0.0; rows * n];
    cpu::matmul::gemm(&mut y, x, weight, bias, rows, n, k, false, true, 1.0, 0.0);
    y
}

/// Logits `(B,T,V)` of `ids (B,T)` with `mask`, positions 0..T (transformers' default
/// position ids, whatever the padding).
fn logits(
    cfg: &LlamaConfig,
    w: &HashMap<String, Vec<f32>>,
    ids: &[u32],
    mask: &[u32],
    b: usize,
    t: usize,
) -> Vec<f32> {
    let (c, ff, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.kv_dim());
    let (nh, nkv, hd) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let rows = b * t;
    let eps = cfg.rms_norm_eps as f32;
    let table = cpu::rope::cos_sin_table(&cfg.inv_freq(), t);
    let embed = &w["model.embed_tokens.weight"];
    let mut x: Vec<f32> = ids
        .iter()
        .flat_map(|&id| embed[id as usize * c..][..c].iter().copied())
        .collect();
    let norm = |x: &[f32], name: &str| {
        let (mut out, mut rstd) = (vec![0.0; rows * c], vec![0.0; rows]);
        cpu::layernorm::rmsnorm_forward(&mut out, &mut rstd, x, &w[name], rows, c, eps);
        out
    };
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let h = norm(&x, &format!("{p}.input_layernorm.weight"));
        let q = linear(w, &format!("{p}.self_attn.q_proj"), &h, rows, c);
        let k = linear(w, &format!("{p}.self_attn.k_proj"), &h, rows, c);
        let v = linear(w, &format!("{p}.self_attn.v_proj"), &h, rows, c);
        let mut qkv = vec![0.0; rows * (c + 2 * kv)];
        cpu::rope::rope_pack(&mut qkv, &q, &k, &v, &table, (rows, t, 0), (nh, nkv, hd));
        let mut att = vec![0.0; rows * c];
        cpu::attention::attention_forward(&mut att, &qkv, mask, b, t, c, nh, nkv);
        let o = linear(w, &format!("{p}.self_attn.o_proj"), &att, rows, c);
        x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
        let h = norm(&x, &format!("{p}.post_attention_layernorm.weight"));
        let gate = linear(w, &format!("{p}.mlp.gate_proj"), &h, rows, c);
        let up = linear(w, &format!("{p}.mlp.up_proj"), &h, rows, c);
        let mut g = vec![0.0; rows * ff];
        cpu::elementwise::swiglu_forward(&mut g, &gate, &up);
        let down = linear(w, &format!("{p}.mlp.down_proj"), &g, rows, ff);
        x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
    }
    let h = norm(&x, "model.norm.weight");
    let head = if cfg.tie_word_embeddings {
        "model.embed_tokens"
    } else {
        "lm_head"
    };
    assert_eq!(
        w.contains_key("lm_head.weight"),
        !cfg.tie_word_embeddings,
        "a tied model's file has no lm_head.weight"
    );
    linear(w, head, &h, rows, c)
}

#[test]
fn configs_read_as_transformers_writes_them() {
    let llama = LlamaConfig::from_file(&dir("models/llama_tiny/config.json")).unwrap();
    assert_eq!(llama.kind, LlamaKind::Llama);
    assert_eq!(
        (
            llama.num_attention_heads,
            llama.num_key_value_heads,
            llama.head_dim
        ),
        (6, 3, 12)
    );
    assert!(!llama.tie_word_embeddings && !llama.qkv_bias);
    assert!(matches!(llama.rope_scaling, RopeScaling::Llama3 { .. }));
    let qwen = LlamaConfig::from_file(&dir("models/qwen2_tiny/config.json")).unwrap();
    assert_eq!(qwen.kind, LlamaKind::Qwen2);
    assert_eq!(
        (
            qwen.num_attention_heads,
            qwen.num_key_value_heads,
            qwen.head_dim
        ),
        (3, 1, 20)
    );
    assert!(qwen.tie_word_embeddings && qwen.qkv_bias && !qwen.o_bias);
    assert_eq!(qwen.rope_scaling, RopeScaling::Default);
}

/// Every parameter counted as the checkpoint holds it.
#[test]
fn parameter_counts_match_the_checkpoints() {
    for model in MODELS {
        let cfg = LlamaConfig::from_file(&dir(&format!("models/{model}/config.json"))).unwrap();
        let n: usize = weights(model).values().map(Vec::len).sum();
        assert_eq!(cfg.num_params(), n, "{model}");
    }
}

/// The composed CPU references reproduce transformers' f32 logits and per-sequence losses.
#[test]
fn cpu_layers_compose_to_transformers_logits() {
    for model in MODELS {
        let cfg = LlamaConfig::from_file(&dir(&format!("models/{model}/config.json"))).unwrap();
        let w = weights(model);
        let r = Reference::of(model);
        let shape = r.shape("input_ids");
        let (b, t) = (shape[0], shape[1]);
        let (ids, mask) = (r.ids("input_ids"), r.ids("attention_mask"));
        let got = logits(&cfg, &w, &ids, &mask, b, t);
        assert_close(
            &format!("{model} logits"),
            &got,
            &r.f32("logits"),
            1e-4,
            1e-4,
        );
    }
}

/// Bad config.json files get one line naming the file and the field.
#[test]
fn bad_configs_are_named() {
    let path = std::path::Path::new("cfg/config.json");
    let base = std::fs::read_to_string(dir("models/llama_tiny/config.json")).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
        f(&mut v);
        LlamaConfig::from_json(&v.to_string(), path)
            .unwrap_err()
            .to_string()
    };
    let e = edit(&|v| v["num_key_value_heads"] = 4.into());
    assert!(
        e.contains("cfg/config.json") && e.contains("num_key_value_heads 4"),
        "{e}"
    );
    let e = edit(&|v| v["model_type"] = "mistral".into());
    assert!(e.contains("\"mistral\""), "{e}");
    let e = edit(&|v| v["hidden_act"] = "gelu".into());
    assert!(e.contains("hidden_act"), "{e}");
    let e = edit(&|v| {
        v["rope_parameters"] = serde_json::json!({"rope_type": "yarn", "rope_theta": 1e4})
    });
    assert!(e.contains("rope_type \"yarn\""), "{e}");
    let e = edit(&|v| v["eos_token_id"] = serde_json::json!([5, 99999]));
    assert!(e.contains("99999"), "{e}");
}

/// The presets' shapes give the parameter counts the models publish.
#[test]
fn preset_shapes_count_the_published_parameters() {
    for (name, want) in [
        ("smollm2-135m", 134_515_008),
        ("smollm2-360m", 361_821_120),
        ("qwen2.5-0.5b", 494_032_768),
        ("llama-3.2-1b", 1_235_814_400),
    ] {
        let cfg = LlamaConfig::preset_shape(name).unwrap();
        assert_eq!(cfg.num_params(), want, "{name}");
        assert_eq!(
            LlamaConfig::preset_shape(&format!("{name}-instruct")),
            Some(cfg)
        );
    }
}

/// The hub's older spelling (`rope_theta` and `rope_scaling` at the top level, as
/// transformers 4 wrote Llama 3.2's config) reads as transformers 5's `rope_parameters`.
#[test]
fn hub_config_spelling_reads_the_same() {
    let new = LlamaConfig::from_file(&dir("models/llama_tiny/config.json")).unwrap();
    let hub = LlamaConfig::from_file(&dir("models/llama_tiny/config.hub.json")).unwrap();
    assert_eq!(new, hub);
}

/// RoPE's inverse frequencies as transformers computes them in f32, Llama 3's scaling
/// included (llama_tiny's frequencies are kept, smoothed and divided: see the fixture
/// script), to an ulp.
#[test]
fn rope_frequencies_match_transformers() {
    for model in MODELS {
        let cfg = LlamaConfig::from_file(&dir(&format!("models/{model}/config.json"))).unwrap();
        let want = Reference::of(model).f32("rope.inv_freq");
        assert_close(
            &format!("{model} inv_freq"),
            &cfg.inv_freq(),
            &want,
            0.0,
            2.4e-7,
        );
    }
}
