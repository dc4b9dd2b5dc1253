//! How much GPU memory a training run needs, estimated before it starts, and whether its
//! buffers fit the adapter's limits. wgpu does not expose a GPU's total memory, so the total
//! is printed for the user to compare, and what can be checked (the largest buffer and the
//! largest shader binding) is checked, with the flag to lower named.

use crate::bail;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::lora::{Layout, LoraConfig};
use crate::model::acts::{BlockActs, u_ranks};
use crate::model::llama::Llama;
use crate::model::lm_head::vocab_chunk;
use crate::model::{Gpt2, ModelRef};

/// Bytes, by what they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Frozen base weights as uploaded (NF4, f16 or f32; wte in f16 unless the base is f32).
    pub weights: u64,
    /// LoRA parameters, gradients and the two AdamW moments (all f32).
    pub lora: u64,
    /// Activations kept for the backward pass, its scratch, and the LM-head chunk.
    pub activations: u64,
    /// The largest single activation buffer.
    pub largest_buffer: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.lora + self.activations
    }

    /// One line for the user.
    pub fn line(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "estimated GPU memory: {:.1} MiB (weights {:.1}, LoRA + AdamW {:.1}, activations {:.1})",
            mib(self.total()),
            mib(self.weights),
            mib(self.lora),
            mib(self.activations)
        )
    }
}

/// Estimate for micro-batches of `b` sequences of `t` tokens with `lora`'s rank and dropout, from
/// the forward pass's own size table and the backward pass's buffers. On the tiny model at
/// 4 × 128 the pool's measured peak is 100.0-100.3% of it (the pool rounds buffers up to 256
/// bytes), with and without dropout and --grad-checkpoint (tests/train/job.rs). It used to
/// leave out the forward's dropout buffer and the LM head's: the default run needed 5% more.
pub fn estimate(
    gpu: &Gpu,
    model: ModelRef,
    layout: &Layout,
    lora: &LoraConfig,
    (b, t): (usize, usize),
    grad_checkpoint: bool,
) -> MemoryEstimate {
    match model {
        ModelRef::Gpt2(m) => estimate_gpt2(gpu, m, layout, lora, (b, t), grad_checkpoint),
        ModelRef::Llama(m) => estimate_llama(gpu, m, layout, lora, (b, t), grad_checkpoint),
    }
}

fn estimate_gpt2(
    gpu: &Gpu,
    model: &Gpt2,
    layout: &Layout,
    lora: &LoraConfig,
    (b, t): (usize, usize),
    grad_checkpoint: bool,
) -> MemoryEstimate {
    let (rank, p_drop) = (lora.r, lora.lora_dropout);
    let cfg = &model.config;
    let (c, rows) = (cfg.n_embd as u64, (b * t) as u64);
    // The forward pass's own size table (model::acts), per block and for the shared set.
    let sizes = |layer| BlockActs::sizes(cfg, b, t, u_ranks(&layout.slots, rank, layer));
    let shared = sizes(None);
    let embedded = shared.x_in as u64;
    let kept = if grad_checkpoint {
        // Each block's output, plus one set of buffers (and x_mid) that all blocks share.
        let outputs = cfg.n_layer * shared.x_out;
        (outputs + shared.owned_words() + shared.x_mid) as u64
    } else {
        (0..cfg.n_layer)
            .map(|l| {
                let s = sizes(Some(l));
                (s.owned_words() + s.x_mid + s.x_out) as u64
            })
            .sum()
    };
    // The backward pass's buffers (train::backward, exactly): the residual-stream and block
    // gradients (15 (BT,C) words), the attention softmax statistic (B,H,T), the LoRA du
    // (BT,r), a (BT,4C) scratch, and the LM head's (BT, chunk) block with per-row state.
    let chunk = vocab_chunk(gpu, b * t, cfg.vocab_size) as u64;
    let backward = 15 * rows * c
        + (b * cfg.n_head * t) as u64
        + rows * rank as u64
        + rows * 4 * c
        + rows * (chunk + 3);
    // The final LayerNorm's output and statistics; the LM head's two online-softmax
    // accumulators (BT,C); the micro-batch's ids, mask, targets and per-token losses.
    let head = rows * (c + 2) + 2 * rows * c + 4 * rows;
    // With LoRA dropout the forward pass keeps a (BT,4C) buffer for the dropped-out input.
    let dropout = if p_drop > 0.0 { rows * 4 * c } else { 0 };
    let scratch = backward + head + dropout;
    MemoryEstimate {
        weights: model.weight_bytes(),
        lora: 4 * 4 * layout.len as u64,
        activations: 4 * (embedded + kept + scratch),
        largest_buffer: 4 * (rows * 4 * c).max(rows * chunk),
    }
}

/// The Llama family's run, counted from the buffers `Llama::record_forward` (every layer's
/// activations kept, or with `grad_checkpoint` each layer's output and one shared set) and
/// `train::llama_backward` take, word for word.
fn estimate_llama(
    gpu: &Gpu,
    model: &Llama,
    layout: &Layout,
    lora: &LoraConfig,
    (b, t): (usize, usize),
    grad_checkpoint: bool,
) -> MemoryEstimate {
    let cfg = &model.config;
    let (c, kv, ff) = (cfg.hidden_size, cfg.kv_dim(), cfg.intermediate_size);
    let (nh, rows) = (cfg.num_attention_heads, b * t);
    // Per layer and row: h1, q, att, x_mid, h2, x_out (C each), the packed q|k|v (C+2KV),
    // k and v (KV each), gate, up and their product (FF each), two rstd, the attention's
    // log-sum-exp per head; plus each adapted module's u (r).
    let per_row = 7 * c + 4 * kv + 3 * ff + 2 + nh;
    let kept: usize = if grad_checkpoint {
        // Each layer's output (C), and one set of the rest, with u for every module some
        // layer adapts.
        let modules = crate::model::Module::LLAMA
            .iter()
            .filter(|&&m| layout.slots.iter().any(|s| s.module == m))
            .count();
        cfg.num_hidden_layers * rows * c + rows * (per_row - c + modules * lora.r)
    } else {
        (0..cfg.num_hidden_layers)
            .map(|l| {
                let adapted = layout.slots.iter().filter(|s| s.layer == l).count();
                rows * (per_row + adapted * lora.r)
            })
            .sum()
    };
    let dropout = if lora.lora_dropout > 0.0 {
        rows * c.max(ff)
    } else {
        0
    };
    // The embedding's output, the final norm's output and rstd; ids, mask, targets, losses.
    let forward = rows * c + rows * (c + 1) + 4 * rows + dropout;
    let chunk = vocab_chunk(gpu, rows, cfg.vocab_size);
    // dhidden, dx, dh, datt, dq (C each), dq|dk|dv packed (C+2KV), dk, dv (KV each), three
    // (FF) gradients, the softmax statistic (per head), du (r), a (max(C,FF)) scratch, the
    // LM head's chunk, its row state and its two online accumulators (C each).
    let backward = rows
        * (5 * c + (c + 2 * kv) + 2 * kv + 3 * ff + nh + lora.r + c.max(ff) + chunk + 3 + 2 * c);
    MemoryEstimate {
        weights: model.weight_bytes(),
        lora: 4 * 4 * layout.len as u64,
        activations: 4 * (kept + forward + backward) as u64,
        largest_buffer: 4 * (rows * ff.max(c + 2 * kv)).max(rows * chunk) as u64,
    }
}

/// Refuse a run whose buffers exceed the adapter's limits, naming what to lower.
pub fn check(gpu: &Gpu, model: ModelRef, est: &MemoryEstimate, b: usize, t: usize) -> Result<()> {
    model.check_fits(gpu, b, t)?;
    let max = gpu.limits.max_buffer_size;
    if est.largest_buffer > max {
        bail!(
            "a batch of {b} x {t} tokens needs a {} MiB buffer, but this GPU allows at most {} MiB per buffer: lower --batch-size or --seq-len",
            est.largest_buffer >> 20,
            max >> 20
        );
    }
    Ok(())
}
