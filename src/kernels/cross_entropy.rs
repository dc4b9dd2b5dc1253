//! Softmax cross-entropy with `ignore_index = -100`, over vocabulary chunks
//! (`shaders/cross_entropy.wgsl`). The caller computes each chunk of logits with the LM-head
//! matmul; see `lm_head_loss` for the whole forward/backward sweep.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use super::matmul::{Gemm, Weight, gemm};
use crate::gpu::{Commands, Tensor, grid_1d};

/// Target value that contributes neither loss nor gradient (torch's default ignore_index).
pub const IGNORE_INDEX: i32 = -100;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    vc: u32,
    v0: u32,
    first: u32,
    grad_scale: f32,
    _pad: [u32; 3],
}

fn params(rows: usize, vc: usize, v0: usize, first: bool, grad_scale: f32) -> Params {
    Params {
        rows: rows as u32,
        vc: vc as u32,
        v0: v0 as u32,
        first: first as u32,
        grad_scale,
        _pad: [0; 3],
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
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::CrossEntropy, "cross_entropy_stats", &[]);
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
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::CrossEntropy, "cross_entropy_loss", &[]);
    cmd.dispatch(
        &pipeline,
        &params(rows, 0, 0, false, 0.0),
        &[loss, state, targets],
        grid_1d(rows, 64),
    );
}

/// Overwrite a logits chunk with `(softmax - onehot) · grad_scale` (0 for ignored rows).
pub fn cross_entropy_grad(
    cmd: &mut Commands,
    logits: &Tensor,
    state: &Tensor,
    targets: &Tensor,
    rows: usize,
    vc: usize,
    v0: usize,
    grad_scale: f32,
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::CrossEntropy, "cross_entropy_grad", &[]);
    cmd.dispatch(
        &pipeline,
        &params(rows, vc, v0, false, grad_scale),
        &[logits, state, targets],
        grid_1d(rows * vc, 64),
    );
}

/// The tied LM head and its loss, chunked over the vocabulary.
///
/// `x (rows,C)` is the final LayerNorm output, `wte (V,C)` the tied embedding. Writes
/// `loss (rows)`; when `dx` is given, also `dx (rows,C) = dloss/dx` with
/// `dloss/dloss_row = grad_scale` (e.g. 1 / trained tokens), recomputing each chunk's logits
/// in a second sweep. `logits_chunk` must hold `rows · chunk` words; `state` `rows · 3`.
/// `chunk` is a multiple of 64 so that every chunk of `wte` starts 256-byte aligned.
pub fn lm_head_loss(
    cmd: &mut Commands,
    loss: &Tensor,
    dx: Option<&Tensor>,
    logits_chunk: &Tensor,
    state: &Tensor,
    x: &Tensor,
    wte: &Tensor,
    targets: &Tensor,
    rows: usize,
    c: usize,
    vocab: usize,
    chunk: usize,
    grad_scale: f32,
) {
    assert!(
        chunk.is_multiple_of(64) && chunk > 0,
        "vocabulary chunk must be a multiple of 64"
    );
    let chunks = || {
        (0..vocab)
            .step_by(chunk)
            .map(|v0| (v0, chunk.min(vocab - v0)))
    };
    let logits_of = |cmd: &mut Commands, v0: usize, vc: usize| {
        let w = Weight::F32(wte.slice(v0 * c, vc * c));
        gemm(
            cmd,
            logits_chunk,
            x,
            &w,
            None,
            Gemm::new(rows, vc, c).trans_b(true),
        );
    };
    for (v0, vc) in chunks() {
        logits_of(cmd, v0, vc);
        cross_entropy_stats(cmd, state, logits_chunk, targets, rows, vc, v0);
    }
    cross_entropy_loss(cmd, loss, state, targets, rows);
    if let Some(dx) = dx {
        for (v0, vc) in chunks() {
            logits_of(cmd, v0, vc);
            cross_entropy_grad(cmd, logits_chunk, state, targets, rows, vc, v0, grad_scale);
            // dx (rows,C) += dlogits (rows,vc) · wte[v0..v0+vc] (vc,C)
            let w = Weight::F32(wte.slice(v0 * c, vc * c));
            gemm(
                cmd,
                dx,
                logits_chunk,
                &w,
                None,
                Gemm::new(rows, c, vc).accumulate(v0 > 0),
            );
        }
    }
}
