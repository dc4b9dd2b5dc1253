//! Global gradient norm with clipping, and AdamW, over one flat parameter buffer
//! (all LoRA A/B tensors live in one allocation, so each is a single dispatch).

use bytemuck::{Pod, Zeroable};

use super::Shader;
use crate::gpu::{Commands, Tensor, grid_1d};

/// Workgroups of the partial-sum pass (must match NPART in optim.wgsl).
pub const NORM_PARTIALS: usize = 256;

/// AdamW hyper-parameters for one step (torch.optim.AdamW semantics).
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step number (for bias correction).
    pub step: u32,
}

impl AdamW {
    /// `lr / (1 - beta1^step)`, in f64 as torch computes it in Python floats.
    pub fn step_size(&self) -> f32 {
        (self.lr as f64 / (1.0 - (self.beta1 as f64).powi(self.step as i32))) as f32
    }
    /// `sqrt(1 - beta2^step)`.
    pub fn bias_correction2_sqrt(&self) -> f32 {
        (1.0 - (self.beta2 as f64).powi(self.step as i32)).sqrt() as f32
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    max_norm: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    _pad: [u32; 3],
}

/// `norm_out[0] = ||grad||₂`, `norm_out[1] = min(1, max_norm / (norm + 1e-6))` (1 when
/// `max_norm <= 0`). `partials` is scratch of [`NORM_PARTIALS`] words.
pub fn grad_norm(
    cmd: &mut Commands,
    norm_out: &Tensor,
    partials: &Tensor,
    grad: &Tensor,
    n: usize,
    max_norm: f32,
) {
    let partial = Shader::Optim.pipeline(cmd.gpu(), "grad_norm_partial", &[]);
    let finalize = Shader::Optim.pipeline(cmd.gpu(), "grad_norm_finalize", &[]);
    let params = Params {
        n: n as u32,
        max_norm,
        ..Default::default()
    };
    cmd.dispatch(
        &partial,
        &params,
        &[partials, grad],
        [NORM_PARTIALS as u32, 1, 1],
    );
    cmd.dispatch(&finalize, &params, &[norm_out, partials], [1, 1, 1]);
}

/// One AdamW step on `n` parameters; the gradient is scaled by the clip coefficient
/// `norm[1]` computed by [`grad_norm`].
pub fn adamw(
    cmd: &mut Commands,
    param: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    grad: &Tensor,
    norm: &Tensor,
    n: usize,
    h: &AdamW,
) {
    let pipeline = Shader::Optim.pipeline(cmd.gpu(), "adamw", &[]);
    let params = Params {
        n: n as u32,
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        weight_decay: h.weight_decay,
        step_size: h.step_size(),
        bc2_sqrt: h.bias_correction2_sqrt(),
        ..Default::default()
    };
    cmd.dispatch(
        &pipeline,
        &params,
        &[param, exp_avg, exp_avg_sq, grad, norm],
        grid_1d(n, 256),
    );
}
