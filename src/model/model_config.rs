//! A model of either family as the layers above the passes see it: how many layers, which
//! Linear modules LoRA may adapt and their shapes, every module name PEFT matches against,
//! the context length, the vocabulary and the parameter count. LoRA layouts, adapter files,
//! plans and checkpoints read a model through this, never through a family's own config.

use std::path::Path;

use serde_json::Value;

use crate::err;
use crate::error::Result;
use crate::model::block::Module;
use crate::model::config::Gpt2Config;
use crate::model::llama_config::{LlamaConfig, LlamaKind, is_llama_family};

/// config.json of a supported model: GPT-2, or the Llama family (Llama, Qwen2).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Gpt2(Gpt2Config),
    Llama(LlamaConfig),
}

/// The `--targets` names of GPT-2 (PEFT's module names, plus `all-linear`).
pub const GPT2_TARGETS: [&str; 4] = ["c_attn", "c_proj", "c_fc", "all-linear"];
/// The `--targets` names of the Llama family.
pub const LLAMA_TARGETS: [&str; 8] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "all-linear",
];

/// The hub id of a preset name of either family (`gpt2`, `smollm2-135m`,
/// `qwen2.5-0.5b-instruct`, ...), or the name itself.
pub fn hub_id(name: &str) -> &str {
    let presets = crate::model::config::PRESETS
        .iter()
        .chain(crate::model::llama_config::PRESETS.iter());
    presets
        .into_iter()
        .find(|(short, _)| *short == name)
        .map_or(name, |(_, id)| id)
}

impl ModelConfig {
    /// Read config.json, choosing the family by its `model_type` ("gpt2" or none: GPT-2;
    /// "llama", "qwen2": the Llama family).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| err!("{}: not a config.json: {e}", path.display()))?;
        match v.get("model_type").and_then(Value::as_str) {
            Some(t) if is_llama_family(t) => Ok(Self::Llama(LlamaConfig::from_json(text, path)?)),
            _ => Ok(Self::Gpt2(Gpt2Config::from_json(text, path)?)),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err!("{}: cannot read: {e}", path.display()))?;
        Self::from_json(&text, path)
    }

    /// The architecture's name for messages: "GPT-2", "Llama" or "Qwen2".
    pub fn family(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "GPT-2",
            Self::Llama(c) if c.kind == LlamaKind::Qwen2 => "Qwen2",
            Self::Llama(_) => "Llama",
        }
    }

    /// Transformer blocks (decoder layers).
    pub fn n_layer(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_layer,
            Self::Llama(c) => c.num_hidden_layers,
        }
    }

    /// The Linear modules of a block that LoRA may adapt, in PEFT's order.
    pub fn modules(&self) -> &'static [Module] {
        match self {
            Self::Gpt2(_) => &Module::GPT2,
            Self::Llama(_) => &Module::LLAMA,
        }
    }

    /// (in, out) features of module `m` (one of [`Self::modules`]).
    pub fn module_dims(&self, m: Module) -> (usize, usize) {
        match self {
            Self::Gpt2(c) => m.dims(c.n_embd),
            Self::Llama(c) => crate::model::llama_config::module_dims(c, m),
        }
    }

    /// The `--targets` names this family accepts.
    pub fn target_names(&self) -> &'static [&'static str] {
        match self {
            Self::Gpt2(_) => &GPT2_TARGETS,
            Self::Llama(_) => &LLAMA_TARGETS,
        }
    }

    /// PEFT's default targets for this architecture (its
    /// `TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`): GPT-2 `c_attn`; Llama and
    /// Qwen2 `q_proj`, `v_proj`.
    pub fn default_targets(&self) -> Vec<String> {
        match self {
            Self::Gpt2(_) => vec!["c_attn".into()],
            Self::Llama(_) => vec!["q_proj".into(), "v_proj".into()],
        }
    }

    /// The longest sequence the model takes (n_positions, max_position_embeddings).
    pub fn n_positions(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }

    /// Parameters of the base model (a tied head counted once), as PEFT counts them.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.num_params(),
            Self::Llama(c) => c.num_params(),
        }
    }

    /// The end-of-sequence id config.json names (the first of a list), for a tokenizer
    /// that names none.
    pub fn eos(&self) -> u32 {
        match self {
            Self::Gpt2(c) => c.eos(),
            Self::Llama(c) => c.eos(),
        }
    }

    /// The end-of-sequence id appended to training examples and padded with: GPT-2's
    /// tokenizer's `<|endoftext|>` (else config.json's); the Llama family's config.json
    /// `eos_token_id` (the first of a list: `<|end_of_text|>`, `<|im_end|>`, ...), else the
    /// tokenizer's `<|endoftext|>`.
    pub fn eos_with(&self, tok: &crate::tokenizer::Tokenizer) -> u32 {
        match self {
            Self::Gpt2(c) => tok.eos_id().unwrap_or(c.eos()),
            Self::Llama(c) => match c.eos_token_ids.first() {
                Some(&id) => id,
                None => tok.eos_id().unwrap_or(0),
            },
        }
    }

    /// Every id generation stops at: [`Self::eos_with`] and every `eos_token_id` of
    /// config.json (Llama 3.2 Instruct lists three).
    pub fn stop_ids(&self, tok: &crate::tokenizer::Tokenizer) -> Vec<u32> {
        let mut v = vec![self.eos_with(tok)];
        if let Self::Llama(c) = self {
            v.extend(
                c.eos_token_ids
                    .iter()
                    .filter(|id| !v.contains(id))
                    .collect::<Vec<_>>(),
            );
        }
        v
    }

    /// Every module name of the transformers model (`named_modules()`), as PEFT matches a
    /// regular expression, layer indexes or exclusions against them.
    pub fn module_names(&self) -> Vec<String> {
        let (top, block, tail): (&[&str], &[&str], &[&str]) = match self {
            Self::Gpt2(_) => (
                &[
                    "transformer",
                    "transformer.wte",
                    "transformer.wpe",
                    "transformer.drop",
                    "transformer.h",
                ],
                &[
                    "ln_1",
                    "attn",
                    "attn.c_attn",
                    "attn.c_proj",
                    "attn.attn_dropout",
                    "attn.resid_dropout",
                    "ln_2",
                    "mlp",
                    "mlp.c_fc",
                    "mlp.c_proj",
                    "mlp.act",
                    "mlp.dropout",
                ],
                &["transformer.ln_f", "lm_head"],
            ),
            Self::Llama(_) => (
                &["model", "model.embed_tokens", "model.layers"],
                &[
                    "self_attn",
                    "self_attn.q_proj",
                    "self_attn.k_proj",
                    "self_attn.v_proj",
                    "self_attn.o_proj",
                    "mlp",
                    "mlp.gate_proj",
                    "mlp.up_proj",
                    "mlp.down_proj",
                    "mlp.act_fn",
                    "input_layernorm",
                    "post_attention_layernorm",
                ],
                &["model.norm", "model.rotary_emb", "lm_head"],
            ),
        };
        let mut v: Vec<String> = top.iter().map(|s| s.to_string()).collect();
        for i in 0..self.n_layer() {
            let layer = self.layer_prefix(i);
            v.extend(block.iter().map(|m| format!("{layer}.{m}")));
            v.push(layer);
        }
        v.extend(tail.iter().map(|s| s.to_string()));
        v
    }

    /// A block's full name: `transformer.h.{i}` or `model.layers.{i}`.
    pub fn layer_prefix(&self, layer: usize) -> String {
        match self {
            Self::Gpt2(_) => format!("transformer.h.{layer}"),
            Self::Llama(_) => format!("model.layers.{layer}"),
        }
    }

    /// The adaptable Linear a full module name is (`model.layers.3.self_attn.q_proj`), if it
    /// is one of this model's.
    pub fn linear_of(&self, key: &str) -> Option<(usize, Module)> {
        let (layer, path) = match self {
            Self::Gpt2(_) => key.strip_prefix("transformer.h.")?,
            Self::Llama(_) => key.strip_prefix("model.layers.")?,
        }
        .split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        if layer >= self.n_layer() {
            return None;
        }
        let m = self.modules().iter().find(|m| m.path() == path)?;
        Some((layer, *m))
    }
}

impl From<Gpt2Config> for ModelConfig {
    fn from(c: Gpt2Config) -> Self {
        Self::Gpt2(c)
    }
}

impl From<LlamaConfig> for ModelConfig {
    fn from(c: LlamaConfig) -> Self {
        Self::Llama(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_follows_model_type() {
        let p = Path::new("config.json");
        let gpt2 =
            r#"{"n_embd": 8, "n_head": 2, "n_layer": 2, "n_positions": 16, "vocab_size": 10}"#;
        let m = ModelConfig::from_json(gpt2, p).unwrap();
        assert_eq!(
            (m.family(), m.n_layer(), m.modules().len()),
            ("GPT-2", 2, 4)
        );
        assert_eq!(
            m.linear_of("transformer.h.1.mlp.c_fc"),
            Some((1, Module::CFc))
        );
        assert_eq!(m.linear_of("transformer.h.2.mlp.c_fc"), None);
        let qwen = LlamaConfig::preset_shape("qwen2.5-0.5b").unwrap();
        let m = ModelConfig::from(qwen);
        assert_eq!((m.family(), m.n_layer()), ("Qwen2", 24));
        assert_eq!(m.module_dims(Module::KProj), (896, 128));
        assert_eq!(
            m.linear_of("model.layers.23.mlp.down_proj"),
            Some((23, Module::DownProj))
        );
        assert!(
            m.module_names()
                .contains(&"model.layers.0.self_attn.o_proj".to_string())
        );
        assert_eq!(m.default_targets(), ["q_proj", "v_proj"]);
    }

    #[test]
    fn presets_of_both_families_name_hub_ids() {
        assert_eq!(hub_id("gpt2"), "openai-community/gpt2");
        assert_eq!(
            hub_id("qwen2.5-0.5b-instruct"),
            "Qwen/Qwen2.5-0.5B-Instruct"
        );
        assert_eq!(hub_id("llama-3.2-1b"), "meta-llama/Llama-3.2-1B");
        assert_eq!(hub_id("someone/model"), "someone/model");
    }
}
