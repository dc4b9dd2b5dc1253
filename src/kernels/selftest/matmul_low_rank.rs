//! The matmul's low-rank epilogue (`Gemm::low_rank` with `gemm` and `gemv`: `C =
//! alpha·op(A)·op(B) + beta·C + bias + scale·U·Lᵀ`, LoRA's up-projection fused into the base
//! layer) against the CPU reference of the unfused computation: the base gemm, then a
//! separate `scale·U·Lᵀ`; and a LoRA layer as the model runs it (`lora_linear_forward`).

use super::matmul::{name, tolerance, variants};
use super::matmul_f16::tolerance_f16;
use super::{Ctx, Format, KernelReport, Rng, abs_max, upload_weight};
use crate::cpu;
use crate::gpu::Gpu;
use crate::kernels::autotune::Candidate;
use crate::kernels::gemv::{GEMV_MAX_ROWS, gemv};
use crate::kernels::lora::{LoraDims, lora_linear_forward};
use crate::kernels::matmul::{Gemm, LowRank, Math, Weight, gemm};

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

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let gpu = cx.gpu;
    let mut kernels: Vec<(Candidate, Format, String)> = Vec::new();
    for math in [Math::F32, Math::F16] {
        for v in variants(gpu, math) {
            for format in [Format::F32, Format::F16, Format::Nf4] {
                // f32 weights ignore f16 math.
                if math == Math::F16 && format == Format::F32 {
                    continue;
                }
                kernels.push((Candidate::Matmul(v), format, name(v, format, true)));
            }
        }
    }
    for format in [Format::F32, Format::F16, Format::Nf4] {
        let kernel = format!("gemv {} weights low-rank", format.name());
        kernels.push((Candidate::Gemv, format, kernel));
    }
    let mut out = Vec::new();
    for (kernel, format, kernel_name) in kernels {
        if !cx.wants(&kernel_name) {
            continue;
        }
        if matches!(kernel, Candidate::Matmul(v) if v.math() == Math::F16) && !cx.f16() {
            out.push(KernelReport::skipped(kernel_name, super::NO_F16));
            continue;
        }
        let mut rep = KernelReport::new(kernel_name);
        epilogue_matches_base_plus_separate_lora(gpu, &mut rep, kernel, format).await;
        out.push(rep);
    }
    let kernel = "lora linear forward (the device's kernels)";
    if cx.wants(kernel) {
        if super::device_choice_is_f32(gpu) {
            let mut rep = KernelReport::new(kernel);
            lora_linear_forward_matches_base_plus_cpu_lora(gpu, &mut rep).await;
            out.push(rep);
        } else {
            out.push(KernelReport::skipped(kernel, super::CHOICE_F16));
        }
    }
    out
}

/// `kernel` over `format` weights (Conv1D [K,N] for f32 / f16, nn.Linear [N,K] for NF4, as
/// the model stores them, and f32 transposed too), ranks 1, 3, 8 and 64, three epilogues.
async fn epilogue_matches_base_plus_separate_lora(
    gpu: &Gpu,
    rep: &mut KernelReport,
    kernel: Candidate,
    format: Format,
) {
    let mut rng = Rng::new(71);
    let f16_math = matches!(kernel, Candidate::Matmul(v) if v.math() == Math::F16);
    let transposes: &[bool] = match format {
        Format::F32 => &[false, true],
        Format::F16 => &[false],
        Format::Nf4 => &[true],
    };
    for &(m, k, n) in &SHAPES {
        if kernel == Candidate::Gemv && m > GEMV_MAX_ROWS {
            continue;
        }
        for &r in &RANKS {
            for &tb in transposes {
                let a = rng.vec(m * k, 1.0);
                let w = rng.vec(k * n, 0.5);
                let (b, b_eff) = upload_weight(gpu, format, &w);
                let u = rng.vec(m * r, 1.0);
                let l = rng.vec(n * r, 0.5);
                let scale = 2.0 / r as f32;
                let bias = rng.vec(n, 1.0);
                let (a_t, u_t, l_t) = (gpu.upload_f32(&a), gpu.upload_f32(&u), gpu.upload_f32(&l));
                let bias_t = gpu.upload_f32(&bias);
                let abs = cpu::matmul::gemm_abs(&a, &b_eff, m, n, k, false, tb);
                let abs_lr = cpu::matmul::gemm_abs(&u, &l, m, n, r, false, true);
                let base_tol = if f16_math {
                    tolerance_f16(&abs, k, abs_max(&a))
                } else {
                    tolerance(&abs, k)
                };
                let lr_tol = tolerance(&abs_lr, r);
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
                    let g = Gemm::new(m, n, k)
                        .trans_b(tb)
                        .alpha(alpha)
                        .accumulate(acc)
                        .ldc(ldc)
                        .low_rank(LowRank {
                            u: &u_t,
                            l: &l_t,
                            rank: r,
                            scale,
                        });
                    let c = gpu.upload_f32(&c0);
                    let bias_arg = with_bias.then_some(&bias_t);
                    let mut cmd = gpu.commands();
                    match kernel {
                        Candidate::Matmul(v) => {
                            gemm(&mut cmd, &c, &a_t, &b, bias_arg, g.variant(v));
                        }
                        Candidate::Gemv => gemv(&mut cmd, &c, &a_t, &b, bias_arg, g),
                    }
                    cmd.submit();
                    let got = rep.read(gpu, &c).await;
                    rep.within(
                        &format!(
                            "tb={tb} {m}x{n}x{k} r={r} alpha={alpha} acc={acc} bias={with_bias} ldc={ldc}"
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

/// A LoRA-adapted layer as the model runs it (`lora_linear_forward`: the kernel and the fused
/// or separate up-projection that the device's tuning picks), NF4 and f32 base weights, with
/// and without dropout, overwriting y and accumulating into it: y and the saved u against the
/// CPU base gemm plus `cpu::lora::lora_forward`.
async fn lora_linear_forward_matches_base_plus_cpu_lora(gpu: &Gpu, rep: &mut KernelReport) {
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
                let q = crate::nf4::quantize_conv1d(&w, k, n);
                (
                    crate::kernels::nf4::upload(gpu, &q),
                    q.dequantize_conv1d(k, n),
                )
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
            // Sums of up to 288 order-1 terms, as in the LoRA family.
            let name = format!("{format} m={m} k={k} n={n} r={r} p={p_drop}");
            let got = rep.read(gpu, &y).await;
            rep.close(&format!("{name} y"), &got, &want_y, 2e-5, 1e-4);
            let got = rep.read(gpu, &u).await;
            rep.close(&format!("{name} u"), &got, &want_u, 2e-5, 1e-4);
        }
    }
}
