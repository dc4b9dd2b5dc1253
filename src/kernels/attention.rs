//! Causal multi-head self-attention, forward and backward (`shaders/attention.wgsl`).
//! Flash-style: only the per-row log-sum-exp is saved, never the (T,T) scores.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

/// Largest head dimension the kernels hold in registers (GPT-2 family: 64).
pub const MAX_HEAD_DIM: usize = 128;

/// Shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub b: usize,
    /// Rows per sequence in `qkv` and `mask`.
    pub t: usize,
    pub c: usize,
    pub n_head: usize,
}

impl AttnDims {
    pub fn head_dim(&self) -> usize {
        self.c / self.n_head
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    b: u32,
    t: u32,
    c: u32,
    nh: u32,
    hd: u32,
    q0: u32,
    nq: u32,
    scale: f32,
}

fn params(d: &AttnDims, q0: usize, nq: usize) -> Params {
    let hd = d.head_dim();
    assert!(
        d.c.is_multiple_of(d.n_head) && hd <= MAX_HEAD_DIM,
        "attention: head dim {hd} (n_embd {} / n_head {}) must divide evenly and be <= {MAX_HEAD_DIM}",
        d.c,
        d.n_head
    );
    Params {
        b: d.b as u32,
        t: d.t as u32,
        c: d.c as u32,
        nh: d.n_head as u32,
        hd: hd as u32,
        q0: q0 as u32,
        nq: nq as u32,
        scale: 1.0 / (hd as f32).sqrt(),
    }
}

/// `out (B,nq,C)`: attention of query positions `q0 .. q0+nq` over keys `0 ..= position`,
/// reading q/k/v from `qkv (B,T,3C)`; `mask (B,T)` is 1 for tokens and 0 for padding.
/// Saves `lse (B,nh,nq)` for the backward pass. Training uses `q0 = 0, nq = T`; generation
/// with a KV cache uses the new positions only.
pub fn attention_forward(
    cmd: &mut Commands,
    out: &Tensor,
    lse: &Tensor,
    qkv: &Tensor,
    mask: &Tensor,
    d: &AttnDims,
    q0: usize,
    nq: usize,
) {
    assert!(q0 + nq <= d.t);
    let pipeline = Shader::Attention.pipeline(cmd.gpu(), "attention_forward", &[]);
    cmd.dispatch(
        &pipeline,
        &params(d, q0, nq),
        &[out, lse, qkv, mask],
        grid_1d(d.b * d.n_head * nq, 64),
    );
}

/// `dqkv (B,T,3C)` from `dout (B,T,C)`, given the forward's `out` and `lse`. `delta (B,nh,T)`
/// is scratch. `dqkv` is overwritten.
pub fn attention_backward(
    cmd: &mut Commands,
    dqkv: &Tensor,
    delta: &Tensor,
    dout: &Tensor,
    out: &Tensor,
    qkv: &Tensor,
    lse: &Tensor,
    mask: &Tensor,
    d: &AttnDims,
) {
    let dq = Shader::Attention.pipeline(cmd.gpu(), "attention_backward_dq", &[]);
    let dkv = Shader::Attention.pipeline(cmd.gpu(), "attention_backward_dkv", &[]);
    let p = params(d, 0, d.t);
    let grid = grid_1d(d.b * d.n_head * d.t, 64);
    cmd.dispatch(&dq, &p, &[dqkv, delta, dout, out, qkv, lse, mask], grid);
    cmd.dispatch(&dkv, &p, &[dqkv, dout, qkv, lse, delta, mask], grid);
}
