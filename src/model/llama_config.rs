//! Llama-family hyper-parameters (`LlamaForCausalLM`: SmolLM2, Llama 3.2; `Qwen2ForCausalLM`:
//! Qwen2.5) from a Hugging Face `config.json`, their RoPE frequencies, and the named presets.
//!
//! Both spellings of the rotary settings are read: the hub's (`rope_theta` and `rope_scaling`
//! at the top level) and transformers 5's (`rope_parameters`).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::Result;
use crate::kernels::attention::MAX_HEAD_DIM;
use crate::model::block::Module;
use crate::model::config::MAX_LAYERS;
use crate::{bail, err};

/// Which of the two architectures: they differ in the biases only (Qwen2's q/k/v have one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlamaKind {
    Llama,
    Qwen2,
}

/// RoPE's frequency schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `inv_freq[i] = 1 / theta^(2i / head_dim)`.
    Default,
    /// Llama 3's ("rope_type": "llama3"): long wavelengths divided by `factor`, short ones
    /// kept, a smooth blend between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub kind: LlamaKind,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// The LM head is the token embedding (no `lm_head.weight` in the file).
    pub tie_word_embeddings: bool,
    /// Biases on q_proj, k_proj, v_proj (Qwen2 always; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on o_proj (Llama's `attention_bias`).
    pub o_bias: bool,
    /// Biases on gate_proj, up_proj, down_proj (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    /// Every end-of-sequence id (Llama 3.2 Instruct lists three).
    pub eos_token_ids: Vec<u32>,
}

/// config.json as written: the fields read, the rest ignored.
#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    num_hidden_layers: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

/// Hub ids of the Llama family, by their short names.
pub const PRESETS: [(&str, &str); 8] = [
    ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M"),
    (
        "smollm2-135m-instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    ("smollm2-360m", "HuggingFaceTB/SmolLM2-360M"),
    (
        "smollm2-360m-instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
    ),
    ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B"),
    ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
    ("llama-3.2-1b-instruct", "meta-llama/Llama-3.2-1B-Instruct"),
];

/// The model types this module reads.
pub fn is_llama_family(model_type: &str) -> bool {
    matches!(model_type, "llama" | "qwen2")
}

/// (in, out) features of Llama module `m`.
pub fn module_dims(cfg: &LlamaConfig, m: Module) -> (usize, usize) {
    let (c, kv, ff) = (cfg.hidden_size, cfg.kv_dim(), cfg.intermediate_size);
    match m {
        Module::QProj | Module::OProj => (c, c),
        Module::KProj | Module::VProj => (c, kv),
        Module::GateProj | Module::UpProj => (c, ff),
        Module::DownProj => (ff, c),
        _ => panic!("{m:?} is a GPT-2 module"),
    }
}

/// Whether the checkpoint has a bias for Llama module `m`.
pub fn module_has_bias(cfg: &LlamaConfig, m: Module) -> bool {
    match m {
        Module::QProj | Module::KProj | Module::VProj => cfg.qkv_bias,
        Module::OProj => cfg.o_bias,
        _ => cfg.mlp_bias,
    }
}

impl LlamaConfig {
    /// The shapes of a preset (base and instruct share them), as their config.json files on
    /// the hub give them: for benchmarks with random weights, no download.
    pub fn preset_shape(name: &str) -> Option<Self> {
        let base = name.strip_suffix("-instruct").unwrap_or(name);
        // (kind, hidden, intermediate, heads, kv heads, layers, vocab, theta, eps, max pos)
        let (kind, c, ff, nh, nkv, nl, v, theta, eps, pos) = match base {
            "smollm2-135m" => (
                LlamaKind::Llama,
                576,
                1536,
                9,
                3,
                30,
                49152,
                1e5,
                1e-5,
                8192,
            ),
            "smollm2-360m" => (
                LlamaKind::Llama,
                960,
                2560,
                15,
                5,
                32,
                49152,
                1e5,
                1e-5,
                8192,
            ),
            "qwen2.5-0.5b" => (
                LlamaKind::Qwen2,
                896,
                4864,
                14,
                2,
                24,
                151936,
                1e6,
                1e-6,
                32768,
            ),
            "llama-3.2-1b" => (
                LlamaKind::Llama,
                2048,
                8192,
                32,
                8,
                16,
                128256,
                5e5,
                1e-5,
                131072,
            ),
            _ => return None,
        };
        let rope_scaling = if base == "llama-3.2-1b" {
            RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }
        } else {
            RopeScaling::Default
        };
        let (bos, eos) = match base {
            "smollm2-135m" | "smollm2-360m" => (0, 0),
            "qwen2.5-0.5b" => (151643, 151643),
            _ => (128000, 128001),
        };
        Some(Self {
            kind,
            hidden_size: c,
            intermediate_size: ff,
            num_attention_heads: nh,
            num_key_value_heads: nkv,
            head_dim: c / nh,
            num_hidden_layers: nl,
            max_position_embeddings: pos,
            vocab_size: v,
            rms_norm_eps: eps,
            rope_theta: theta,
            rope_scaling,
            tie_word_embeddings: true,
            qkv_bias: kind == LlamaKind::Qwen2,
            o_bias: false,
            mlp_bias: false,
            bos_token_id: Some(bos),
            eos_token_ids: vec![eos],
        })
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let p = path.display();
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| err!("{p}: not a Llama or Qwen2 config.json: {e}"))?;
        let kind = match raw.model_type.as_deref() {
            Some("llama") => LlamaKind::Llama,
            Some("qwen2") => LlamaKind::Qwen2,
            Some(t) => {
                bail!("{p}: model_type is {t:?}; the Llama family reads \"llama\" or \"qwen2\"")
            }
            None => bail!("{p}: no model_type (expected \"llama\" or \"qwen2\")"),
        };
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            bail!("{p}: hidden_act {act:?} is not supported (Llama and Qwen2 use silu)");
        }
        if raw.use_sliding_window == Some(true) {
            bail!("{p}: use_sliding_window is true; sliding-window attention is not supported");
        }
        let (theta, scaling) = rope(&raw, path)?;
        let nh = raw.num_attention_heads;
        if nh == 0 {
            bail!("{p}: num_attention_heads is 0");
        }
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let cfg = Self {
            kind,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_attention_heads: nh,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(nh),
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / nh),
            num_hidden_layers: raw.num_hidden_layers,
            max_position_embeddings: raw.max_position_embeddings,
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: theta,
            rope_scaling: scaling,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: kind == LlamaKind::Qwen2 || attention_bias,
            o_bias: kind == LlamaKind::Llama && attention_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id: token_ids(raw.bos_token_id.as_ref(), "bos_token_id", path)?
                .first()
                .copied(),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref(), "eos_token_id", path)?,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err!("{}: cannot read: {e}", path.display()))?;
        Self::from_json(&text, path)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let p = path.display();
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                bail!("{p}: {name} is 0");
            }
        }
        let (nh, nkv) = (self.num_attention_heads, self.num_key_value_heads);
        if !nh.is_multiple_of(nkv) {
            bail!("{p}: num_attention_heads {nh} is not a multiple of num_key_value_heads {nkv}");
        }
        if nh * self.head_dim != self.hidden_size {
            bail!(
                "{p}: num_attention_heads {nh} x head_dim {} is not hidden_size {}; such models are not supported",
                self.head_dim,
                self.hidden_size
            );
        }
        if self.head_dim > MAX_HEAD_DIM || !self.head_dim.is_multiple_of(2) {
            bail!(
                "{p}: head_dim {} is not supported (an even size up to {MAX_HEAD_DIM})",
                self.head_dim
            );
        }
        if self.num_hidden_layers > MAX_LAYERS {
            bail!(
                "{p}: num_hidden_layers {} exceeds the supported {MAX_LAYERS}",
                self.num_hidden_layers
            );
        }
        if self.vocab_size > i32::MAX as usize {
            bail!("{p}: vocab_size {} is too large", self.vocab_size);
        }
        for &id in self.eos_token_ids.iter().chain(&self.bos_token_id) {
            if id as usize >= self.vocab_size {
                bail!(
                    "{p}: token id {id} (bos/eos) is outside the vocabulary of {} tokens",
                    self.vocab_size
                );
            }
        }
        if self.checked_num_params().is_none() {
            bail!("{p}: the sizes make more parameters than this machine can count");
        }
        Ok(())
    }

    /// Width of the keys and of the values: `num_key_value_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// The first end-of-sequence id config.json names (0 where it names none: the
    /// tokenizer's own is used first).
    pub fn eos(&self) -> u32 {
        self.eos_token_ids.first().copied().unwrap_or(0)
    }

    /// Parameters of the base model (a tied head counted once), as PEFT counts them.
    pub fn num_params(&self) -> usize {
        self.checked_num_params()
            .expect("the parameter count fits (checked when the config is loaded)")
    }

    fn checked_num_params(&self) -> Option<usize> {
        let (c, ff, kv, v) = (
            self.hidden_size,
            self.intermediate_size,
            self.kv_dim(),
            self.vocab_size,
        );
        let b = |on: bool, n: usize| if on { n } else { 0 };
        // q, k, v, o; gate, up, down; two RMSNorms.
        let attn = c
            .checked_mul(c + 2 * kv)?
            .checked_add(c.checked_mul(c)?)?
            .checked_add(b(self.qkv_bias, c + 2 * kv) + b(self.o_bias, c))?;
        let mlp = c
            .checked_mul(ff)?
            .checked_mul(3)?
            .checked_add(b(self.mlp_bias, 2 * ff + c))?;
        let block = attn.checked_add(mlp)?.checked_add(2 * c)?;
        let embed = v.checked_mul(c)?;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        self.num_hidden_layers
            .checked_mul(block)?
            .checked_add(embed)?
            .checked_add(head)?
            .checked_add(c)
    }

    /// RoPE's inverse frequencies `(head_dim / 2)`, in f32 as transformers computes them
    /// (`_compute_default_rope_parameters`, `_compute_llama3_parameters`).
    pub fn inv_freq(&self) -> Vec<f32> {
        let hd = self.head_dim;
        let base = self.rope_theta as f32;
        let default = (0..hd / 2).map(|i| {
            let e = (2 * i) as f32 / hd as f32;
            1.0 / ((base as f64).powf(e as f64) as f32)
        });
        match self.rope_scaling {
            RopeScaling::Default => default.collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                default
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                        if medium {
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }
}

/// rope_theta and the frequency schedule, from `rope_parameters` or the older top-level keys.
fn rope(raw: &Raw, path: &Path) -> Result<(f64, RopeScaling)> {
    let p = path.display();
    let params = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
    let params = params.filter(|v| !v.is_null());
    let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
    let theta = params
        .and_then(|v| num(v, "rope_theta"))
        .or(raw.rope_theta)
        .unwrap_or(10000.0);
    let Some(params) = params else {
        return Ok((theta, RopeScaling::Default));
    };
    let rope_type = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match rope_type {
        "default" => Ok((theta, RopeScaling::Default)),
        "llama3" => {
            let field = |key: &str| {
                num(params, key)
                    .ok_or_else(|| err!("{p}: rope_scaling \"llama3\" has no number {key:?}"))
            };
            let scaling = RopeScaling::Llama3 {
                factor: field("factor")? as f32,
                low_freq_factor: field("low_freq_factor")? as f32,
                high_freq_factor: field("high_freq_factor")? as f32,
                original_max_position_embeddings: field("original_max_position_embeddings")?
                    as usize,
            };
            if let RopeScaling::Llama3 {
                low_freq_factor,
                high_freq_factor,
                ..
            } = scaling
                && high_freq_factor <= low_freq_factor
            {
                bail!("{p}: rope_scaling's high_freq_factor must exceed low_freq_factor");
            }
            Ok((theta, scaling))
        }
        other => bail!("{p}: rope_type {other:?} is not supported (default and llama3 are)"),
    }
}

/// A token id field: a number, a list of numbers, or absent.
fn token_ids(v: Option<&Value>, key: &str, path: &Path) -> Result<Vec<u32>> {
    let bad = || {
        err!(
            "{}: {key} must be a token id or a list of them",
            path.display()
        )
    };
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}
