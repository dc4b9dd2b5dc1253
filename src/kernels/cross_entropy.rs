//! Softmax cross-entropy with `ignore_index = -100` ([`crate::data::IGNORE_INDEX`]: the shader
//! skips those targets), over vocabulary chunks
//! (`shaders/cross_entropy.wgsl`). The caller computes each chunk of logits with the LM-head
//! matmul; see `lm_head_loss` for the whole forward/backward sweep.

use bytemuck::{Pod, Zeroable};

use super::matmul::{Gemm, Weight, gemm};
use super::{Reduction, Shader};
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    vc: u32,
    v0: u32,
    first: u32,
    grad_scale: f32,
    c: u32,
    _pad: [u32; 2],
}

fn shader(cmd: &Commands, reduction: Reduction) -> Shader {
    if reduction.uses_subgroups(cmd.gpu()) {
        Shader::CrossEntropySubgroups
    } else {
        Shader::CrossEntropy
    }
}

fn params(rows: usize, vc: usize, v0: usize, first: bool, grad_scale: f32) -> Params {
    Params {
        rows: rows as u32,
        vc: vc as u32,
        v0: v0 as u32,
        first: first as u32,
        grad_scale,
        c: 0,
        _pad: [0; 2],
    }
}

/// Fold one chunk of logits `(rows, vc)` for vocabulary ids `[v0, v0+vc)` into the running
/// `state (rows, 3)`: max, sum of exp, target logit. `targets (rows)` are i32 as u32 words.
pub fn cross_entropy_stats(
    cmd: &mut Commands,
    state: &Tensor,
    logits: &Tensor,
    targets: &Tensor,
    rows: usize,
    vc: usize,
    v0: usize,
    reduction: Reduction,
) {
    let pipeline = shader(cmd, reduction).pipeline(cmd.gpu(), "cross_entropy_stats", &[]);
    cmd.dispatch(
        &pipeline,
        &params(rows, vc, v0, v0 == 0, 0.0),
        &[state, logits, targets],
        grid_1d(rows, 1),
    );
}

/// `loss (rows) = logsumexp - target logit` (0 for ignored rows) from the final state.
pub fn cross_entropy_loss(
    cmd: &mut Commands,
    loss: &Tensor,
    state: &Tensor,
    targets: &Tensor,
    rows: usize,
) {
    let pipeline = Shader::CrossEntropy.pipeline(cmd.gpu(), "cross_entropy_loss", &[]);
    cmd.dispatch(
        &pipeline,
        &params(rows, 0, 0, false, 0.0),
        &[loss, state, targets],
        grid_1d(rows, 64),
    );
}

/// Fold one chunk of logits `(rows, vc)` into the running state as [`cross_entropy_stats`]
/// does, overwrite it with `exp(logit - running max)`, rescale the dx accumulator
/// `acc (rows, C)` to the new max (unless `v0 == 0`: acc is then written afresh by the caller)
/// and copy the target's row of `wte_chunk (vc, C)` (f32 or f16) into `wt (rows, C)`.
pub fn cross_entropy_online(
    cmd: &mut Commands,
    state: &Tensor,
    chunk: &Tensor,
    targets: &Tensor,
    acc: &Tensor,
    wt: &Tensor,
    wte_chunk: &Weight,
    rows: usize,
    vc: usize,
    v0: usize,
    c: usize,
    reduction: Reduction,
) {
    let (wte_chunk, f16) = wte_chunk.dense();
    let pipeline = shader(cmd, reduction).pipeline(
        cmd.gpu(),
        "cross_entropy_online",
        &[("WTE_F16", f16 as u32 as f64)],
    );
    let p = Params {
        c: c as u32,
        ..params(rows, vc, v0, v0 == 0, 0.0)
    };
    cmd.dispatch(
        &pipeline,
        &p,
        &[state, chunk, targets, acc, wt, wte_chunk],
        grid_1d(rows, 1),
    );
}

/// `dx (rows, C) = (acc / sum of exp - wt) · grad_scale` (0 for ignored rows): the LM head's
/// input gradient once [`cross_entropy_online`] and the `acc += exp-chunk · wte_chunk`
/// products have seen every chunk.
pub fn cross_entropy_dx(
    cmd: &mut Commands,
    dx: &Tensor,
    acc: &Tensor,
    wt: &Tensor,
    state: &Tensor,
    targets: &Tensor,
    rows: usize,
    c: usize,
    grad_scale: f32,
) {
    let pipeline = Shader::CrossEntropy.pipeline(cmd.gpu(), "cross_entropy_dx", &[]);
    let p = Params {
        c: c as u32,
        ..params(rows, 0, 0, false, grad_scale)
    };
    cmd.dispatch(
        &pipeline,
        &p,
        &[dx, acc, wt, state, targets],
        grid_1d(rows * c, 64),
    );
}

/// The tied LM head and its loss, chunked over the vocabulary.
///
/// `x (rows,C)` is the final LayerNorm output, `wte (V,C)` the tied embedding (f32, or f16 as
/// kept with NF4 / f16 base weights). Writes
/// `loss (rows)`; when `dx` is given, also `dx (rows,C) = dloss/dx` with
/// `dloss/dloss_row = grad_scale` (e.g. 1 / trained tokens). `logits_chunk` must hold
/// `rows · chunk` words; `state` `rows · 3`. `chunk` is a multiple of 64 (of 128 for an f16
/// wte with odd C) so that every chunk of `wte` starts 256-byte aligned.
///
/// Each chunk's logits are computed once: with `dx` wanted, the softmax-weighted sum of wte
/// rows is accumulated online (rescaled whenever the running max grows, as flash attention
/// does), so the LM head costs two matmuls of its size instead of three (logits, logits
/// recomputed for the gradient, input gradient). `reduction`: how the row max and sums are
/// reduced (`Reduction::Auto`: as the device's tuning says).
pub fn lm_head_loss(
    cmd: &mut Commands,
    loss: &Tensor,
    dx: Option<&Tensor>,
    logits_chunk: &Tensor,
    state: &Tensor,
    x: &Tensor,
    wte: &Weight,
    targets: &Tensor,
    rows: usize,
    c: usize,
    vocab: usize,
    chunk: usize,
    grad_scale: f32,
    reduction: Reduction,
) {
    assert!(
        chunk.is_multiple_of(64) && chunk > 0,
        "vocabulary chunk must be a multiple of 64"
    );
    assert!(
        !wte.dense().1 || (chunk * c).is_multiple_of(128),
        "an f16 wte needs chunk·C to be a multiple of 128"
    );
    let gpu = cmd.gpu();
    // acc: Σ exp(logit - running max) · wte row; wt: the target's wte row.
    let online = dx.map(|_| (gpu.tensor(rows * c), gpu.tensor(rows * c)));
    for v0 in (0..vocab).step_by(chunk) {
        let vc = chunk.min(vocab - v0);
        let w = wte.rows(v0, vc, c);
        gemm(
            cmd,
            logits_chunk,
            x,
            &w,
            None,
            Gemm::new(rows, vc, c).trans_b(true),
        );
        match &online {
            None => cross_entropy_stats(cmd, state, logits_chunk, targets, rows, vc, v0, reduction),
            Some((acc, wt)) => {
                cross_entropy_online(
                    cmd,
                    state,
                    logits_chunk,
                    targets,
                    acc,
                    wt,
                    &w,
                    rows,
                    vc,
                    v0,
                    c,
                    reduction,
                );
                // acc (rows,C) (+)= exp-chunk (rows,vc) · wte[v0..v0+vc] (vc,C)
                gemm(
                    cmd,
                    acc,
                    logits_chunk,
                    &w,
                    None,
                    Gemm::new(rows, c, vc).accumulate(v0 > 0),
                );
            }
        }
    }
    cross_entropy_loss(cmd, loss, state, targets, rows);
    if let (Some(dx), Some((acc, wt))) = (dx, &online) {
        cross_entropy_dx(cmd, dx, acc, wt, state, targets, rows, c, grad_scale);
    }
}
