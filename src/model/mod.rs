//! GPT-2 as Hugging Face's `GPT2LMHeadModel`, and the Llama family (`LlamaForCausalLM`,
//! `Qwen2ForCausalLM`), on the GPU through the core kernels.
//!
//! - `config` reads config.json; `safetensors_file` maps weights; `load` builds the model on
//!   the GPU tensor by tensor (from a mapped file, or fed in chunks by `stream_load`).
//! - `gpt2` holds the model and the checks of its inputs; `block` what a transformer block is
//!   (its [`Module`]s and weights); `forward` the forward pass, the one block function and the
//!   KV cache; `acts` the activations and their size table; `lm_head` logits and
//!   per-position losses.
//! - `llama_config` reads the Llama family's config.json (Llama, Qwen2) and computes RoPE's
//!   frequencies; `llama` holds that family's weights, loading and forward pass, built from
//!   the same kernels (RMSNorm, RoPE, grouped-query attention, SwiGLU) and the shared LM head.
//! - `adapter_ref` is how the passes read a LoRA adapter; `generate` the KV-cache decoding
//!   loop; `eval` the token-weighted loss over examples.
//!
//! - `model_config` is either family's config.json as LoRA, adapters, plans and checkpoints
//!   see it (layers, adaptable modules and their shapes, module names, context, vocabulary).
//!
//! - `family` is a loaded model of either family ([`Model`], borrowed as [`ModelRef`]): what
//!   the training job, evaluation and generation hold.
//!
//! Each file uses only files listed before it: config, block, llama_config, model_config,
//! adapter_ref, acts; gpt2; safetensors_file, load; forward; lm_head; llama; llama_forward;
//! family; generate, eval, stream_load.

pub mod acts;
pub mod adapter_ref;
pub mod block;
pub mod config;
pub mod eval;
pub mod family;
pub mod forward;
pub mod generate;
pub mod gpt2;
pub mod llama;
pub mod llama_config;
pub mod llama_forward;
pub mod lm_head;
pub mod load;
pub mod model_config;
pub mod safetensors_file;
pub mod stream_load;

pub use adapter_ref::{AdapterRef, LoraSlot};
pub use block::{Block, Linear, Module};
pub use config::Gpt2Config;
pub use family::{Model, ModelRef};
pub use gpt2::{Gpt2, Quant};
pub use model_config::ModelConfig;

/// A model directory checked on the host, before any GPU work: config.json, the tokenizer
/// (which must fit the vocabulary) and every weight's name, shape and dtype.
#[cfg(not(target_arch = "wasm32"))]
pub struct ModelFiles {
    pub config: ModelConfig,
    pub tokenizer: crate::tokenizer::Tokenizer,
    pub weights: safetensors_file::SafetensorsFile,
    pub dir: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelFiles {
    /// Put the weights on the GPU, the Linears stored as `quant`.
    pub fn upload(&self, gpu: &crate::gpu::Gpu, quant: Quant) -> crate::error::Result<Model> {
        Ok(match &self.config {
            ModelConfig::Gpt2(c) => Model::Gpt2(Gpt2::load(gpu, c.clone(), &self.weights, quant)?),
            ModelConfig::Llama(c) => {
                Model::Llama(llama::Llama::load(gpu, c.clone(), &self.weights, quant)?)
            }
        })
    }
}

/// Open and check a Hugging Face model directory (GPT-2, Llama, Qwen2) without touching the
/// GPU, so that a bad file is reported before a device is opened or a weight uploaded.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_dir(dir: &std::path::Path) -> crate::error::Result<ModelFiles> {
    for f in ["config.json", "model.safetensors"] {
        if !dir.join(f).exists() {
            crate::bail!(
                "{}: no {f}; a model directory holds config.json, model.safetensors and tokenizer.json (or vocab.json + merges.txt)",
                dir.join(f).display()
            );
        }
    }
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = crate::tokenizer::Tokenizer::from_dir(dir)?;
    check_tokenizer(config.vocab_size(), &tokenizer, &dir.display().to_string())?;
    let weights = safetensors_file::SafetensorsFile::open(&dir.join("model.safetensors"))?;
    match &config {
        ModelConfig::Gpt2(c) => load::check_weights(c, &weights)?,
        ModelConfig::Llama(c) => llama::Llama::check_weights(c, &weights)?,
    }
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
        dir: dir.to_path_buf(),
    })
}

/// Load a Hugging Face GPT-2 directory: config.json, model.safetensors and the tokenizer.
/// Checks that the tokenizer fits the model's vocabulary.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(
    gpu: &crate::gpu::Gpu,
    dir: &std::path::Path,
    quant: Quant,
) -> crate::error::Result<(Gpt2, crate::tokenizer::Tokenizer)> {
    let files = open_dir(dir)?;
    let ModelConfig::Gpt2(config) = files.config else {
        crate::bail!("{}: not a GPT-2 model", dir.display());
    };
    let model = Gpt2::load(gpu, config, &files.weights, quant)?;
    Ok((model, files.tokenizer))
}

/// A tokenizer belongs to a model when every id it produces is inside the model's vocabulary.
/// `what` names the model (a directory, a URL) in the error.
pub fn check_tokenizer(
    vocab_size: usize,
    tokenizer: &crate::tokenizer::Tokenizer,
    what: &str,
) -> crate::error::Result<()> {
    if tokenizer.vocab_size() > vocab_size {
        crate::bail!(
            "{what}: the tokenizer has {} tokens but config.json's vocab_size is {vocab_size}: they belong to different models; use the tokenizer that came with the weights",
            tokenizer.vocab_size()
        );
    }
    Ok(())
}
