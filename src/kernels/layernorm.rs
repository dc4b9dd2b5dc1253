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
    if reduction.uses_subgroups(cmd.gpu()) {
        Shader::LayerNormSubgroups
    } else {
        Shader::LayerNorm
    }
}

/// A LayerNorm's parameters: `weight (C)` and `bias (C)`.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl LayerNorm {
    /// Bytes its parameters occupy on the GPU.
    pub fn size_bytes(&self) -> u64 {
        self.weight.size_bytes() + self.bias.size_bytes()
    }
}

/// `out (N,C) = (x - mean) * rstd * ln.weight + ln.bias`; saves `mean (N)` and `rstd (N)`.
/// `reduction`: how each row is summed (`Reduction::Auto`: as the device's tuning says).
pub fn layernorm_forward(
    cmd: &mut Commands,
    out: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    x: &Tensor,
    ln: &LayerNorm,
    rows: usize,
    c: usize,
    eps: f32,
    reduction: Reduction,
) {
    let pipeline = shader(cmd, reduction).pipeline(cmd.gpu(), "layernorm_forward", &[]);
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
        &[out, mean, rstd, x, &ln.weight, &ln.bias],
        grid_1d(rows, 1),
    );
}

/// `dx (N,C) (+)= dLayerNorm/dx · dout`, from the saved `mean`/`rstd` (only `ln.weight` is
/// read: the parameters are frozen, they get no gradient).
pub fn layernorm_backward(
    cmd: &mut Commands,
    dx: &Tensor,
    dout: &Tensor,
    x: &Tensor,
    ln: &LayerNorm,
    mean: &Tensor,
    rstd: &Tensor,
    rows: usize,
    c: usize,
    accumulate: bool,
    reduction: Reduction,
) {
    let pipeline = shader(cmd, reduction).pipeline(cmd.gpu(), "layernorm_backward", &[]);
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        eps: 0.0,
        accumulate: accumulate as u32,
    };
    cmd.dispatch(
        &pipeline,
        &params,
        &[dx, dout, x, &ln.weight, mean, rstd],
        grid_1d(rows, 1),
    );
}

/// `out (N,C) = x * rstd * weight` with `rstd = 1/sqrt(mean(x²) + eps)` (RMSNorm, Llama and
/// Qwen2); saves `rstd (N)`.
pub fn rmsnorm_forward(
    cmd: &mut Commands,
    out: &Tensor,
    rstd: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    rows: usize,
    c: usize,
    eps: f32,
    reduction: Reduction,
) {
    let pipeline = shader(cmd, reduction).pipeline(cmd.gpu(), "rmsnorm_forward", &[]);
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        eps,
        accumulate: 0,
    };
    let bound = [(1, out), (3, rstd), (4, x), (5, weight)];
    cmd.dispatch_bound(&pipeline, &params, &bound, grid_1d(rows, 1));
}

/// `dx (N,C) (+)= dRMSNorm/dx · dout`, from the saved `rstd` (the weight is frozen).
pub fn rmsnorm_backward(
    cmd: &mut Commands,
    dx: &Tensor,
    dout: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    rstd: &Tensor,
    rows: usize,
    c: usize,
    accumulate: bool,
    reduction: Reduction,
) {
    let pipeline = shader(cmd, reduction).pipeline(cmd.gpu(), "rmsnorm_backward", &[]);
    let params = Params {
        rows: rows as u32,
        c: c as u32,
        eps: 0.0,
        accumulate: accumulate as u32,
    };
    let bound = [(1, dx), (2, dout), (3, x), (4, weight), (6, rstd)];
    cmd.dispatch_bound(&pipeline, &params, &bound, grid_1d(rows, 1));
}
