//! GPT-2 as Hugging Face's `GPT2LMHeadModel`, on the GPU through the core kernels.
//!
//! `config` reads config.json, `safetensors_file` streams weights, `gpt2` holds the model and
//! its forward pass, `generate` the KV-cache decoding loop.

pub mod config;
pub mod eval;
pub mod forward;
pub mod generate;
pub mod gpt2;
pub mod safetensors_file;

pub use config::Gpt2Config;
pub use gpt2::{Gpt2, Quant};

/// Load a Hugging Face GPT-2 directory: config.json, model.safetensors and the tokenizer.
/// Checks that the tokenizer fits the model's vocabulary.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(
    gpu: &crate::gpu::Gpu,
    dir: &std::path::Path,
    quant: Quant,
) -> crate::error::Result<(Gpt2, crate::tokenizer::Tokenizer)> {
    let config = Gpt2Config::from_file(&dir.join("config.json"))?;
    let tokenizer = crate::tokenizer::Tokenizer::from_dir(dir)?;
    check_tokenizer(&config, &tokenizer, &dir.display().to_string())?;
    let file = safetensors_file::SafetensorsFile::open(&dir.join("model.safetensors"))?;
    let model = Gpt2::load(gpu, config, &file, quant)?;
    Ok((model, tokenizer))
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
            "{what}: the tokenizer has {} tokens but config.json's vocab_size is {}: they belong to different models",
            tokenizer.vocab_size(),
            config.vocab_size
        );
    }
    Ok(())
}
