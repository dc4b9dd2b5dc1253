//! The matmul's low-rank epilogue (`Gemm::low_rank` with `gemm` and `gemv`: `C = alpha·op(A)·op(B) +
//! beta·C + bias + scale·U·Lᵀ`, LoRA's up-projection fused into the base layer) against the
//! CPU reference of the unfused computation: the base gemm, then a separate `scale·U·Lᵀ`.

use crate::common::{Rng, assert_within, has_feature, read_f32};
use crate::gpu_test;
use crate::matmul::tolerance;
use crate::matmul_f16::{tolerance_f16, weight};
use wgtune::gpu::{Gpu, Tensor};
use wgtune::kernels::gemv::{GEMV_MAX_ROWS, gemv};
use wgtune::kernels::lora::{LoraDims, lora_linear_forward};
use wgtune::kernels::matmul::{Gemm, LowRank, Math, MatmulVariant, Weight, gemm};
use wgtune::{cpu, kernels, nf4};

/// (M, K, N) of a LoRA-adapted layer: none a multiple of the 8×4 register block, the 64×64
/// tile or gemv's 16 columns, except where a dimension is 4-aligned so that the fast paths
/// meet edge blocks; M ≤ 4 also runs gemv.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 3, 5),
    (3, 17, 50),
    (4, 36, 68),
    (7, 36, 68),
    (17, 50, 33),
    (65, 132, 68),
    (67, 131, 37),
    (36, 64, 129),
];

const RANKS: [usize; 4] = [1, 3, 8, 64];

/// (alpha, accumulate into C, bias, extra columns of C beyond N): a base layer, a residual
/// layer (`x += proj(h)`), and a scaled product into a column block of a wider C.
const EPILOGUES: [(f32, bool, bool, usize); 3] = [
    (1.0, false, true, 0),
    (1.0, true, false, 0),
    (0.5, true, true, 3),
];

/// Which kernel runs a case.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    Gemm(MatmulVariant),
    Gemv,
}

gpu_test!(
    low_rank_epilogue_matches_base_plus_separate_lora,
    check_low_rank_epilogue
);
/// Every kernel (register with f32 and, where the device has shader-f16, f16 math; tiled;
/// gemv for M ≤ 4), f32 / f16 / NF4 weights, ranks 1, 3, 8 and 64, three epilogues.
async fn check_low_rank_epilogue(gpu: &Gpu) {
    let f16 = has_feature(
        gpu,
        wgpu::Features::SHADER_F16,
        "low-rank epilogue, f16 math",
    );
    let mut rng = Rng::new(71);
    for &(m, k, n) in &SHAPES {
        for &r in &RANKS {
            // (format, B stored transposed): Conv1D [K,N] for f32 / f16, nn.Linear [N,K]
            // for NF4 (as the model stores them), and f32 transposed too.
            for (format, tb) in [("f32", false), ("f32", true), ("f16", false), ("nf4", true)] {
                let a = rng.vec(m * k, 1.0);
                let w = rng.vec(k * n, 0.5);
                let (b, b_eff) = if format == "f32" {
                    (Weight::F32(gpu.upload_f32(&w)), w.clone())
                } else {
                    weight(gpu, format, &w)
                };
                let u = rng.vec(m * r, 1.0);
                let l = rng.vec(n * r, 0.5);
                let scale = 2.0 / r as f32;
                let bias = rng.vec(n, 1.0);
                let mut kernels = vec![
                    Kernel::Gemm(MatmulVariant::REGISTER),
                    Kernel::Gemm(MatmulVariant::TILED),
                ];
                if f16 && format != "f32" {
                    kernels.push(Kernel::Gemm(MatmulVariant::Register(Math::F16)));
                    kernels.push(Kernel::Gemm(MatmulVariant::Tiled(
                        Math::F16,
                        wgtune::kernels::matmul::Tile::DEFAULT,
                    )));
                }
                if m <= GEMV_MAX_ROWS {
                    kernels.push(Kernel::Gemv);
                }
                let ops = Operands {
                    a: gpu.upload_f32(&a),
                    b,
                    u: gpu.upload_f32(&u),
                    l: gpu.upload_f32(&l),
                    bias: gpu.upload_f32(&bias),
                };
                let abs = cpu::matmul::gemm_abs(&a, &b_eff, m, n, k, false, tb);
                let abs_lr = cpu::matmul::gemm_abs(&u, &l, m, n, r, false, true);
                let a_max = a.iter().fold(0.0f32, |x, v| x.max(v.abs()));
                for &(alpha, acc, with_bias, extra) in &EPILOGUES {
                    let ldc = n + extra;
                    let c0 = rng.vec(m * ldc, 1.0);
                    // The unfused reference: base gemm into the (M,N) block, then the LoRA term.
                    let mut block: Vec<f32> =
                        c0.chunks(ldc).flat_map(|c| c[..n].to_vec()).collect();
                    let beta = if acc { 1.0 } else { 0.0 };
                    let bias_ref = with_bias.then_some(&bias[..]);
                    cpu::matmul::gemm(
                        &mut block, &a, &b_eff, bias_ref, m, n, k, false, tb, alpha, beta,
                    );
                    cpu::matmul::add_low_rank(&mut block, &u, &l, m, n, r, scale);
                    let g = Gemm::new(m, n, k)
                        .trans_b(tb)
                        .alpha(alpha)
                        .accumulate(acc)
                        .ldc(ldc);
                    for &kernel in &kernels {
                        let f16_math = matches!(
                            kernel,
                            Kernel::Gemm(
                                MatmulVariant::Register(Math::F16)
                                    | MatmulVariant::Tiled(
                                        Math::F16,
                                        wgtune::kernels::matmul::Tile::DEFAULT
                                    )
                            )
                        );
                        let base_tol = if f16_math {
                            tolerance_f16(&abs, k, a_max)
                        } else {
                            tolerance(&abs, k)
                        };
                        let lr_tol = tolerance(&abs_lr, r);
                        let (mut want, mut tol) = (c0.clone(), vec![0.0; m * ldc]);
                        for i in 0..m {
                            for (j, bias_j) in bias.iter().enumerate() {
                                let (o, e) = (i * ldc + j, i * n + j);
                                want[o] = block[e];
                                // Each part's accumulation bound, plus the roundings of the
                                // sums of alpha·AB, the low-rank term, beta·C and the bias.
                                let parts = alpha.abs() * abs[e]
                                    + scale * abs_lr[e]
                                    + beta * c0[o].abs()
                                    + if with_bias { bias_j.abs() } else { 0.0 };
                                tol[o] = alpha.abs() * base_tol[e]
                                    + scale * lr_tol[e]
                                    + 4.0 * f32::EPSILON * (parts + 1.0);
                            }
                        }
                        let c = gpu.upload_f32(&c0);
                        let bias_t = with_bias.then_some(&ops.bias);
                        let low_rank = LowRank {
                            u: &ops.u,
                            l: &ops.l,
                            rank: r,
                            scale,
                        };
                        let mut cmd = gpu.commands();
                        let g = g.low_rank(low_rank);
                        match kernel {
                            Kernel::Gemm(v) => {
                                gemm(&mut cmd, &c, &ops.a, &ops.b, bias_t, g.variant(v))
                            }
                            Kernel::Gemv => gemv(&mut cmd, &c, &ops.a, &ops.b, bias_t, g),
                        }
                        cmd.submit();
                        assert_within(
                            &format!(
                                "{kernel:?} {format} tb={tb} low-rank {m}x{n}x{k} r={r} alpha={alpha} acc={acc} bias={with_bias} ldc={ldc}"
                            ),
                            &read_f32(gpu, &c).await,
                            &want,
                            &tol,
                        );
                    }
                }
            }
        }
    }
}

/// One case's GPU operands.
struct Operands {
    a: Tensor,
    b: Weight,
    u: Tensor,
    l: Tensor,
    bias: Tensor,
}

gpu_test!(
    lora_linear_forward_matches_base_plus_cpu_lora,
    check_lora_linear_forward
);
/// A LoRA-adapted layer as the model runs it (`lora_linear_forward`: the kernel and the fused
/// or separate up-projection that the device's tuning picks), NF4 and f32 base weights, with
/// and without dropout, overwriting y and accumulating into it: y and the saved u against the
/// CPU base gemm plus `cpu::lora::lora_forward`.
async fn check_lora_linear_forward(gpu: &Gpu) {
    let mut rng = Rng::new(72);
    for &(m, k, n, r, p_drop, acc) in &[
        (1, 36, 68, 8, 0.0f32, false),
        (3, 17, 50, 1, 0.0, true),
        (9, 96, 288, 8, 0.05, false),
        (20, 64, 40, 64, 0.1, true),
        (33, 40, 36, 3, 0.0, true),
    ] {
        for format in ["f32", "nf4"] {
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(k * n, 0.2); // Conv1D [in, out]
            let (weight, w_eff) = if format == "f32" {
                (Weight::F32(gpu.upload_f32(&w)), w.clone())
            } else {
                let q = nf4::quantize_conv1d(&w, k, n);
                (kernels::nf4::upload(gpu, &q), q.dequantize_conv1d(k, n))
            };
            let bias = rng.vec(n, 0.1);
            let a = rng.vec(r * k, 0.3);
            let b = rng.vec(n * r, 0.3);
            let y0 = rng.vec(m * n, 1.0);
            let (scale, seed) = (16.0 / r as f32, 5);

            let mut want_y = y0.clone();
            let beta = if acc { 1.0 } else { 0.0 };
            cpu::matmul::gemm(
                &mut want_y,
                &x,
                &w_eff,
                Some(&bias),
                m,
                n,
                k,
                false,
                false,
                1.0,
                beta,
            );
            let want_u =
                cpu::lora::lora_forward(&mut want_y, &x, &a, &b, m, k, n, r, scale, p_drop, seed);

            let d = LoraDims {
                m,
                k_in: k,
                n_out: n,
                rank: r,
                scale,
                p_drop,
                seed,
            };
            let (y, u, h) = (gpu.upload_f32(&y0), gpu.tensor(m * r), gpu.tensor(m * k));
            let (gx, ga, gb) = (gpu.upload_f32(&x), gpu.upload_f32(&a), gpu.upload_f32(&b));
            let bias_t = gpu.upload_f32(&bias);
            let mut cmd = gpu.commands();
            lora_linear_forward(
                &mut cmd,
                &y,
                &u,
                &h,
                &gx,
                &weight,
                Some(&bias_t),
                &ga,
                &gb,
                &d,
                acc,
            );
            cmd.submit();
            // Sums of up to 288 order-1 terms, as in tests/kernels/lora.rs.
            let name = format!("lora_linear_forward {format} m={m} k={k} n={n} r={r} p={p_drop}");
            crate::common::assert_close(
                &format!("{name} y"),
                &read_f32(gpu, &y).await,
                &want_y,
                2e-5,
                1e-4,
            );
            crate::common::assert_close(
                &format!("{name} u"),
                &read_f32(gpu, &u).await,
                &want_u,
                2e-5,
                1e-4,
            );
        }
    }
}
