//! `merge`: fold a LoRA adapter into the base weights and write a model directory that
//! transformers loads (`GPT2LMHeadModel`, `LlamaForCausalLM`, `Qwen2ForCausalLM`
//! `.from_pretrained`), as PEFT's `merge_and_unload()` followed by `save_pretrained` would:
//! F32 tensors (GPT-2's named `transformer.*`), no tied `lm_head.weight`, no buffers; config
//! and tokenizer files copied.
//!
//! The delta goes into the original weights read from the base checkpoint, whatever
//! quantization the adapter was trained on: a QLoRA adapter is merged as PEFT merges it into
//! the base loaded unquantized (not into the NF4-dequantized weights, and not quantized
//! again as `merge_and_unload()` on a 4-bit model does); tests/train/parity.rs checks both
//! against PEFT, docs/testing.md gives the figures.
//!
//! The weights go through [`MergeStream`] (the page's streaming merge too), so the CLI never
//! holds more than one tensor and both write the same bytes.

pub mod stream;

pub use stream::{MergeStream, add_delta, dropped};

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use crate::adapter::{self, write_atomic};
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::model::ModelConfig;
#[cfg(not(target_arch = "wasm32"))]
use crate::{bail, err};

/// Input read size of [`merge_dir`].
#[cfg(not(target_arch = "wasm32"))]
const READ_CHUNK: usize = 16 << 20;

/// Merge `adapter_dir` into the model in `model_dir`, writing `out_dir` (which must not
/// already hold a model).
#[cfg(not(target_arch = "wasm32"))]
pub fn merge_dir(model_dir: &Path, adapter_dir: &Path, out_dir: &Path) -> Result<()> {
    let config = ModelConfig::from_file(&model_dir.join("config.json"))?;
    let (lora, params) = adapter::load_dir(adapter_dir, &config)?;
    if out_dir.join("model.safetensors").exists() {
        bail!(
            "{} already holds a model; choose an empty --out",
            out_dir.display()
        );
    }
    // A new --out is built in full beside its final name and renamed into place, so that a
    // failure or a kill never leaves a directory that looks like a model but is not one.
    let fresh = !out_dir.exists();
    let target = if fresh {
        let partial = adapter::sibling(out_dir, "partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .map_err(|e| err!("{}: cannot remove: {e}", partial.display()))?;
        }
        partial
    } else {
        out_dir.to_path_buf()
    };
    std::fs::create_dir_all(&target)
        .map_err(|e| err!("{}: cannot create: {e}", target.display()))?;
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "generation_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    ] {
        let src = model_dir.join(f);
        if src.exists() {
            let data =
                std::fs::read(&src).map_err(|e| err!("{}: cannot read: {e}", src.display()))?;
            write_atomic(&target.join(f), &data)?;
        }
    }
    // The weights go last: their presence marks a complete model.
    let input = model_dir.join("model.safetensors");
    let weights = target.join("model.safetensors");
    if let Err(e) = stream_file(&input, &weights, config, &lora, params) {
        // A bad or truncated input leaves nothing behind: no half-written weights, and no
        // `.partial` directory beside a new --out.
        let _ = std::fs::remove_file(weights.with_extension("safetensors.tmp"));
        if fresh {
            let _ = std::fs::remove_dir_all(&target);
        }
        return Err(e);
    }
    if fresh {
        adapter::replace_dir(&target, out_dir)?;
    }
    Ok(())
}

/// Stream `input` through a [`MergeStream`] into `out` (via a temporary file and a rename).
#[cfg(not(target_arch = "wasm32"))]
fn stream_file(
    input: &Path,
    out: &Path,
    config: ModelConfig,
    lora: &crate::lora::LoraConfig,
    params: Vec<f32>,
) -> Result<()> {
    use std::io::{BufWriter, Read, Write};
    let mut src =
        std::fs::File::open(input).map_err(|e| err!("{}: cannot open: {e}", input.display()))?;
    let tmp = out.with_extension("safetensors.tmp");
    let file =
        std::fs::File::create(&tmp).map_err(|e| err!("{}: cannot create: {e}", tmp.display()))?;
    let mut dst = BufWriter::new(file);
    let mut merge = MergeStream::new(config, lora, params, input);
    let mut emit = |bytes: &[u8]| {
        dst.write_all(bytes)
            .map_err(|e| err!("{}: cannot write: {e}", tmp.display()))
    };
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| err!("{}: cannot read: {e}", input.display()))?;
        if n == 0 {
            break;
        }
        merge.push(&buf[..n], &mut emit)?;
    }
    merge.finish()?;
    let file = dst
        .into_inner()
        .map_err(|e| err!("{}: cannot write: {e}", tmp.display()))?;
    file.sync_all()
        .map_err(|e| err!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| err!("{}: cannot rename into place: {e}", out.display()))
}
