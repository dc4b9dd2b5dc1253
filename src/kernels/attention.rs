//! Causal multi-head self-attention, forward and backward (`shaders/attention.wgsl`), with
//! grouped-query attention (fewer key/value heads than query heads, as Llama and Qwen2).
//! Flash-style: only the per-row log-sum-exp is saved, never the (T,T) scores.
//!
//! `qkv (B,T,W)` holds each row's queries, keys and values side by side: `W = C + 2·KV`,
//! `C = n_head·hd`, `KV = n_kv_head·hd`. GPT-2's c_attn output is the case `n_kv_head = n_head`.

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
    /// Width of the queries and of the output: `n_head · head_dim`.
    pub c: usize,
    pub n_head: usize,
    /// Key/value heads; `n_head` is a multiple of it (`n_head` itself: multi-head attention).
    pub n_kv_head: usize,
}

impl AttnDims {
    /// Multi-head attention (GPT-2): as many key/value heads as query heads.
    pub fn mha(b: usize, t: usize, c: usize, n_head: usize) -> Self {
        let n_kv_head = n_head;
        Self {
            b,
            t,
            c,
            n_head,
            n_kv_head,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.c / self.n_head
    }

    /// Row width of `qkv`: queries, keys and values.
    pub fn width(&self) -> usize {
        self.c + 2 * self.n_kv_head * self.head_dim()
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
    nkv: u32,
    _pad: [u32; 3],
}

fn params(d: &AttnDims, q0: usize, nq: usize) -> Params {
    let hd = d.head_dim();
    assert!(
        d.c.is_multiple_of(d.n_head) && hd <= MAX_HEAD_DIM,
        "attention: head dim {hd} (n_embd {} / n_head {}) must divide evenly and be <= {MAX_HEAD_DIM}",
        d.c,
        d.n_head
    );
    assert!(
        d.n_kv_head > 0 && d.n_head.is_multiple_of(d.n_kv_head),
        "attention: {} query heads do not split into groups over {} key/value heads",
        d.n_head,
        d.n_kv_head
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
        nkv: d.n_kv_head as u32,
        _pad: [0; 3],
    }
}

/// `out (B,nq,C)`: attention of query positions `q0 .. q0+nq` over keys `0 ..= position`,
/// reading q/k/v from `qkv (B,T,W)`; `mask (B,T)` is 1 for tokens and 0 for padding.
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

/// `dqkv (B,T,W)` from `dout (B,T,C)`, given the forward's `out` and `lse`. `delta (B,nh,T)`
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
    let grid = |heads: usize| grid_1d(d.b * heads * d.t, 64);
    let dq_bindings = [dqkv, delta, dout, out, qkv, lse, mask];
    cmd.dispatch(&dq, &p, &dq_bindings, grid(d.n_head));
    let dkv_bindings = [dqkv, dout, qkv, lse, delta, mask];
    cmd.dispatch(&dkv, &p, &dkv_bindings, grid(d.n_kv_head));
}
