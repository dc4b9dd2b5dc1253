//! GELU, tanh approximation (HF `gelu_new`), and its derivative.

const SQRT_2_OVER_PI: f64 = 0.7978845608028654;
const C: f64 = 0.044715;

pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + C * x * x * x)).tanh())) as f32
}

pub fn gelu_grad(x: f32) -> f32 {
    let x = x as f64;
    let t = (SQRT_2_OVER_PI * (x + C * x * x * x)).tanh();
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * C * x * x);
    (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du) as f32
}

pub fn gelu_forward(out: &mut [f32], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu(v);
    }
}

/// dx (+)= gelu'(x) * dout
pub fn gelu_backward(dx: &mut [f32], x: &[f32], dout: &[f32], accumulate: bool) {
    for i in 0..dx.len() {
        let g = gelu_grad(x[i]) * dout[i];
        dx[i] = if accumulate { dx[i] + g } else { g };
    }
}
