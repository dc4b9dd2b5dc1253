//! Causal multi-head self-attention, computed the textbook way with the full (T,T) matrix.

/// Per (b, h): the attention probabilities `att (T,T)` of query i over keys j <= i whose mask
/// is 1. A query with no visible key has an all-zero row. `qkv (B,T,3C)`.
fn probabilities(
    qkv: &[f32],
    mask: &[u32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    h: usize,
) -> Vec<f64> {
    let hd = c / nh;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut att = vec![0.0f64; t * t];
    for i in 0..t {
        let q = &qkv[(b * t + i) * 3 * c + h * hd..][..hd];
        let mut max = f64::NEG_INFINITY;
        for j in 0..=i {
            if mask[b * t + j] == 0 {
                continue;
            }
            let k = &qkv[(b * t + j) * 3 * c + c + h * hd..][..hd];
            let s: f64 = q
                .iter()
                .zip(k)
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum::<f64>()
                * scale;
            att[i * t + j] = s;
            max = max.max(s);
        }
        let mut sum = 0.0;
        for j in 0..=i {
            if mask[b * t + j] != 0 {
                att[i * t + j] = (att[i * t + j] - max).exp();
                sum += att[i * t + j];
            }
        }
        for j in 0..=i {
            if mask[b * t + j] != 0 {
                att[i * t + j] /= sum;
            }
        }
    }
    att
}

/// out (B,T,C) = softmax(q·kᵀ/sqrt(hd) + causal/padding mask) · v, per head.
pub fn attention_forward(
    out: &mut [f32],
    qkv: &[f32],
    mask: &[u32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hd = c / nh;
    for bb in 0..b {
        for h in 0..nh {
            let att = probabilities(qkv, mask, bb, t, c, nh, h);
            for i in 0..t {
                for d in 0..hd {
                    let mut acc = 0.0f64;
                    for j in 0..=i {
                        acc +=
                            att[i * t + j] * qkv[(bb * t + j) * 3 * c + 2 * c + h * hd + d] as f64;
                    }
                    out[(bb * t + i) * c + h * hd + d] = acc as f32;
                }
            }
        }
    }
}

/// dqkv (B,T,3C) from dout (B,T,C), through the softmax with the full matrices.
pub fn attention_backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    mask: &[u32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hd = c / nh;
    let scale = 1.0 / (hd as f64).sqrt();
    dqkv.fill(0.0);
    for bb in 0..b {
        for h in 0..nh {
            let att = probabilities(qkv, mask, bb, t, c, nh, h);
            let q = |i: usize, d: usize| qkv[(bb * t + i) * 3 * c + h * hd + d] as f64;
            let k = |j: usize, d: usize| qkv[(bb * t + j) * 3 * c + c + h * hd + d] as f64;
            let v = |j: usize, d: usize| qkv[(bb * t + j) * 3 * c + 2 * c + h * hd + d] as f64;
            let g = |i: usize, d: usize| dout[(bb * t + i) * c + h * hd + d] as f64;
            let mut dq = vec![0.0f64; t * hd];
            let mut dk = vec![0.0f64; t * hd];
            let mut dv = vec![0.0f64; t * hd];
            for i in 0..t {
                // datt_ij = g_i · v_j;  ds_ij = att_ij (datt_ij - Σ_l att_il datt_il)
                let datt: Vec<f64> = (0..t)
                    .map(|j| (0..hd).map(|d| g(i, d) * v(j, d)).sum())
                    .collect();
                let dot: f64 = (0..t).map(|j| att[i * t + j] * datt[j]).sum();
                for j in 0..=i {
                    let p = att[i * t + j];
                    let ds = p * (datt[j] - dot) * scale;
                    for d in 0..hd {
                        dv[j * hd + d] += p * g(i, d);
                        dq[i * hd + d] += ds * k(j, d);
                        dk[j * hd + d] += ds * q(i, d);
                    }
                }
            }
            for i in 0..t {
                for d in 0..hd {
                    let row = (bb * t + i) * 3 * c + h * hd + d;
                    dqkv[row] = dq[i * hd + d] as f32;
                    dqkv[row + c] = dk[i * hd + d] as f32;
                    dqkv[row + 2 * c] = dv[i * hd + d] as f32;
                }
            }
        }
    }
}
