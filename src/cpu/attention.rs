//! Causal multi-head self-attention, computed the textbook way with the full (T,T) matrix,
//! with grouped-query attention: `qkv (B,T,W)`, `W = C + 2·nkv·hd`, q in `[0,C)`, k in
//! `[C, C+nkv·hd)`, v after it; query head h reads key/value head `h / (nh/nkv)`.

/// Where the columns of one head sit in a `qkv` row.
#[derive(Clone, Copy)]
struct Heads {
    c: usize,
    nh: usize,
    nkv: usize,
}

impl Heads {
    fn hd(&self) -> usize {
        self.c / self.nh
    }
    fn width(&self) -> usize {
        self.c + 2 * self.nkv * self.hd()
    }
    fn q(&self, h: usize) -> usize {
        h * self.hd()
    }
    fn k(&self, h: usize) -> usize {
        self.c + (h / (self.nh / self.nkv)) * self.hd()
    }
    fn v(&self, h: usize) -> usize {
        self.k(h) + self.nkv * self.hd()
    }
}

/// Per (b, h): the attention probabilities `att (T,T)` of query i over keys j <= i whose mask
/// is 1. A query with no visible key has an all-zero row.
fn probabilities(qkv: &[f32], mask: &[u32], b: usize, t: usize, hs: Heads, h: usize) -> Vec<f64> {
    let (hd, w) = (hs.hd(), hs.width());
    let scale = 1.0 / (hd as f64).sqrt();
    let mut att = vec![0.0f64; t * t];
    for i in 0..t {
        let q = &qkv[(b * t + i) * w + hs.q(h)..][..hd];
        let mut max = f64::NEG_INFINITY;
        for j in 0..=i {
            if mask[b * t + j] == 0 {
                continue;
            }
            let k = &qkv[(b * t + j) * w + hs.k(h)..][..hd];
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

/// out (B,T,C) = softmax(q·kᵀ/sqrt(hd) + causal/padding mask) · v, per query head, over
/// `nkv` key/value heads (`nkv = nh`: GPT-2's multi-head attention).
#[allow(clippy::too_many_arguments)] // llm.c-style shape arguments
pub fn attention_forward(
    out: &mut [f32],
    qkv: &[f32],
    mask: &[u32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    nkv: usize,
) {
    let hs = Heads { c, nh, nkv };
    let (hd, w) = (hs.hd(), hs.width());
    for bb in 0..b {
        for h in 0..nh {
            let att = probabilities(qkv, mask, bb, t, hs, h);
            for i in 0..t {
                for d in 0..hd {
                    let mut acc = 0.0f64;
                    for j in 0..=i {
                        acc += att[i * t + j] * qkv[(bb * t + j) * w + hs.v(h) + d] as f64;
                    }
                    out[(bb * t + i) * c + h * hd + d] = acc as f32;
                }
            }
        }
    }
}

/// dqkv (B,T,W) from dout (B,T,C), through the softmax with the full matrices; a key/value
/// head's gradient sums over the query heads that read it.
#[allow(clippy::too_many_arguments)] // llm.c-style shape arguments
pub fn attention_backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    mask: &[u32],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
    nkv: usize,
) {
    let hs = Heads { c, nh, nkv };
    let (hd, w) = (hs.hd(), hs.width());
    let scale = 1.0 / (hd as f64).sqrt();
    let mut acc = vec![0.0f64; dqkv.len()];
    for bb in 0..b {
        for h in 0..nh {
            let att = probabilities(qkv, mask, bb, t, hs, h);
            let at = |i: usize, col: usize| (bb * t + i) * w + col;
            let q = |i: usize, d: usize| qkv[at(i, hs.q(h) + d)] as f64;
            let k = |j: usize, d: usize| qkv[at(j, hs.k(h) + d)] as f64;
            let v = |j: usize, d: usize| qkv[at(j, hs.v(h) + d)] as f64;
            let g = |i: usize, d: usize| dout[(bb * t + i) * c + h * hd + d] as f64;
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
                        acc[at(j, hs.v(h) + d)] += p * g(i, d);
                        acc[at(i, hs.q(h) + d)] += ds * k(j, d);
                        acc[at(j, hs.k(h) + d)] += ds * q(i, d);
                    }
                }
            }
        }
    }
    for (o, a) in dqkv.iter_mut().zip(acc) {
        *o = a as f32;
    }
}
