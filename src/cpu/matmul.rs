//! General matrix multiply, the reference for `shaders/matmul.wgsl`.

/// C[M,N] = alpha·op(A)·op(B) + beta·C + bias, A stored [M,K] (or [K,M] when `trans_a`),
/// B stored [K,N] (or [N,K] when `trans_b`). Accumulates in f64.
pub fn gemm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for kk in 0..k {
                let av = if trans_a {
                    a[kk * m + i]
                } else {
                    a[i * k + kk]
                };
                let bv = if trans_b {
                    b[j * k + kk]
                } else {
                    b[kk * n + j]
                };
                acc += av as f64 * bv as f64;
            }
            let mut v = alpha as f64 * acc;
            if beta != 0.0 {
                v += beta as f64 * c[i * n + j] as f64;
            }
            if let Some(bias) = bias {
                v += bias[j] as f64;
            }
            c[i * n + j] = v as f32;
        }
    }
}

/// Sum of |a|·|b| over the reduction of each output: the scale of the rounding error an f32
/// accumulation can make (tests bound the GPU error by a multiple of it).
pub fn gemm_abs(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f32> {
    let aa: Vec<f32> = a.iter().map(|v| v.abs()).collect();
    let bb: Vec<f32> = b.iter().map(|v| v.abs()).collect();
    let mut c = vec![0.0; m * n];
    gemm(&mut c, &aa, &bb, None, m, n, k, trans_a, trans_b, 1.0, 0.0);
    c
}

/// C[M,N] += scale · U[M,r] · L[N,r]ᵀ: the reference of the matmul's low-rank epilogue
/// (`kernels::matmul::LowRank`, LoRA's `scale · u · Bᵀ`), in f64 like [`gemm`]. Applied
/// after [`gemm`] it gives what one fused kernel computes, up to f32 rounding.
pub fn add_low_rank(c: &mut [f32], u: &[f32], l: &[f32], m: usize, n: usize, r: usize, scale: f32) {
    gemm(c, u, l, None, m, n, r, false, true, scale, 1.0);
}
