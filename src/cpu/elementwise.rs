//! GELU, tanh approximation (HF `gelu_new`), and its derivative; SwiGLU (Llama's MLP).

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

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// out = silu(gate) * up
pub fn swiglu_forward(out: &mut [f32], gate: &[f32], up: &[f32]) {
    for i in 0..out.len() {
        let x = gate[i] as f64;
        out[i] = (x * sigmoid(x) * up[i] as f64) as f32;
    }
}

/// dgate = dout * up * silu'(gate), dup = dout * silu(gate)
pub fn swiglu_backward(dgate: &mut [f32], dup: &mut [f32], gate: &[f32], up: &[f32], dout: &[f32]) {
    for i in 0..dgate.len() {
        let (x, g) = (gate[i] as f64, dout[i] as f64);
        let s = sigmoid(x);
        dgate[i] = (g * up[i] as f64 * s * (1.0 + x * (1.0 - s))) as f32;
        dup[i] = (g * x * s) as f32;
    }
}
