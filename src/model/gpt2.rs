//! The GPT-2 model on the GPU: its weights, and what callers run on it (logits, per-position
//! losses; decoding is in `generate`).
//!
//! ```text
//! x = wte[ids] + wpe[pos]                                   (B,T,C)
//! for each block:  x += c_proj(attn(c_attn(ln_1(x))))      (block.rs)
//!                  x += mlp.c_proj(gelu(c_fc(ln_2(x))))
//! logits = ln_f(x) · wteᵀ                                   (B,T,V), tied head
//! ```
//! Base weights are f32, f16 or NF4 (QLoRA); wte is f16 unless the base is f32; wpe,
//! LayerNorms and biases stay f32.

use crate::error::Result;
use crate::gpu::{Commands, Gpu, Tensor};
use crate::kernels::Reduction;
use crate::kernels::cross_entropy::lm_head_loss;
use crate::kernels::layernorm::LayerNorm;
use crate::kernels::matmul::{Gemm, Weight, gemm};
use crate::model::AdapterRef;
use crate::model::acts::Keep;
use crate::model::block::{Block, Linear, Module};
use crate::model::config::Gpt2Config;
use crate::model::forward::{AttnSource, Pass};
pub use crate::model::load::{check_weights, expected_weights};
use crate::model::load::{name_prefix, to_f32, upload_table, upload_weight};
use crate::model::safetensors_file::SafetensorsFile;
use crate::{bail, err};

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

/// Vocabulary chunk of the LM head: the (rows, chunk) logits block that is resident at once.
pub const VOCAB_CHUNK: usize = 8192;

impl Gpt2 {
    /// A model of the given shape with random weights (benchmarks, tests): N(0, 0.02)-like
    /// values from a fixed seed, LayerNorms at 1/0.
    pub fn random(gpu: &Gpu, config: Gpt2Config, quant: Quant, seed: u64) -> Self {
        let mut state = seed;
        let mut rand = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
                })
                .collect()
        };
        let c = config.n_embd;
        let unit_ln = |gpu: &Gpu| LayerNorm {
            weight: gpu.upload_f32(&vec![1.0; c]),
            bias: gpu.zeros(c),
        };
        let mut blocks = Vec::new();
        for _ in 0..config.n_layer {
            let ln_1 = unit_ln(gpu);
            let ln_2 = unit_ln(gpu);
            let linears = Module::ALL.map(|m| {
                let (k_in, n_out) = m.dims(c);
                Linear {
                    weight: upload_weight(gpu, &rand(k_in * n_out, 0.035), k_in, n_out, quant),
                    bias: gpu.upload_f32(&rand(n_out, 0.01)),
                    k_in,
                    n_out,
                }
            });
            blocks.push(Block {
                ln_1,
                ln_2,
                linears,
            });
        }
        let wte = upload_table(gpu, &rand(config.vocab_size * c, 0.035), quant);
        let wpe = gpu.upload_f32(&rand(config.n_positions * c, 0.035));
        Self {
            ln_f: unit_ln(gpu),
            config,
            quant,
            wte,
            wpe,
            blocks,
        }
    }

    /// Re-upload the token embedding in f32 from `file` (the checkpoint the model was loaded
    /// from). For comparisons against references that keep it f32 (bitsandbytes + PEFT with
    /// an f32 compute dtype), where the f16 table's rounding (logits ~1e-3 apart on the tiny
    /// fixture) would hide the 1e-4 differences those tests look for.
    pub fn use_f32_wte(&mut self, gpu: &Gpu, file: &SafetensorsFile) -> Result<()> {
        let name = format!("{}wte.weight", name_prefix(|n| file.info(n).is_some()));
        let p = file.path().display();
        let info = file
            .info(&name)
            .ok_or_else(|| err!("{p}: missing tensor {name}"))?;
        let shape = [self.config.vocab_size, self.config.n_embd];
        if info.shape != shape {
            bail!(
                "{p}: tensor {name} has shape {:?}, expected {shape:?}",
                info.shape
            );
        }
        let values = to_f32(file.bytes(&name)?, info.dtype, file.path(), &name)?;
        self.wte = Weight::F32(gpu.upload_f32(&values));
        Ok(())
    }

    /// Bytes of GPU memory the weights occupy.
    pub fn weight_bytes(&self) -> u64 {
        let blocks: u64 = self.blocks.iter().map(Block::size_bytes).sum();
        self.wte.size_bytes() + self.wpe.size_bytes() + self.ln_f.size_bytes() + blocks
    }

    /// Record `logits (rows, V) = hidden · wteᵀ`, vocabulary chunk by chunk.
    pub fn record_logits(&self, cmd: &mut Commands, logits: &Tensor, hidden: &Tensor, rows: usize) {
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        for v0 in (0..v).step_by(VOCAB_CHUNK) {
            let vc = VOCAB_CHUNK.min(v - v0);
            let w = self.wte.rows(v0, vc, c);
            let out = logits.slice(v0, logits.len() - v0);
            gemm(
                cmd,
                &out,
                hidden,
                &w,
                None,
                Gemm::new(rows, vc, c).trans_b(true).ldc(v),
            );
        }
    }

    /// Logits (B,T,V) of `ids (B,T)` with `mask (B,T)`, with `adapter` applied if given (no
    /// dropout).
    pub async fn logits(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        self.check_batch(gpu, ids, mask, b, t)?;
        if b * t * self.config.vocab_size > gpu.max_binding_words() {
            bail!(
                "{b} x {t} positions of full logits do not fit one GPU binding; use fewer positions"
            );
        }
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let logits = gpu.tensor(b * t * self.config.vocab_size);
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let pass = Pass { b, t, src, adapter };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, &pass, Keep::Nothing)
            .lnf;
        self.record_logits(&mut cmd, &logits, &hidden, b * t);
        cmd.submit();
        Ok(gpu.read_f32(&logits).await?)
    }

    /// Per-position losses (B·T) of predicting `targets (B,T)` (−100 = not trained) from
    /// `ids`, through the chunked LM head + cross-entropy, with `adapter` applied if given.
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, targets, b, t) as its parts
    pub async fn position_losses(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        targets: &[i32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        self.check_batch(gpu, ids, mask, b, t)?;
        let rows = b * t;
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let target_words: Vec<u32> = targets.iter().map(|&x| x as u32).collect();
        let targets_t = gpu.upload_u32(&target_words);
        let loss = gpu.tensor(rows);
        let chunk_width = vocab_chunk(gpu, rows, v);
        let chunk = gpu.tensor(rows * chunk_width);
        let state = gpu.tensor(rows * 3);
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let pass = Pass { b, t, src, adapter };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, &pass, Keep::Nothing)
            .lnf;
        lm_head_loss(
            &mut cmd,
            &loss,
            None,
            &chunk,
            &state,
            &hidden,
            &self.wte,
            &targets_t,
            rows,
            c,
            v,
            chunk_width,
            0.0,
            Reduction::Auto,
        );
        cmd.submit();
        Ok(gpu.read_f32(&loss).await?)
    }

    /// Check that a batch of `b`×`t` tokens fits the GPU's binding limit: the largest
    /// activation is the (B·T, 4C) MLP hidden state (and a 128-wide LM-head chunk).
    pub fn check_fits(&self, gpu: &Gpu, b: usize, t: usize) -> Result<()> {
        let rows = b * t;
        let words = (rows * 4 * self.config.n_embd).max(rows * 128);
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
        if ids.len() != b * t || mask.len() != b * t {
            bail!("batch of {b}x{t} needs {} ids and mask values", b * t);
        }
        self.check_input(ids, t)?;
        self.check_fits(gpu, b, t)
    }
}

/// Columns of the LM-head chunk for `rows` rows: at most [`VOCAB_CHUNK`], a multiple of 128
/// (so that every chunk of an f16 wte starts 256-byte aligned whatever C is), and small
/// enough that the (rows, chunk) block fits one shader binding.
pub fn vocab_chunk(gpu: &Gpu, rows: usize, vocab: usize) -> usize {
    let fit = gpu.max_binding_words() / rows.max(1) / 128 * 128;
    VOCAB_CHUNK.min(vocab.div_ceil(128) * 128).min(fit).max(128)
}
