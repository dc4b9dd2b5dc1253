use crate::common::{Rng, assert_within, read_f32};
use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::matmul::{Gemm, MatmulVariant, Weight, gemm};
use wgtune::{cpu, kernels, nf4};

/// Odd shapes: nothing is a multiple of the 64×32 tile or the 8×4 register block. The last
/// ones have dimensions that are multiples of 4 but not of the tile, so that the fast path
/// (4-aligned runs) meets edge blocks and K tails: which of M, N, K is aligned varies.
/// (67, 131, 37) is all primes; (128, 128, 32) fills the tiled kernel's 64×64 tiles exactly.
pub(crate) const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (3, 17, 5),
    (17, 50, 33),
    (33, 3, 129),
    (64, 96, 288),
    (2, 50257, 3),
    (65, 132, 68),
    (12, 20, 36),
    (130, 17, 64),
    (36, 68, 130),
    (67, 131, 37),
    (128, 128, 32),
];

/// Tolerance per output: the f32 accumulation over K terms can err by about K·2⁻²⁴ times
/// Σ|a·b| (the CPU reference accumulates in f64); we allow 4·K·2⁻²⁴·Σ|a·b| + 1e-6.
pub(crate) fn tolerance(abs_sum: &[f32], k: usize) -> Vec<f32> {
    abs_sum
        .iter()
        .map(|s| 4.0 * k as f32 * f32::EPSILON / 2.0 * s + 1e-6)
        .collect()
}

const VARIANTS: [MatmulVariant; 2] = [MatmulVariant::REGISTER, MatmulVariant::TILED];

/// Epilogues: (alpha, beta, with bias, extra columns of C beyond N, i.e. ldc = N + extra).
const EPILOGUES: [(f32, f32, bool, usize); 4] = [
    (0.5, 1.0, true, 0),
    (1.0, 0.0, false, 0),
    (-1.5, 1.0, false, 3),
    (1.0, 0.0, true, 1),
];

gpu_test!(
    gemm_f32_matches_cpu_for_every_transpose_and_epilogue,
    check_gemm_f32_matches_cpu_for_every_transpose_and_epilogue
);
/// Both kernels (register and tiled), every transpose, alpha/beta/bias/ldc combination.
/// With ldc > N, the columns of C beyond N must keep their values.
async fn check_gemm_f32_matches_cpu_for_every_transpose_and_epilogue(gpu: &Gpu) {
    let mut rng = Rng::new(6);
    for variant in VARIANTS {
        for &(m, n, k) in &SHAPES {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for (e, &(alpha, beta, with_bias, extra)) in EPILOGUES.iter().enumerate() {
                    // The widest shape only once per transpose: it is slow on lavapipe.
                    if n > 1000 && e > 0 {
                        continue;
                    }
                    check_one_gemm(
                        gpu,
                        &mut rng,
                        variant,
                        (m, n, k),
                        (ta, tb),
                        alpha,
                        beta,
                        with_bias,
                        extra,
                    )
                    .await;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn check_one_gemm(
    gpu: &Gpu,
    rng: &mut Rng,
    variant: MatmulVariant,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    alpha: f32,
    beta: f32,
    with_bias: bool,
    extra: usize,
) {
    let ldc = n + extra;
    let a = rng.vec(m * k, 1.0);
    let b = rng.vec(k * n, 1.0);
    let bias = rng.vec(n, 1.0);
    let c0 = rng.vec(m * ldc, 1.0); // (M, ldc)
    let c0_block: Vec<f32> = c0.chunks(ldc).flat_map(|r| r[..n].to_vec()).collect(); // (M,N)
    let mut block = c0_block.clone();
    let bias_ref = with_bias.then_some(&bias[..]);
    cpu::matmul::gemm(&mut block, &a, &b, bias_ref, m, n, k, ta, tb, alpha, beta);
    let mut want = c0.clone();
    for (row, r) in want.chunks_mut(ldc).zip(block.chunks(n)) {
        row[..n].copy_from_slice(r);
    }

    let c = gpu.upload_f32(&c0);
    let bias_t = gpu.upload_f32(&bias);
    let mut cmd = gpu.commands();
    let g = Gemm::new(m, n, k)
        .trans_a(ta)
        .trans_b(tb)
        .alpha(alpha)
        .accumulate(beta != 0.0)
        .ldc(ldc)
        .variant(variant);
    gemm(
        &mut cmd,
        &c,
        &gpu.upload_f32(&a),
        &Weight::F32(gpu.upload_f32(&b)),
        with_bias.then_some(&bias_t),
        g,
    );
    cmd.submit();
    let abs = cpu::matmul::gemm_abs(&a, &b, m, n, k, ta, tb);
    let mut tol = vec![0.0; m * ldc];
    for (i, t) in tol.iter_mut().enumerate() {
        let (row, col) = (i / ldc, i % ldc);
        *t = if col < n {
            alpha.abs() * tolerance(&abs[row * n + col..][..1], k)[0]
                + 2.0 * f32::EPSILON * (c0[i].abs() + bias[col].abs() + 1.0)
        } else {
            0.0 // untouched
        };
    }
    assert_within(
        &format!(
            "{variant:?} gemm {m}x{n}x{k} ta={ta} tb={tb} alpha={alpha} beta={beta} bias={with_bias} ldc={ldc}"
        ),
        &read_f32(gpu, &c).await,
        &want,
        &tol,
    );
}

gpu_test!(
    gemm_overwrite_ignores_nan_in_output,
    check_gemm_overwrite_ignores_nan_in_output
);
/// beta = 0 must ignore whatever the output buffer held (pooled buffers hold garbage).
async fn check_gemm_overwrite_ignores_nan_in_output(gpu: &Gpu) {
    let (m, n, k) = (5, 7, 3);
    let mut rng = Rng::new(7);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let mut want = vec![0.0; m * n];
    cpu::matmul::gemm(&mut want, &a, &b, None, m, n, k, false, false, 1.0, 0.0);
    let tol = tolerance(&cpu::matmul::gemm_abs(&a, &b, m, n, k, false, false), k);
    for variant in [
        None,
        Some(MatmulVariant::REGISTER),
        Some(MatmulVariant::TILED),
    ] {
        let c = gpu.upload_f32(&vec![f32::NAN; m * n]);
        let (a_t, b_w) = (gpu.upload_f32(&a), Weight::F32(gpu.upload_f32(&b)));
        let mut cmd = gpu.commands();
        match variant {
            // The device's own choice (its tuning).
            None => gemm(&mut cmd, &c, &a_t, &b_w, None, Gemm::new(m, n, k)),
            Some(v) => gemm(
                &mut cmd,
                &c,
                &a_t,
                &b_w,
                None,
                Gemm::new(m, n, k).variant(v),
            ),
        }
        cmd.submit();
        let name = format!("{variant:?} gemm beta=0");
        assert_within(&name, &read_f32(gpu, &c).await, &want, &tol);
    }
}

gpu_test!(
    linear_forward_and_backward_match_cpu_for_each_weight_format,
    check_linear_forward_and_backward_match_cpu_for_each_weight_format
);
/// Linear layers over f32, f16 and NF4 weights, forward and input-gradient, against the CPU
/// gemm over the same weights dequantized on the CPU (so only the matmul is under test).
async fn check_linear_forward_and_backward_match_cpu_for_each_weight_format(gpu: &Gpu) {
    let mut rng = Rng::new(8);
    // (M, in, out): in not a multiple of 64 makes NF4 blocks straddle rows.
    for &(m, k_in, n_out) in &[
        (1, 3, 5),
        (7, 17, 50),
        (9, 96, 288),
        (4, 64, 64),
        (3, 130, 33),
        // 4-aligned runs (the fast path) with NF4 blocks straddling rows, and edge blocks.
        (9, 36, 68),
        (66, 132, 20),
    ] {
        let w = rng.vec(k_in * n_out, 0.2); // Conv1D [in, out]
        let bias = rng.vec(n_out, 0.1);
        let x = rng.vec(m * k_in, 1.0);
        let dy = rng.vec(m * n_out, 1.0);
        let dx0 = rng.vec(m * k_in, 1.0);
        for format in ["f32", "f16", "nf4"] {
            let (weight, w_eff) = match format {
                "f32" => (Weight::F32(gpu.upload_f32(&w)), w.clone()),
                "f16" => {
                    let h: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
                    let back = h.iter().map(|v| v.to_f32()).collect();
                    (
                        Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h))),
                        back,
                    )
                }
                _ => {
                    let q = nf4::quantize_conv1d(&w, k_in, n_out);
                    let back = q.dequantize_conv1d(k_in, n_out);
                    (kernels::nf4::upload(gpu, &q), back)
                }
            };
            let mut want_y = vec![0.0; m * n_out];
            cpu::matmul::gemm(
                &mut want_y,
                &x,
                &w_eff,
                Some(&bias),
                m,
                n_out,
                k_in,
                false,
                false,
                1.0,
                0.0,
            );
            let mut want_dx = dx0.clone();
            cpu::matmul::gemm(
                &mut want_dx,
                &dy,
                &w_eff,
                None,
                m,
                k_in,
                n_out,
                false,
                true,
                1.0,
                1.0,
            );

            for variant in VARIANTS {
                let (y, dx) = (gpu.tensor(m * n_out), gpu.upload_f32(&dx0));
                let mut cmd = gpu.commands();
                // linear_forward / linear_backward_input's gemms, with the kernel chosen here.
                let fwd = Gemm::new(m, n_out, k_in).trans_b(weight.is_linear_layout());
                let bias_t = gpu.upload_f32(&bias);
                let (x_t, dy_t) = (gpu.upload_f32(&x), gpu.upload_f32(&dy));
                gemm(
                    &mut cmd,
                    &y,
                    &x_t,
                    &weight,
                    Some(&bias_t),
                    fwd.variant(variant),
                );
                let bwd = Gemm::new(m, k_in, n_out)
                    .trans_b(!weight.is_linear_layout())
                    .accumulate(true);
                gemm(&mut cmd, &dx, &dy_t, &weight, None, bwd.variant(variant));
                cmd.submit();

                let mut tol = tolerance(
                    &cpu::matmul::gemm_abs(&x, &w_eff, m, n_out, k_in, false, false),
                    k_in,
                );
                tol.iter_mut().for_each(|t| *t += 1e-6);
                assert_within(
                    &format!("{variant:?} {format} forward {m}x{k_in}x{n_out}"),
                    &read_f32(gpu, &y).await,
                    &want_y,
                    &tol,
                );
                let mut tol = tolerance(
                    &cpu::matmul::gemm_abs(&dy, &w_eff, m, k_in, n_out, false, true),
                    n_out,
                );
                tol.iter_mut()
                    .zip(&dx0)
                    .for_each(|(t, c)| *t += 2.0 * f32::EPSILON * (c.abs() + 1.0));
                assert_within(
                    &format!("{variant:?} {format} backward {m}x{k_in}x{n_out}"),
                    &read_f32(gpu, &dx).await,
                    &want_dx,
                    &tol,
                );
            }
        }
    }
}
