//! The matrix-vector kernel (`shaders/gemv.wgsl`, C with at most 4 rows) against the CPU
//! gemm, for every weight format, transpose and epilogue, and through `gemm`'s routing; and
//! [`check_gemv`], the autotuner's check.

use super::matmul::{Product, add_throughput};
use super::{Ctx, Format, KernelReport, Rng, upload_conv1d, upload_weight};
use crate::cpu;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::autotune::Candidate;
use crate::kernels::gemv::gemv;
use crate::kernels::matmul::{Gemm, Weight, gemm};

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

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let gpu = cx.gpu;
    let routed = super::device_choice_is_f32(gpu);
    let mut out = Vec::new();
    for format in [Format::F32, Format::F16, Format::Nf4] {
        let kernel = format!("gemv {} weights", format.name());
        if !cx.wants(&kernel) {
            continue;
        }
        let mut rep = KernelReport::new(kernel);
        every_format_transpose_and_epilogue(gpu, &mut rep, format, routed).await;
        if format == Format::F32 {
            overwrite_ignores_nan(gpu, &mut rep).await;
        }
        if cx.opts.gpt2_sizes {
            gpt2_size(cx, &mut rep, format).await;
        }
        out.push(rep);
    }
    out
}

/// gemv directly and, where the device's choice runs f32 arithmetic, through gemm (which
/// routes M <= 4 here). With ldc > N, the columns of C beyond N must keep their values.
async fn every_format_transpose_and_epilogue(
    gpu: &Gpu,
    rep: &mut KernelReport,
    format: Format,
    through_gemm: bool,
) {
    let mut rng = Rng::new(11);
    for &(m, n, k) in &SHAPES {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for &(alpha, beta, with_bias, extra) in &EPILOGUES {
                let ldc = n + extra;
                let a = rng.vec(m * k, 1.0);
                let (b_w, b) = upload_weight(gpu, format, &rng.vec(k * n, 1.0));
                let bias = rng.vec(n, 1.0);
                let c0 = rng.vec(m * ldc, 1.0); // (M, ldc)
                let mut block: Vec<f32> = c0.chunks(ldc).flat_map(|r| r[..n].to_vec()).collect(); // (M,N)
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
                    if routed && !through_gemm {
                        continue;
                    }
                    let c = gpu.upload_f32(&c0);
                    let mut cmd = gpu.commands();
                    if routed {
                        gemm(&mut cmd, &c, &a_t, &b_w, bias_opt, g);
                    } else {
                        gemv(&mut cmd, &c, &a_t, &b_w, bias_opt, g);
                    }
                    cmd.submit();
                    let got = rep.read(gpu, &c).await;
                    rep.within(
                        &format!(
                            "(routed={routed}) {m}x{n}x{k} ta={ta} tb={tb} \
                             alpha={alpha} beta={beta} bias={with_bias} ldc={ldc}"
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

/// beta = 0 must ignore whatever the output buffer held (pooled buffers hold garbage).
async fn overwrite_ignores_nan(gpu: &Gpu, rep: &mut KernelReport) {
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
    let got = rep.read(gpu, &c).await;
    rep.within("beta=0 over NaN", &got, &want, &tol);
}

/// Decoding one token through GPT-2 small's attention input projection (1×768 · 768×2304,
/// the layout the model stores the format in), timed: GB/s of weight read.
async fn gpt2_size(cx: &Ctx<'_>, rep: &mut KernelReport, format: Format) {
    let gpu = cx.gpu;
    let (m, k, n) = (1, 768, 2304);
    let mut rng = Rng::new(0x6708);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(k * n, 0.05);
    let (weight, w_linear) = upload_conv1d(gpu, format, &w, k, n);
    let mut want = vec![0.0; m * n];
    cpu::matmul::gemm(
        &mut want, &x, &w_linear, None, m, n, k, false, true, 1.0, 0.0,
    );
    let abs = cpu::matmul::gemm_abs(&x, &w_linear, m, n, k, false, true);
    let tol: Vec<f32> = abs
        .iter()
        .map(|s| 2.0 * k as f32 * f32::EPSILON * s + 2.0 * f32::EPSILON + 1e-6)
        .collect();
    let (x_t, c) = (gpu.upload_f32(&x), gpu.tensor(m * n));
    let g = Gemm::new(m, n, k).trans_b(weight.is_linear_layout());
    let record = |cmd: &mut crate::gpu::Commands| gemv(cmd, &c, &x_t, &weight, None, g);
    let mut cmd = gpu.commands();
    record(&mut cmd);
    cmd.submit();
    let got = rep.read(gpu, &c).await;
    rep.within(&format!("GPT-2 {m}x{k}x{n}"), &got, &want, &tol);
    if let Some(ms) = cx.time_ms(&record).await {
        add_throughput(rep, weight.size_bytes() as f64 / (ms * 1e6), "GB/s");
    }
}

/// The autotuner's check of the gemv candidate: `format` weights with the given transposes
/// and, with `low_rank`, a rank-3 epilogue, on odd shapes of 1 to 4 rows, against the CPU
/// reference within the kernel tests' bounds.
pub async fn check_gemv(
    gpu: &Gpu,
    format: Format,
    trans_a: bool,
    trans_b: bool,
    low_rank: bool,
) -> KernelReport {
    let name = format!(
        "gemv {} weights{} (autotune check{}{})",
        format.name(),
        if low_rank { " low-rank" } else { "" },
        if trans_a { " ta" } else { "" },
        if trans_b { " tb" } else { "" }
    );
    let mut rep = KernelReport::new(name);
    let mut rng = Rng::new(0xA071);
    for &(m, n, k) in &SHAPES {
        let case = Product {
            kernel: Candidate::Gemv,
            format,
            dims: (m, n, k),
            trans: (trans_a, trans_b),
            low_rank,
        };
        case.check(gpu, &mut rep, &mut rng).await;
    }
    rep
}
