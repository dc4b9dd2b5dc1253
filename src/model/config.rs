//! GPT-2 hyper-parameters from a Hugging Face `config.json`, and the named presets.

use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::kernels::attention::MAX_HEAD_DIM;
use crate::{bail, err};

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Gpt2Config {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_layer: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".into()
}

/// Most transformer blocks a config may have (GPT-2 XL has 48); LoRA target names are
/// matched against this many.
pub const MAX_LAYERS: usize = 1000;

/// Hub ids of the GPT-2 family, by their short names.
pub const PRESETS: [(&str, &str); 5] = [
    ("distilgpt2", "distilbert/distilgpt2"),
    ("gpt2", "openai-community/gpt2"),
    ("gpt2-medium", "openai-community/gpt2-medium"),
    ("gpt2-large", "openai-community/gpt2-large"),
    ("gpt2-xl", "openai-community/gpt2-xl"),
];

/// The hub id of a preset name, or the name itself.
pub fn hub_id(name: &str) -> &str {
    PRESETS
        .iter()
        .find(|(short, _)| *short == name)
        .map_or(name, |(_, id)| id)
}

impl Gpt2Config {
    /// GPT-2 shapes of the presets (for benchmarks with random weights; no download).
    pub fn preset_shape(name: &str) -> Option<Self> {
        let (n_embd, n_head, n_layer) = match name {
            "distilgpt2" => (768, 12, 6),
            "gpt2" => (768, 12, 12),
            "gpt2-medium" => (1024, 16, 24),
            "gpt2-large" => (1280, 20, 36),
            "gpt2-xl" => (1600, 25, 48),
            _ => return None,
        };
        Some(Self {
            n_embd,
            n_head,
            n_layer,
            n_positions: 1024,
            vocab_size: 50257,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
            model_type: Some("gpt2".into()),
            eos_token_id: Some(50256),
            bos_token_id: Some(50256),
        })
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| err!("{}: not a GPT-2 config.json: {e}", path.display()))?;
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
        if let Some(t) = &self.model_type
            && t != "gpt2"
        {
            bail!(
                "{p}: model_type is {t:?}; wgtune fine-tunes GPT-2 (model_type \"gpt2\") and the Llama family (\"llama\", \"qwen2\")"
            );
        }
        if !matches!(
            self.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh"
        ) {
            bail!(
                "{p}: activation_function {:?} is not supported (GPT-2 uses gelu_new)",
                self.activation_function
            );
        }
        for (name, v) in [
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_layer", self.n_layer),
            ("n_positions", self.n_positions),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                bail!("{p}: {name} is 0");
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "{p}: n_embd {} is not divisible by n_head {}",
                self.n_embd,
                self.n_head
            );
        }
        if self.n_layer > MAX_LAYERS {
            bail!(
                "{p}: n_layer {} exceeds the supported {MAX_LAYERS}",
                self.n_layer
            );
        }
        if self.vocab_size > i32::MAX as usize {
            bail!(
                "{p}: vocab_size {} exceeds the supported {}",
                self.vocab_size,
                i32::MAX
            );
        }
        if let Some(eos) = self.eos_token_id
            && eos as usize >= self.vocab_size
        {
            bail!(
                "{p}: eos_token_id {eos} is outside the vocabulary of {} tokens",
                self.vocab_size
            );
        }
        if self.checked_num_params().is_none() {
            bail!(
                "{p}: n_embd {}, n_positions {} and vocab_size {} make more parameters than this machine can count",
                self.n_embd,
                self.n_positions,
                self.vocab_size
            );
        }
        if self.head_dim() > MAX_HEAD_DIM {
            bail!(
                "{p}: head size {} exceeds the supported {MAX_HEAD_DIM}",
                self.head_dim()
            );
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// The end-of-text token id (GPT-2: the last id of the vocabulary).
    pub fn eos(&self) -> u32 {
        self.eos_token_id.unwrap_or(self.vocab_size as u32 - 1)
    }

    /// Parameters of the base model (tied head counted once), as PEFT counts them.
    pub fn num_params(&self) -> usize {
        self.checked_num_params()
            .expect("the parameter count fits (checked when the config is loaded)")
    }

    /// The parameter count, None where it overflows.
    fn checked_num_params(&self) -> Option<usize> {
        let (c, v, p) = (self.n_embd, self.vocab_size, self.n_positions);
        // A block: ln_1 2c, c_attn c·3c+3c, attn c_proj c·c+c, ln_2 2c, c_fc c·4c+4c,
        // mlp c_proj 4c·c+c: 12c² + 13c.
        let block = c.checked_mul(c)?.checked_mul(12)?.checked_add(13 * c)?;
        v.checked_mul(c)?
            .checked_add(p.checked_mul(c)?)?
            .checked_add(self.n_layer.checked_mul(block)?)?
            .checked_add(2 * c)
    }
}
