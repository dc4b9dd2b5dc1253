//! LayerNorm over the last dimension.

/// out (N,C) = (x - mean) * rstd * w + b; returns mean (N), rstd (N).
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    c: usize,
    eps: f32,
) {
    for r in 0..n {
        let xr = &x[r * c..(r + 1) * c];
        let m = xr.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = xr.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / c as f64;
        let s = 1.0 / (var + eps as f64).sqrt();
        for i in 0..c {
            out[r * c + i] = ((xr[i] as f64 - m) * s) as f32 * w[i] + b[i];
        }
        mean[r] = m as f32;
        rstd[r] = s as f32;
    }
}

/// dx (N,C) (+)= rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * w.
pub fn layernorm_backward(
    dx: &mut [f32],
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
    accumulate: bool,
) {
    for r in 0..n {
        let (m, s) = (mean[r] as f64, rstd[r] as f64);
        let norm = |i: usize| (x[r * c + i] as f64 - m) * s;
        let dnorm = |i: usize| dout[r * c + i] as f64 * w[i] as f64;
        let mean_d = (0..c).map(dnorm).sum::<f64>() / c as f64;
        let mean_dn = (0..c).map(|i| dnorm(i) * norm(i)).sum::<f64>() / c as f64;
        for i in 0..c {
            let g = (s * (dnorm(i) - mean_d - norm(i) * mean_dn)) as f32;
            dx[r * c + i] = if accumulate { dx[r * c + i] + g } else { g };
        }
    }
}

/// RMSNorm: out (N,C) = x * rstd * w, rstd = 1/sqrt(mean(x²) + eps); returns rstd (N).
pub fn rmsnorm_forward(
    out: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    c: usize,
    eps: f32,
) {
    for r in 0..n {
        let xr = &x[r * c..(r + 1) * c];
        let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c as f64;
        let s = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..c {
            out[r * c + i] = (xr[i] as f64 * s) as f32 * w[i];
        }
        rstd[r] = s as f32;
    }
}

/// dx (N,C) (+)= rstd * (dnorm - norm * mean(dnorm * norm)), norm = x * rstd, dnorm = dout * w.
pub fn rmsnorm_backward(
    dx: &mut [f32],
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
    accumulate: bool,
) {
    for r in 0..n {
        let s = rstd[r] as f64;
        let norm = |i: usize| x[r * c + i] as f64 * s;
        let dnorm = |i: usize| dout[r * c + i] as f64 * w[i] as f64;
        let mean_dn = (0..c).map(|i| dnorm(i) * norm(i)).sum::<f64>() / c as f64;
        for i in 0..c {
            let g = (s * (dnorm(i) - norm(i) * mean_dn)) as f32;
            dx[r * c + i] = if accumulate { dx[r * c + i] + g } else { g };
        }
    }
}
