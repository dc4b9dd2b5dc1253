//! GELU (tanh approximation, HF `gelu_new`) forward/backward, SwiGLU (Llama's MLP)
//! forward/backward, and the residual add.

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

fn params(n: usize, accumulate: bool) -> Params {
    Params {
        n: n as u32,
        accumulate: accumulate as u32,
        _pad: [0; 2],
    }
}

/// `out = gelu(x)` over `n` elements.
pub fn gelu_forward(cmd: &mut Commands, out: &Tensor, x: &Tensor, n: usize) {
    let pipeline = Shader::Elementwise.pipeline(cmd.gpu(), "gelu_forward", &[]);
    cmd.dispatch(&pipeline, &params(n, false), &[out, x], grid_1d(n, 256));
}

/// `dx (+)= gelu'(x) * dout` over `n` elements.
pub fn gelu_backward(
    cmd: &mut Commands,
    dx: &Tensor,
    x: &Tensor,
    dout: &Tensor,
    n: usize,
    accumulate: bool,
) {
    let pipeline = Shader::Elementwise.pipeline(cmd.gpu(), "gelu_backward", &[]);
    cmd.dispatch(
        &pipeline,
        &params(n, accumulate),
        &[dx, x, dout],
        grid_1d(n, 256),
    );
}

/// `out = a + b` over `n` elements.
pub fn add(cmd: &mut Commands, out: &Tensor, a: &Tensor, b: &Tensor, n: usize) {
    let pipeline = Shader::Elementwise.pipeline(cmd.gpu(), "add", &[]);
    cmd.dispatch(&pipeline, &params(n, false), &[out, a, b], grid_1d(n, 256));
}

/// `out = silu(gate) * up` over `n` elements (Llama's MLP before down_proj).
pub fn swiglu_forward(cmd: &mut Commands, out: &Tensor, gate: &Tensor, up: &Tensor, n: usize) {
    let pipeline = Shader::Elementwise.pipeline(cmd.gpu(), "swiglu_forward", &[]);
    let p = params(n, false);
    cmd.dispatch(&pipeline, &p, &[out, gate, up], grid_1d(n, 256));
}

/// `dgate = dout · up · silu'(gate)`, `dup = dout · silu(gate)` over `n` elements
/// (overwritten).
pub fn swiglu_backward(
    cmd: &mut Commands,
    dgate: &Tensor,
    dup: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    dout: &Tensor,
    n: usize,
) {
    let pipeline = Shader::Elementwise.pipeline(cmd.gpu(), "swiglu_backward", &[]);
    let p = params(n, false);
    let bindings = [dgate, dup, gate, up, dout];
    cmd.dispatch(&pipeline, &p, &bindings, grid_1d(n, 256));
}
