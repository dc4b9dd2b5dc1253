//! The matrix-vector kernel (`shaders/gemv.wgsl`, C with at most 4 rows) against the CPU gemm,
//! for every weight format, transpose and epilogue, and through `gemm`'s routing.

use crate::common::{Rng, assert_within, read_f32};
use crate::gpu_test;
use wgtune::gpu::{Gpu, Tensor};
use wgtune::kernels::gemv::gemv;
use wgtune::kernels::matmul::{Gemm, Weight, gemm};
use wgtune::{cpu, kernels, nf4};

/// (M, N, K): M = 1, 2, 3, 4; N and K odd, or multiples of 4 but not of the 16-column
/// workgroup or the 64-value K stride (fast path with edge groups and K tails), and a
/// decode-like layer (768 → 20 columns of width 4·16+4).
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (1, 5, 3),
    (2, 37, 19),
    (3, 50, 133),
    (1, 68, 36),
    (3, 20, 132),
    (4, 17, 64),
    (2, 36, 70),
    (1, 84, 768),
];

/// (alpha, beta, with bias, extra columns of C beyond N, i.e. ldc = N + extra).
const EPILOGUES: [(f32, f32, bool, usize); 3] = [
    (1.0, 0.0, false, 0),
    (0.5, 1.0, true, 3),
    (-1.5, 1.0, false, 1),
];

/// B (row-major flat, `[K,N]` or `[N,K]`) uploaded in `format`, with the values the GPU sees.
fn upload_weight(gpu: &Gpu, b: &[f32], format: &str) -> (Weight, Vec<f32>) {
    match format {
        "f32" => (Weight::F32(gpu.upload_f32(b)), b.to_vec()),
        "f16" => {
            let h: Vec<half::f16> = b.iter().map(|&v| half::f16::from_f32(v)).collect();
            let back = h.iter().map(|v| v.to_f32()).collect();
            (
                Weight::F16(gpu.upload_bytes(bytemuck::cast_slice(&h))),
                back,
            )
        }
        _ => {
            let q = nf4::quantize(b);
            let back = q.dequantize();
            (kernels::nf4::upload(gpu, &q), back)
        }
    }
}

gpu_test!(
    gemv_matches_cpu_for_every_format_transpose_and_epilogue,
    check_gemv_matches_cpu_for_every_format_transpose_and_epilogue
);
/// gemv directly and through gemm (which routes M <= 4 here), on f32, f16 and NF4 weights.
/// With ldc > N, the columns of C beyond N must keep their values.
async fn check_gemv_matches_cpu_for_every_format_transpose_and_epilogue(gpu: &Gpu) {
    let mut rng = Rng::new(11);
    for &(m, n, k) in &SHAPES {
        for format in ["f32", "f16", "nf4"] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for &(alpha, beta, with_bias, extra) in &EPILOGUES {
                    let ldc = n + extra;
                    let a = rng.vec(m * k, 1.0);
                    let (b_w, b) = upload_weight(gpu, &rng.vec(k * n, 1.0), format);
                    let bias = rng.vec(n, 1.0);
                    let c0 = rng.vec(m * ldc, 1.0); // (M, ldc)
                    let mut block: Vec<f32> =
                        c0.chunks(ldc).flat_map(|r| r[..n].to_vec()).collect(); // (M,N)
                    let bias_ref = with_bias.then_some(&bias[..]);
                    cpu::matmul::gemm(&mut block, &a, &b, bias_ref, m, n, k, ta, tb, alpha, beta);
                    let mut want = c0.clone();
                    for (row, r) in want.chunks_mut(ldc).zip(block.chunks(n)) {
                        row[..n].copy_from_slice(r);
                    }
                    let abs = cpu::matmul::gemm_abs(&a, &b, m, n, k, ta, tb);
                    let tol: Vec<f32> = (0..m * ldc)
                        .map(|i| {
                            let (row, col) = (i / ldc, i % ldc);
                            if col >= n {
                                return 0.0; // untouched
                            }
                            alpha.abs() * (2.0 * k as f32 * f32::EPSILON * abs[row * n + col])
                                + 2.0 * f32::EPSILON * (c0[i].abs() + bias[col].abs() + 1.0)
                                + 1e-6
                        })
                        .collect();
                    let g = Gemm::new(m, n, k)
                        .trans_a(ta)
                        .trans_b(tb)
                        .alpha(alpha)
                        .accumulate(beta != 0.0)
                        .ldc(ldc);
                    let (a_t, bias_t) = (gpu.upload_f32(&a), gpu.upload_f32(&bias));
                    let bias_opt: Option<&Tensor> = with_bias.then_some(&bias_t);
                    for routed in [false, true] {
                        let c = gpu.upload_f32(&c0);
                        let mut cmd = gpu.commands();
                        if routed {
                            gemm(&mut cmd, &c, &a_t, &b_w, bias_opt, g);
                        } else {
                            gemv(&mut cmd, &c, &a_t, &b_w, bias_opt, g);
                        }
                        cmd.submit();
                        assert_within(
                            &format!(
                                "gemv (routed={routed}) {format} {m}x{n}x{k} ta={ta} tb={tb} \
                                 alpha={alpha} beta={beta} bias={with_bias} ldc={ldc}"
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

gpu_test!(
    gemv_overwrite_ignores_nan_in_output,
    check_gemv_overwrite_ignores_nan_in_output
);
/// beta = 0 must ignore whatever the output buffer held (pooled buffers hold garbage).
async fn check_gemv_overwrite_ignores_nan_in_output(gpu: &Gpu) {
    let (m, n, k) = (1, 21, 40);
    let mut rng = Rng::new(12);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let mut want = vec![0.0; m * n];
    cpu::matmul::gemm(&mut want, &a, &b, None, m, n, k, false, false, 1.0, 0.0);
    let abs = cpu::matmul::gemm_abs(&a, &b, m, n, k, false, false);
    let tol: Vec<f32> = abs
        .iter()
        .map(|s| 2.0 * k as f32 * f32::EPSILON * s + 1e-6)
        .collect();
    let c = gpu.upload_f32(&vec![f32::NAN; m * n]);
    let mut cmd = gpu.commands();
    let b_w = Weight::F32(gpu.upload_f32(&b));
    gemv(
        &mut cmd,
        &c,
        &gpu.upload_f32(&a),
        &b_w,
        None,
        Gemm::new(m, n, k),
    );
    cmd.submit();
    assert_within("gemv beta=0", &read_f32(gpu, &c).await, &want, &tol);
}
