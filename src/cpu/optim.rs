//! Global-norm gradient clipping and AdamW (torch semantics).

/// Returns (norm, clip coefficient) as torch.nn.utils.clip_grad_norm_ computes them.
pub fn grad_norm(grad: &[f32], max_norm: f32) -> (f32, f32) {
    let norm = grad
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32;
    let coef = if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    (norm, coef)
}

/// One torch.optim.AdamW step on grad * clip_coef. `step` is 1-based.
pub fn adamw(
    param: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grad: &[f32],
    clip_coef: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step: u32,
) {
    let bc1 = 1.0 - (beta1 as f64).powi(step as i32);
    let bc2 = 1.0 - (beta2 as f64).powi(step as i32);
    let step_size = (lr as f64 / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    for i in 0..param.len() {
        let g = grad[i] * clip_coef;
        param[i] *= 1.0 - lr * weight_decay;
        m[i] += (1.0 - beta1) * (g - m[i]);
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        param[i] -= step_size * (m[i] / (v[i].sqrt() / bc2_sqrt + eps));
    }
}
