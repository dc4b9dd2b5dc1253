//! `merge`: fold a LoRA adapter into the base weights and write a model directory that
//! transformers loads (`GPT2LMHeadModel.from_pretrained`), as PEFT's `merge_and_unload()`
//! followed by `save_pretrained` would: F32 tensors named `transformer.*`, no `lm_head.weight`
//! (tied), no attention-mask buffers; config and tokenizer files copied.

use std::collections::HashMap;
use std::path::Path;

use crate::adapter::{self, write_atomic};
use crate::error::Result;
use crate::lora::{Layout, Module};
use crate::model::Gpt2Config;
use crate::model::safetensors_file::SafetensorsFile;
use crate::{bail, err};

/// Merge `adapter_dir` into the model in `model_dir`, writing `out_dir` (which must not
/// already hold a model).
pub fn merge_dir(model_dir: &Path, adapter_dir: &Path, out_dir: &Path) -> Result<()> {
    let config = Gpt2Config::from_file(&model_dir.join("config.json"))?;
    let (lora, params) = adapter::load_dir(adapter_dir, &config)?;
    let layout = Layout::new(&config, &lora);
    if out_dir.join("model.safetensors").exists() {
        bail!(
            "{} already holds a model; choose an empty --out",
            out_dir.display()
        );
    }
    let file = SafetensorsFile::open(&model_dir.join("model.safetensors"))?;
    let scale = lora.scale();
    let r = lora.r;
    let mut names: Vec<String> = file
        .names()
        .filter(|n| {
            !n.ends_with(".attn.bias")
                && !n.ends_with(".attn.masked_bias")
                && *n != "lm_head.weight"
        })
        .map(str::to_string)
        .collect();
    names.sort();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(names.len());
    for name in names {
        let (mut values, shape) = file.f32(&name)?;
        let short = name.strip_prefix("transformer.").unwrap_or(&name);
        if let Some(slot) = layout
            .slots
            .iter()
            .find(|s| short == format!("h.{}.{}.weight", s.layer, s.module.path()))
        {
            // Conv1D W (in,out) += scale · (B·A)ᵀ, i.e. W[k][n] += scale · Σ_j B[n][j]·A[j][k].
            let (k_in, n_out) = (slot.k_in, slot.n_out);
            let a = &params[slot.a..slot.a + r * k_in];
            let b = &params[slot.b..slot.b + n_out * r];
            for k in 0..k_in {
                for n in 0..n_out {
                    let d: f64 = (0..r)
                        .map(|j| b[n * r + j] as f64 * a[j * k_in + k] as f64)
                        .sum();
                    values[k * n_out + n] += (scale as f64 * d) as f32;
                }
            }
        }
        tensors.push((
            format!("transformer.{short}"),
            shape,
            bytemuck::cast_slice(&values).to_vec(),
        ));
    }
    let merged: usize = Module::ALL.len() * config.n_layer;
    debug_assert!(layout.slots.len() <= merged);
    let views = tensors
        .iter()
        .map(|(n, s, d)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .map_err(|e| err!("{n}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| err!("cannot serialize the merged model: {e}"))?;
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
    ] {
        let src = model_dir.join(f);
        if src.exists() {
            let data =
                std::fs::read(&src).map_err(|e| err!("{}: cannot read: {e}", src.display()))?;
            write_atomic(&target.join(f), &data)?;
        }
    }
    // The weights go last: their presence marks a complete model.
    write_atomic(&target.join("model.safetensors"), &bytes)?;
    if fresh {
        adapter::replace_dir(&target, out_dir)?;
    }
    Ok(())
}
