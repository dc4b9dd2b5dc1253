//! Token + position embedding (forward only: embeddings are frozen in LoRA training).

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    t: u32,
    c: u32,
    pos0: u32,
}

/// `out (B,T,C) = wte[ids] + wpe[pos0 .. pos0+T]`; `ids` are u32 token ids (B,T).
pub fn embedding_forward(
    cmd: &mut Commands,
    out: &Tensor,
    ids: &Tensor,
    wte: &Tensor,
    wpe: &Tensor,
    b: usize,
    t: usize,
    c: usize,
    pos0: usize,
) {
    let rows = b * t;
    assert!(out.len() >= rows * c && ids.len() >= rows);
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::Embedding, "embedding_forward", &[]);
    let params = Params {
        rows: rows as u32,
        t: t as u32,
        c: c as u32,
        pos0: pos0 as u32,
    };
    cmd.dispatch(
        &pipeline,
        &params,
        &[out, ids, wte, wpe],
        grid_1d(rows * c, 256),
    );
}
