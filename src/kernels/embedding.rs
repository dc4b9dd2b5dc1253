//! Token + position embedding (forward only: embeddings are frozen in LoRA training).

use bytemuck::{Pod, Zeroable};

use super::Shader;
use super::matmul::Weight;
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    t: u32,
    c: u32,
    pos0: u32,
    v0: u32,
    vn: u32,
    _pad: [u32; 2],
}

/// `out (B,T,C) = wte[ids] + wpe[pos0 .. pos0+T]` (without `wpe`: `wte[ids]`); `ids` are u32 token ids (B,T), all below
/// the vocabulary size `vocab` (the caller validates them). `wte (V,C)` is f32 or f16
/// ([`Weight::F32`] / [`Weight::F16`]). A table larger than one shader binding is bound in
/// slices of rows, one dispatch each.
pub fn embedding_forward(
    cmd: &mut Commands,
    out: &Tensor,
    ids: &Tensor,
    wte: &Weight,
    wpe: Option<&Tensor>,
    vocab: usize,
    b: usize,
    t: usize,
    c: usize,
    pos0: usize,
) {
    let rows = b * t;
    assert!(out.len() >= rows * c && ids.len() >= rows);
    let (_, f16) = wte.dense();
    let pipeline = Shader::Embedding.pipeline(
        cmd.gpu(),
        "embedding_forward",
        &[
            ("WTE_F16", f16 as u32 as f64),
            ("HAS_WPE", wpe.is_some() as u32 as f64),
        ],
    );
    // Rows per slice: a multiple of 128 keeps every slice 256-byte aligned, f32 or f16.
    let words_per_row = if f16 { c.div_ceil(2) } else { c };
    let slice_rows = (cmd.gpu().max_binding_words() / words_per_row / 128 * 128).max(128);
    for v0 in (0..vocab).step_by(slice_rows) {
        let vn = slice_rows.min(vocab - v0);
        let params = Params {
            rows: rows as u32,
            t: t as u32,
            c: c as u32,
            pos0: pos0 as u32,
            v0: v0 as u32,
            vn: vn as u32,
            _pad: [0; 2],
        };
        cmd.dispatch(
            &pipeline,
            &params,
            // Without a position table the shader never reads binding 4: `ids` stands in.
            &[out, ids, wte.rows(v0, vn, c).dense().0, wpe.unwrap_or(ids)],
            grid_1d(rows * c, 256),
        );
    }
}
