//! The matmuls (register and tiled kernels) with f16 arithmetic (`Math::F16`,
//! `shaders/matmul_math_f16.wgsl`) for f16 and NF4 weights, against the f64 CPU reference over the same (dequantized) weights.

use crate::common::{Rng, assert_within, has_feature, read_f32};
use crate::gpu_test;
use crate::matmul::{SHAPES, tolerance};
use wgtune::gpu::Gpu;
use wgtune::kernels::matmul::{Gemm, Math, MatmulVariant, Weight, gemm};
use wgtune::{cpu, kernels, nf4};

/// Both matmul kernels with f16 arithmetic (same block arithmetic, same tolerance).
const F16_VARIANTS: [MatmulVariant; 2] = [
    MatmulVariant::Register(Math::F16),
    MatmulVariant::Tiled(Math::F16, wgtune::kernels::matmul::Tile::DEFAULT),
];

/// f16's unit roundoff, 2⁻¹¹.
const U16: f32 = 1.0 / 2048.0;

/// Tolerance per output of the f16-math kernel. Per K step of 4, the A values (scaled into
/// [-1, 1]) and the B values are each rounded to f16 (u each; B is exact for f16 weights but
/// not for NF4's code·absmax), each product rounds once (u) and the three additions err by at
/// most 3u·Σ|a·b| over the step: 6u·Σ|a·b| in all, bounded by 8u here. The f32 accumulation
/// of the K/4 partial sums keeps the f32 bound ([`tolerance`]). Values below f16's normal
/// range (6.1e-5 in the scaled domain) round by up to 2⁻²⁵ absolute instead: at most 15
/// roundings per K step of 4 (4 A and 4 B conversions, 4 products, 3 sums), each of a value
/// at most max(1, |B|) = 1 here, times the scale s ≤ max|A|: 4·K·2⁻²⁵·max|A|.
/// A worst-case bound: on lavapipe the largest error of these cases is 10% of it.
pub(crate) fn tolerance_f16(abs_sum: &[f32], k: usize, a_max: f32) -> Vec<f32> {
    tolerance(abs_sum, k)
        .iter()
        .zip(abs_sum)
        .map(|(t, s)| t + 8.0 * U16 * s + 4.0 * k as f32 * a_max / (1u64 << 25) as f32)
        .collect()
}

/// `w` (row-major storage of B) as an f16 or NF4 weight, and the values the GPU sees.
pub(crate) fn weight(gpu: &Gpu, format: &str, w: &[f32]) -> (Weight, Vec<f32>) {
    if format == "f16" {
        let h: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let back = h.iter().map(|v| v.to_f32()).collect();
        (
            Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h))),
            back,
        )
    } else {
        let q = nf4::quantize(w);
        (kernels::nf4::upload(gpu, &q), q.dequantize())
    }
}

gpu_test!(
    gemm_f16_math_matches_cpu_for_every_transpose_and_epilogue,
    check_gemm_f16_math
);
/// Every shape of the f32 test, both transposes of A and B, f16 and NF4 weights, and two
/// epilogues: alpha 0.5 · AB + C + bias, and a plain overwrite into a column block of a wider C
/// (ldc = N + 5, NaN-filled: beta 0 must not read it, and columns past N stay untouched).
async fn check_gemm_f16_math(gpu: &Gpu) {
    if !has_feature(gpu, wgpu::Features::SHADER_F16, "the f16-math matmul") {
        return;
    }
    let mut rng = Rng::new(16);
    for &(m, n, k) in &SHAPES {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for format in ["f16", "nf4"] {
                for epilogue in 0..2 {
                    let a = rng.vec(m * k, 1.0);
                    let (b, b_eff) = weight(gpu, format, &rng.vec(k * n, 1.0));
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
                    let a_max = a.iter().fold(0.0f32, |x, v| x.max(v.abs()));
                    let mut tol_dense = tolerance_f16(&abs, k, a_max);
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

                    for variant in F16_VARIANTS {
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
                        let got = read_f32(gpu, &c).await;
                        // NaN == NaN for the untouched columns past N.
                        let (got, want): (Vec<f32>, Vec<f32>) = got
                            .iter()
                            .zip(&want)
                            .map(|(&g, &w)| {
                                if g.is_nan() && w.is_nan() {
                                    (0.0, 0.0)
                                } else {
                                    (g, w)
                                }
                            })
                            .unzip();
                        assert_within(
                            &format!(
                                "f16-math {variant:?} {format} gemm {m}x{n}x{k} ta={ta} tb={tb} epilogue {epilogue}"
                            ),
                            &got,
                            &want,
                            &tol,
                        );
                    }
                }
            }
        }
    }
}

gpu_test!(
    gemm_f16_math_keeps_tiny_and_large_activations,
    check_gemm_f16_math_range
);
/// A values far outside f16's range (1e6: overflow) and far below its normal range (1e-9,
/// e.g. gradients scaled by 1/tokens: flushed or subnormal) keep their relative accuracy,
/// thanks to the per-row scaling before the conversion.
async fn check_gemm_f16_math_range(gpu: &Gpu) {
    if !has_feature(gpu, wgpu::Features::SHADER_F16, "the f16-math matmul") {
        return;
    }
    let (m, n, k) = (9, 8, 64);
    let mut rng = Rng::new(17);
    for scale in [1e6f32, 1e-9] {
        let a = rng.vec(m * k, scale);
        let (b, b_eff) = weight(gpu, "nf4", &rng.vec(k * n, 0.2));
        let mut want = vec![0.0; m * n];
        cpu::matmul::gemm(&mut want, &a, &b_eff, None, m, n, k, false, true, 1.0, 0.0);
        let abs = cpu::matmul::gemm_abs(&a, &b_eff, m, n, k, false, true);
        let a_max = a.iter().fold(0.0f32, |x, v| x.max(v.abs()));
        let tol = tolerance_f16(&abs, k, a_max);
        for variant in F16_VARIANTS {
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
            assert_within(
                &format!("f16-math {variant:?} A scale {scale}"),
                &read_f32(gpu, &c).await,
                &want,
                &tol,
            );
        }
    }
}
