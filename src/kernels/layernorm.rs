//! LayerNorm forward (saving mean and rstd) and backward to the input.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    accumulate: u32,
}

/// `out (N,C) = (x - mean) * rstd * weight + bias`; saves `mean (N)` and `rstd (N)`.
pub fn layernorm_forward(
    cmd: &mut Commands,
    out: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    rows: usize,
    c: usize,
    eps: f32,
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::LayerNorm, "layernorm_forward", &[]);
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        eps,
        accumulate: 0,
    };
    // One workgroup per row.
    cmd.dispatch(
        &pipeline,
        &params,
        &[out, mean, rstd, x, weight, bias],
        grid_1d(rows, 1),
    );
}

/// `dx (N,C) (+)= dLayerNorm/dx · dout`, from the saved `mean`/`rstd`.
pub fn layernorm_backward(
    cmd: &mut Commands,
    dx: &Tensor,
    dout: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    rows: usize,
    c: usize,
    accumulate: bool,
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(Shader::LayerNorm, "layernorm_backward", &[]);
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        eps: 0.0,
        accumulate: accumulate as u32,
    };
    cmd.dispatch(
        &pipeline,
        &params,
        &[dx, dout, x, weight, mean, rstd],
        grid_1d(rows, 1),
    );
}
