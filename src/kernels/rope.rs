//! Rotary position embedding fused with packing q/k/v into attention's input, and its
//! backward fused with unpacking (`shaders/rope.wgsl`). Llama and Qwen2 run their q_proj,
//! k_proj and v_proj as three Linears (each with its own LoRA); [`rope_pack`] rotates q and k
//! and lays the three side by side as `qkv (R, C + 2·KV)`, the layout
//! [`attention`](super::attention) reads.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

/// Shape of one pack / unpack: `rows` rows of `t` per sequence, the first at position `pos0`.
#[derive(Clone, Copy, Debug)]
pub struct RopeDims {
    pub rows: usize,
    pub t: usize,
    pub pos0: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl RopeDims {
    /// Row width of the packed `qkv`.
    pub fn width(&self) -> usize {
        (self.n_head + 2 * self.n_kv_head) * self.head_dim
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    t: u32,
    pos0: u32,
    nh: u32,
    nkv: u32,
    hd: u32,
    _pad: [u32; 2],
}

fn params(d: &RopeDims) -> Params {
    assert!(
        d.head_dim.is_multiple_of(2),
        "rope: head dim {} is odd",
        d.head_dim
    );
    Params {
        rows: d.rows as u32,
        t: d.t as u32,
        pos0: d.pos0 as u32,
        nh: d.n_head as u32,
        nkv: d.n_kv_head as u32,
        hd: d.head_dim as u32,
        _pad: [0; 2],
    }
}

/// `qkv (R,W) = [rope(q) | rope(k) | v]`; `table (P, hd/2, 2)` holds (cos, sin) per position
/// and frequency ([`crate::cpu::rope::cos_sin_table`]) and must cover `pos0 + t` positions.
pub fn rope_pack(
    cmd: &mut Commands,
    qkv: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    table: &Tensor,
    d: &RopeDims,
) {
    let pipeline = Shader::Rope.pipeline(cmd.gpu(), "rope_pack", &[]);
    let grid = grid_1d(d.rows * d.width(), 256);
    cmd.dispatch(&pipeline, &params(d), &[qkv, q, k, v, table], grid);
}

/// The backward of [`rope_pack`]: `dq`, `dk` (rotated back) and `dv` from `dqkv (R,W)`,
/// overwritten.
pub fn rope_unpack(
    cmd: &mut Commands,
    dq: &Tensor,
    dk: &Tensor,
    dv: &Tensor,
    dqkv: &Tensor,
    table: &Tensor,
    d: &RopeDims,
) {
    let pipeline = Shader::Rope.pipeline(cmd.gpu(), "rope_unpack", &[]);
    let grid = grid_1d(d.rows * d.width(), 256);
    cmd.dispatch(&pipeline, &params(d), &[dq, dk, dv, dqkv, table], grid);
}
