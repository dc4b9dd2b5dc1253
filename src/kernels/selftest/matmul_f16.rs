//! The matmuls (register and tiled kernels) with f16 arithmetic (`Math::F16`,
//! `shaders/matmul_math_f16.wgsl`) for f16 and NF4 weights, against the f64 CPU reference
//! over the same (dequantized) weights.

use super::matmul::{SHAPES, name, tolerance, variants};
use super::{Ctx, Format, KernelReport, Rng, abs_max, upload_weight};
use crate::cpu;
use crate::gpu::Gpu;
use crate::kernels::matmul::{Gemm, Math, MatmulVariant, gemm};

/// f16's unit roundoff, 2⁻¹¹.
const U16: f32 = 1.0 / 2048.0;

/// What f16 arithmetic adds to [`tolerance`] for one output: per K step of 4, the A values
/// (scaled into [-1, 1]) and the B values are each rounded to f16 (u each; B is exact for f16
/// weights but not for NF4's code·absmax), each product rounds once (u) and the three
/// additions err by at most 3u·Σ|a·b| over the step: 6u·Σ|a·b| in all, bounded by 8u here.
/// The f32 accumulation of the K/4 partial sums keeps the f32 bound. Values below f16's
/// normal range (6.1e-5 in the scaled domain) round by up to 2⁻²⁵ absolute instead: at most
/// 15 roundings per K step of 4 (4 A and 4 B conversions, 4 products, 3 sums), each of a
/// value at most max(1, |B|) = 1 here, times the scale s ≤ max|A|: 4·K·2⁻²⁵·max|A|.
/// A worst-case bound: on lavapipe the largest error of these cases is 10% of it.
pub(super) fn f16_excess(abs_sum: f32, k: usize, a_max: f32) -> f32 {
    8.0 * U16 * abs_sum + 4.0 * k as f32 * a_max / (1u64 << 25) as f32
}

/// Tolerance per output of the f16-math kernel: [`tolerance`] plus [`f16_excess`].
pub(super) fn tolerance_f16(abs_sum: &[f32], k: usize, a_max: f32) -> Vec<f32> {
    tolerance(abs_sum, k)
        .iter()
        .zip(abs_sum)
        .map(|(t, &s)| t + f16_excess(s, k, a_max))
        .collect()
}

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let gpu = cx.gpu;
    let mut out = Vec::new();
    for variant in variants(gpu, Math::F16) {
        for format in [Format::F16, Format::Nf4] {
            let kernel = name(variant, format, false);
            if !cx.wants(&kernel) {
                continue;
            }
            if !cx.f16() {
                out.push(KernelReport::skipped(kernel, super::NO_F16));
                continue;
            }
            let mut rep = KernelReport::new(kernel);
            every_transpose_and_epilogue(gpu, &mut rep, variant, format).await;
            if format == Format::Nf4 {
                tiny_and_large_activations(gpu, &mut rep, variant).await;
            }
            out.push(rep);
        }
    }
    out
}

/// Every shape of the f32 cases, both transposes of A and B, and two epilogues: alpha 0.5 ·
/// AB + C + bias, and a plain overwrite into a column block of a wider C (ldc = N + 5,
/// NaN-filled: beta 0 must not read it, and columns past N stay untouched).
async fn every_transpose_and_epilogue(
    gpu: &Gpu,
    rep: &mut KernelReport,
    variant: MatmulVariant,
    format: Format,
) {
    let mut rng = Rng::new(16);
    for &(m, n, k) in &SHAPES {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for epilogue in 0..2 {
                let a = rng.vec(m * k, 1.0);
                let (b, b_eff) = upload_weight(gpu, format, &rng.vec(k * n, 1.0));
                let bias = rng.vec(n, 1.0);
                let ldc = if epilogue == 0 { n } else { n + 5 };
                let c0 = if epilogue == 0 {
                    rng.vec(m * n, 1.0)
                } else {
                    vec![f32::NAN; m * ldc]
                };
                let (alpha, beta, with_bias) = if epilogue == 0 {
                    (0.5, 1.0, true)
                } else {
                    (1.0, 0.0, false)
                };
                // The reference on a dense (M,N) C, then placed at stride ldc.
                let mut dense = if epilogue == 0 {
                    c0.clone()
                } else {
                    vec![0.0; m * n]
                };
                let bias_ref = with_bias.then_some(&bias[..]);
                cpu::matmul::gemm(
                    &mut dense, &a, &b_eff, bias_ref, m, n, k, ta, tb, alpha, beta,
                );
                let abs = cpu::matmul::gemm_abs(&a, &b_eff, m, n, k, ta, tb);
                let mut tol_dense = tolerance_f16(&abs, k, abs_max(&a));
                if epilogue == 0 {
                    tol_dense
                        .iter_mut()
                        .zip(&c0)
                        .for_each(|(t, c)| *t += 2.0 * f32::EPSILON * (c.abs() + 1.0));
                }
                let (mut want, mut tol) = (c0.clone(), vec![0.0; c0.len()]);
                for i in 0..m {
                    for j in 0..n {
                        want[i * ldc + j] = dense[i * n + j];
                        tol[i * ldc + j] = tol_dense[i * n + j];
                    }
                }

                let c = gpu.upload_f32(&c0);
                let bias_t = gpu.upload_f32(&bias);
                let mut cmd = gpu.commands();
                let g = Gemm::new(m, n, k)
                    .trans_a(ta)
                    .trans_b(tb)
                    .alpha(alpha)
                    .accumulate(beta != 0.0)
                    .ldc(ldc);
                let bias_arg = with_bias.then_some(&bias_t);
                gemm(
                    &mut cmd,
                    &c,
                    &gpu.upload_f32(&a),
                    &b,
                    bias_arg,
                    g.variant(variant),
                );
                cmd.submit();
                // NaN matches NaN for the untouched columns past N.
                let got = rep.read(gpu, &c).await;
                rep.within(
                    &format!("{m}x{n}x{k} ta={ta} tb={tb} epilogue {epilogue}"),
                    &got,
                    &want,
                    &tol,
                );
            }
        }
    }
}

/// A values far outside f16's range (1e6: overflow) and far below its normal range (1e-9,
/// e.g. gradients scaled by 1/tokens: flushed or subnormal) keep their relative accuracy,
/// thanks to the per-row scaling before the conversion.
async fn tiny_and_large_activations(gpu: &Gpu, rep: &mut KernelReport, variant: MatmulVariant) {
    let (m, n, k) = (9, 8, 64);
    let mut rng = Rng::new(17);
    for scale in [1e6f32, 1e-9] {
        let a = rng.vec(m * k, scale);
        let (b, b_eff) = upload_weight(gpu, Format::Nf4, &rng.vec(k * n, 0.2));
        let mut want = vec![0.0; m * n];
        cpu::matmul::gemm(&mut want, &a, &b_eff, None, m, n, k, false, true, 1.0, 0.0);
        let abs = cpu::matmul::gemm_abs(&a, &b_eff, m, n, k, false, true);
        let tol = tolerance_f16(&abs, k, abs_max(&a));
        let c = gpu.tensor(m * n);
        let mut cmd = gpu.commands();
        let g = Gemm::new(m, n, k).trans_b(true);
        gemm(
            &mut cmd,
            &c,
            &gpu.upload_f32(&a),
            &b,
            None,
            g.variant(variant),
        );
        cmd.submit();
        let got = rep.read(gpu, &c).await;
        rep.within(&format!("A scale {scale}"), &got, &want, &tol);
    }
}
