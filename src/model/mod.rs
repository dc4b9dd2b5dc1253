//! GPT-2 as Hugging Face's `GPT2LMHeadModel`, on the GPU through the core kernels.
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
//! Each file uses only files listed before it: config, llama_config, block, adapter_ref, acts; gpt2;
//! safetensors_file, load; forward; lm_head; llama; llama_forward; generate, eval, stream_load.

pub mod acts;
pub mod adapter_ref;
pub mod block;
pub mod config;
pub mod eval;
pub mod forward;
pub mod generate;
pub mod gpt2;
pub mod llama;
pub mod llama_config;
pub mod llama_forward;
pub mod lm_head;
pub mod load;
pub mod safetensors_file;
pub mod stream_load;

pub use adapter_ref::{AdapterRef, LoraSlot};
pub use block::{Block, Linear, Module};
pub use config::Gpt2Config;
pub use gpt2::{Gpt2, Quant};

/// A model directory checked on the host, before any GPU work: config.json, the tokenizer
/// (which must fit the vocabulary) and every weight's name, shape and dtype.
#[cfg(not(target_arch = "wasm32"))]
pub struct ModelFiles {
    pub config: Gpt2Config,
    pub tokenizer: crate::tokenizer::Tokenizer,
    pub weights: safetensors_file::SafetensorsFile,
}

/// Open and check a Hugging Face GPT-2 directory without touching the GPU, so that a bad
/// file is reported before a device is opened or a weight uploaded.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_dir(dir: &std::path::Path) -> crate::error::Result<ModelFiles> {
    for f in ["config.json", "model.safetensors"] {
        if !dir.join(f).exists() {
            crate::bail!(
                "{}: no {f}; a GPT-2 model directory holds config.json, model.safetensors and tokenizer.json (or vocab.json + merges.txt)",
                dir.join(f).display()
            );
        }
    }
    let config = Gpt2Config::from_file(&dir.join("config.json"))?;
    let tokenizer = crate::tokenizer::Tokenizer::from_dir(dir)?;
    check_tokenizer(&config, &tokenizer, &dir.display().to_string())?;
    let weights = safetensors_file::SafetensorsFile::open(&dir.join("model.safetensors"))?;
    load::check_weights(&config, &weights)?;
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
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
    let model = Gpt2::load(gpu, files.config, &files.weights, quant)?;
    Ok((model, files.tokenizer))
}

/// A tokenizer belongs to a model when every id it produces is inside the model's vocabulary.
/// `what` names the model (a directory, a URL) in the error.
pub fn check_tokenizer(
    config: &Gpt2Config,
    tokenizer: &crate::tokenizer::Tokenizer,
    what: &str,
) -> crate::error::Result<()> {
    if tokenizer.vocab_size() > config.vocab_size {
        crate::bail!(
            "{what}: the tokenizer has {} tokens but config.json's vocab_size is {}: they belong to different models; use the tokenizer that came with the weights",
            tokenizer.vocab_size(),
            config.vocab_size
        );
    }
    Ok(())
}
