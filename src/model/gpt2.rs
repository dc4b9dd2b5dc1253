//! The GPT-2 model on the GPU: its weights and the checks of what runs on it. The passes are
//! `forward` (the blocks), `lm_head` (logits, per-position losses) and `generate` (decoding);
//! loading is `load`.
//!
//! ```text
//! x = wte[ids] + wpe[pos]                                   (B,T,C)
//! for each block:  x += c_proj(attn(c_attn(ln_1(x))))      (block.rs)
//!                  x += mlp.c_proj(gelu(c_fc(ln_2(x))))
//! logits = ln_f(x) · wteᵀ                                   (B,T,V), tied head
//! ```
//! Base weights are f32, f16 or NF4 (QLoRA); wte is f16 unless the base is f32; wpe,
//! LayerNorms and biases stay f32.

use crate::bail;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::layernorm::LayerNorm;
use crate::kernels::matmul::Weight;
use crate::model::block::Block;
use crate::model::config::Gpt2Config;

/// How the frozen base weights (the Conv1D matrices) are stored on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F32,
    F16,
    /// bitsandbytes NF4, blocksize 64; `double_quant` also quantizes the absmax (as
    /// `bnb_4bit_use_double_quant`), whose reconstruction the matmul then uses.
    Nf4 {
        double_quant: bool,
    },
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Nf4 {
                double_quant: false,
            } => "nf4",
            Quant::Nf4 { double_quant: true } => "nf4-dq",
        })
    }
}

impl Quant {
    /// Whether the base is bitsandbytes NF4 (with or without double quantization).
    pub fn is_nf4(self) -> bool {
        matches!(self, Quant::Nf4 { .. })
    }
}

impl std::str::FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "nf4" => Ok(Quant::Nf4 {
                double_quant: false,
            }),
            "nf4-dq" => Ok(Quant::Nf4 { double_quant: true }),
            _ => Err(format!(
                "unknown quantization {s:?}: use nf4, nf4-dq, f16 or f32"
            )),
        }
    }
}

pub struct Gpt2 {
    pub config: Gpt2Config,
    pub quant: Quant,
    /// Token embedding (V,C), also the output head: f32 with `Quant::F32`, else f16 (as QLoRA
    /// keeps the modules it does not quantize in a 16-bit dtype): GPT-2 XL's is 321 MB in f32.
    pub wte: Weight,
    /// Position embedding (P,C).
    pub wpe: Tensor,
    pub blocks: Vec<Block>,
    pub ln_f: LayerNorm,
}

impl Gpt2 {
    /// Its config.json as the family-independent layers read it.
    pub fn model_config(&self) -> crate::model::ModelConfig {
        crate::model::ModelConfig::Gpt2(self.config.clone())
    }

    /// Bytes of GPU memory the weights occupy.
    pub fn weight_bytes(&self) -> u64 {
        let blocks: u64 = self.blocks.iter().map(Block::size_bytes).sum();
        self.wte.size_bytes() + self.wpe.size_bytes() + self.ln_f.size_bytes() + blocks
    }

    /// Check that a batch of `b`×`t` tokens fits the GPU's binding limit: the largest
    /// activation is the (B·T, 4C) MLP hidden state (and a 128-wide LM-head chunk).
    pub fn check_fits(&self, gpu: &Gpu, b: usize, t: usize) -> Result<()> {
        check_binding(gpu, (b, t), (4 * self.config.n_embd).max(128))
    }

    /// The one check of the tokens a pass runs: every id inside the vocabulary, and the last
    /// position (`end` tokens from the start of the sequence) within n_positions.
    pub fn check_input(&self, ids: &[u32], end: usize) -> Result<()> {
        let (v, p) = (self.config.vocab_size, self.config.n_positions);
        if end > p {
            bail!("a sequence of {end} tokens exceeds the model's n_positions {p}");
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= v) {
            bail!(
                "token id {bad} is outside the vocabulary of {v} tokens (tokenizer and model do not match)"
            );
        }
        Ok(())
    }

    /// A batch of `b` sequences of `t` tokens: its shape, its tokens and that it fits.
    pub fn check_batch(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        b: usize,
        t: usize,
    ) -> Result<()> {
        check_shape(ids, mask, b, t)?;
        self.check_input(ids, t)?;
        self.check_fits(gpu, b, t)
    }
}

/// A batch of `b`×`t` tokens whose largest activation has `width` words a row fits one
/// shader binding (either family's check), else the flags to lower.
pub(crate) fn check_binding(gpu: &Gpu, (b, t): (usize, usize), width: usize) -> Result<()> {
    let words = b * t * width;
    let max = gpu.max_binding_words();
    if words > max {
        bail!(
            "a batch of {b} x {t} tokens needs a {} MiB activation buffer, but this GPU binds at most {} MiB: lower --batch-size or --seq-len",
            (words * 4) >> 20,
            (max * 4) >> 20
        );
    }
    Ok(())
}

/// A batch of `b`×`t` ids with as many mask values (either family's check).
pub(crate) fn check_shape(ids: &[u32], mask: &[u32], b: usize, t: usize) -> Result<()> {
    if ids.len() != b * t || mask.len() != b * t {
        bail!("batch of {b}x{t} needs {} ids and mask values", b * t);
    }
    Ok(())
}
