//! LoRA on one Conv1D layer (PEFT semantics) and its seeded dropout.

use super::matmul::gemm;

/// The dropout hash shared with `shaders/lora.wgsl` (PCG, Jarzynski & Olano 2020).
fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// Whether element `i` survives dropout with probability `p_drop` under `seed`.
pub fn dropout_keep(i: u32, seed: u32, p_drop: f32) -> bool {
    let h = pcg_hash(i ^ pcg_hash(seed));
    (h >> 8) as f32 * (1.0 / 16777216.0) >= p_drop
}

/// out = x * keep / (1 - p)
pub fn dropout(x: &[f32], p_drop: f32, seed: u32) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if dropout_keep(i as u32, seed, p_drop) {
                v / (1.0 - p_drop)
            } else {
                0.0
            }
        })
        .collect()
}

/// y (M,N) += scale · dropout(x) (M,K) · Aᵀ (K,r) · Bᵀ (r,N); returns u = dropout(x)·Aᵀ (M,r).
pub fn lora_forward(
    y: &mut [f32],
    x: &[f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    r: usize,
    scale: f32,
    p_drop: f32,
    seed: u32,
) -> Vec<f32> {
    let h = dropout(x, p_drop, seed);
    let mut u = vec![0.0; m * r];
    gemm(&mut u, &h, a, None, m, r, k, false, true, 1.0, 0.0);
    gemm(y, &u, b, None, m, n, r, false, true, scale, 1.0);
    u
}

/// Gradients of [`lora_forward`]: dA (r,K) +=, dB (N,r) +=, dx (M,K) += (the LoRA part).
pub fn lora_backward(
    dx: &mut [f32],
    da: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    u: &[f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    r: usize,
    scale: f32,
    p_drop: f32,
    seed: u32,
) {
    let h = dropout(x, p_drop, seed);
    let mut du = vec![0.0; m * r];
    gemm(&mut du, dy, b, None, m, r, n, false, false, scale, 0.0);
    gemm(db, dy, u, None, n, r, m, true, false, scale, 1.0);
    gemm(da, &du, &h, None, r, k, m, true, false, 1.0, 1.0);
    let mut dh = vec![0.0; m * k];
    gemm(&mut dh, &du, a, None, m, k, r, false, false, 1.0, 0.0);
    for (i, g) in dropout(&dh, p_drop, seed).into_iter().enumerate() {
        dx[i] += g;
    }
}
