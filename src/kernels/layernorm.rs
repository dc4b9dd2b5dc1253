//! LayerNorm forward (saving mean and rstd) and backward to the input.

use bytemuck::{Pod, Zeroable};

use super::{Reduction, Shader};
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    accumulate: u32,
}

fn shader(cmd: &Commands, reduction: Reduction) -> Shader {
    match reduction.resolve(cmd.gpu()) {
        Reduction::Workgroup => Shader::LayerNorm,
        Reduction::Subgroup => Shader::LayerNormSubgroups,
    }
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
    let r = Reduction::for_gpu(cmd.gpu());
    layernorm_forward_with(cmd, out, mean, rstd, x, weight, bias, rows, c, eps, r);
}

/// [`layernorm_forward`] with an explicit row reduction (tests run both on one device).
pub fn layernorm_forward_with(
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
    reduction: Reduction,
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(shader(cmd, reduction), "layernorm_forward", &[]);
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
    let r = Reduction::for_gpu(cmd.gpu());
    layernorm_backward_with(cmd, dx, dout, x, weight, mean, rstd, rows, c, accumulate, r);
}

/// [`layernorm_backward`] with an explicit row reduction.
pub fn layernorm_backward_with(
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
    reduction: Reduction,
) {
    let pipeline = cmd
        .gpu()
        .kernels()
        .pipeline(shader(cmd, reduction), "layernorm_backward", &[]);
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
