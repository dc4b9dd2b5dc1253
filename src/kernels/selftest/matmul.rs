//! The matmuls with f32 arithmetic (the register kernel and the tiled one in every tile shape
//! that fits the device) over f32, f16 and NF4 weights, against `cpu::matmul::gemm`; and
//! [`check_matmul`], the autotuner's check of one candidate.

use super::{Ctx, Format, KernelReport, Rng, abs_max, upload_conv1d, upload_weight};
use crate::cpu;
use crate::gpu::{Gpu, Tensor};
use crate::kernels::autotune::Candidate;
use crate::kernels::matmul::{Gemm, LowRank, Math, MatmulVariant, Tile, Weight, gemm};

/// Odd shapes: nothing is a multiple of the 64×32 tile or the 8×4 register block. The last
/// ones have dimensions that are multiples of 4 but not of the tile, so that the fast path
/// (4-aligned runs) meets edge blocks and K tails: which of M, N, K is aligned varies.
/// (67, 131, 37) is all primes; (128, 128, 32) fills the tiled kernel's 64×64 tiles exactly.
pub(super) const SHAPES: [(usize, usize, usize); 12] = [
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
pub(super) fn tolerance(abs_sum: &[f32], k: usize) -> Vec<f32> {
    abs_sum
        .iter()
        .map(|s| 4.0 * k as f32 * f32::EPSILON / 2.0 * s + 1e-6)
        .collect()
}

/// Epilogues: (alpha, beta, with bias, extra columns of C beyond N, i.e. ldc = N + extra).
const EPILOGUES: [(f32, f32, bool, usize); 4] = [
    (0.5, 1.0, true, 0),
    (1.0, 0.0, false, 0),
    (-1.5, 1.0, false, 3),
    (1.0, 0.0, true, 1),
];

/// The matmul kernels with `math` this device runs: the register kernel and the tiled one in
/// each [`Tile::CANDIDATES`] shape that fits.
pub(super) fn variants(gpu: &Gpu, math: Math) -> Vec<MatmulVariant> {
    let mut v = vec![MatmulVariant::Register(math)];
    for t in Tile::CANDIDATES {
        if t.fits(gpu) {
            v.push(MatmulVariant::Tiled(math, t));
        }
    }
    v
}

/// A matmul kernel's report name, e.g. "matmul tiled 64x64 f32 weights", "matmul register
/// f16-math nf4 weights low-rank".
pub(super) fn name(variant: MatmulVariant, format: Format, low_rank: bool) -> String {
    let kind = match variant {
        MatmulVariant::Register(_) => "register".to_string(),
        MatmulVariant::Tiled(_, t) => format!("tiled {t}"),
    };
    let math = if variant.math() == Math::F16 {
        " f16-math"
    } else {
        ""
    };
    let lr = if low_rank { " low-rank" } else { "" };
    format!("matmul {kind}{math} {} weights{lr}", format.name())
}

const FORMATS: [Format; 3] = [Format::F32, Format::F16, Format::Nf4];

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let gpu = cx.gpu;
    let mut out = Vec::new();
    let vs = variants(gpu, Math::F32);
    for &variant in &vs {
        for format in FORMATS {
            let mut rep = KernelReport::new(name(variant, format, false));
            if !cx.wants(&rep.kernel) {
                continue;
            }
            if format == Format::F32 {
                every_transpose_and_epilogue(gpu, &mut rep, variant).await;
                overwrite_ignores_nan(gpu, &mut rep, Some(variant)).await;
            }
            linear_forward_and_backward(gpu, &mut rep, variant, format).await;
            out.push(rep);
        }
    }
    let choice = "matmul (the device's choice) f32 weights";
    if cx.wants(choice) {
        if super::device_choice_is_f32(gpu) {
            let mut rep = KernelReport::new(choice);
            overwrite_ignores_nan(gpu, &mut rep, None).await;
            out.push(rep);
        } else {
            out.push(KernelReport::skipped(choice, super::CHOICE_F16));
        }
    }
    if cx.opts.gpt2_sizes {
        gpt2_sizes(cx, &mut out, &vs).await;
    }
    out
}

/// Every shape, transpose, alpha/beta/bias/ldc combination of f32 weights. With ldc > N, the
/// columns of C beyond N must keep their values.
async fn every_transpose_and_epilogue(gpu: &Gpu, rep: &mut KernelReport, variant: MatmulVariant) {
    let mut rng = Rng::new(6);
    for &(m, n, k) in &SHAPES {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (e, &(alpha, beta, with_bias, extra)) in EPILOGUES.iter().enumerate() {
                // The widest shape only once per transpose: it is slow on lavapipe.
                if n > 1000 && e > 0 {
                    continue;
                }
                let epilogue = (alpha, beta, with_bias, extra);
                one_gemm(gpu, rep, &mut rng, variant, (m, n, k), (ta, tb), epilogue).await;
            }
        }
    }
}

async fn one_gemm(
    gpu: &Gpu,
    rep: &mut KernelReport,
    rng: &mut Rng,
    variant: MatmulVariant,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    (alpha, beta, with_bias, extra): (f32, f32, bool, usize),
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
    let got = rep.read(gpu, &c).await;
    rep.within(
        &format!(
            "{m}x{n}x{k} ta={ta} tb={tb} alpha={alpha} beta={beta} bias={with_bias} ldc={ldc}"
        ),
        &got,
        &want,
        &tol,
    );
}

/// beta = 0 must ignore whatever the output buffer held (pooled buffers hold garbage); `None`
/// runs the device's own choice (its tuning).
async fn overwrite_ignores_nan(gpu: &Gpu, rep: &mut KernelReport, variant: Option<MatmulVariant>) {
    let (m, n, k) = (5, 7, 3);
    let mut rng = Rng::new(7);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let mut want = vec![0.0; m * n];
    cpu::matmul::gemm(&mut want, &a, &b, None, m, n, k, false, false, 1.0, 0.0);
    let tol = tolerance(&cpu::matmul::gemm_abs(&a, &b, m, n, k, false, false), k);
    let c = gpu.upload_f32(&vec![f32::NAN; m * n]);
    let (a_t, b_w) = (gpu.upload_f32(&a), Weight::F32(gpu.upload_f32(&b)));
    let mut cmd = gpu.commands();
    let g = Gemm::new(m, n, k);
    let g = match variant {
        Some(v) => g.variant(v),
        None => g,
    };
    gemm(&mut cmd, &c, &a_t, &b_w, None, g);
    cmd.submit();
    let got = rep.read(gpu, &c).await;
    rep.within("beta=0 over NaN", &got, &want, &tol);
}

/// Linear layers over `format` weights, forward and input-gradient as the model runs them
/// (Conv1D `[in,out]` for f32 / f16, nn.Linear `[out,in]` for NF4), against the CPU gemm over
/// the same weights dequantized on the CPU (so only the matmul is under test).
async fn linear_forward_and_backward(
    gpu: &Gpu,
    rep: &mut KernelReport,
    variant: MatmulVariant,
    format: Format,
) {
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
        let (weight, w_eff) = match format {
            Format::Nf4 => {
                let q = crate::nf4::quantize_conv1d(&w, k_in, n_out);
                let back = q.dequantize_conv1d(k_in, n_out);
                (crate::kernels::nf4::upload(gpu, &q), back)
            }
            f => upload_weight(gpu, f, &w),
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
        let got = rep.read(gpu, &y).await;
        rep.within(
            &format!("linear forward {m}x{k_in}x{n_out}"),
            &got,
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
        let got = rep.read(gpu, &dx).await;
        rep.within(
            &format!("linear backward {m}x{k_in}x{n_out}"),
            &got,
            &want_dx,
            &tol,
        );
    }
}

/// GPT-2 small's attention and MLP input projections at 512 tokens (x·W as the model runs
/// them), checked on every 17th row of C (the CPU reference of all 512 rows takes too long)
/// and timed. The reference is computed once per shape and format for all variants.
async fn gpt2_sizes(cx: &Ctx<'_>, out: &mut [KernelReport], vs: &[MatmulVariant]) {
    let gpu = cx.gpu;
    for format in FORMATS {
        let wanted: Vec<usize> = vs
            .iter()
            .filter_map(|&v| {
                let n = name(v, format, false);
                out.iter().position(|r| r.kernel == n)
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let mut rng = Rng::new(0x6707);
        for (m, k, n) in [(512, 768, 2304), (512, 3072, 768)] {
            let x = rng.vec(m * k, 1.0);
            let w = rng.vec(k * n, 0.05); // Conv1D [in, out]
            let (weight, w_linear) = upload_conv1d(gpu, format, &w, k, n);
            let rows: Vec<usize> = (0..m).step_by(17).chain([m - 1]).collect();
            let xs: Vec<f32> = rows
                .iter()
                .flat_map(|&i| x[i * k..][..k].to_vec())
                .collect();
            let mut want = vec![0.0; rows.len() * n];
            cpu::matmul::gemm(
                &mut want,
                &xs,
                &w_linear,
                None,
                rows.len(),
                n,
                k,
                false,
                true,
                1.0,
                0.0,
            );
            let abs = cpu::matmul::gemm_abs(&xs, &w_linear, rows.len(), n, k, false, true);
            let tol = tolerance(&abs, k);
            let x_t = gpu.upload_f32(&x);
            let c = gpu.tensor(m * n);
            let g = Gemm::new(m, n, k).trans_b(weight.is_linear_layout());
            for (&i, &v) in wanted.iter().zip(vs) {
                let rep = &mut out[i];
                let record = |cmd: &mut crate::gpu::Commands| {
                    gemm(cmd, &c, &x_t, &weight, None, g.variant(v));
                };
                let mut cmd = gpu.commands();
                record(&mut cmd);
                cmd.submit();
                let all = rep.read(gpu, &c).await;
                let got: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| all.get(r * n..(r + 1) * n).unwrap_or(&[]).to_vec())
                    .collect();
                rep.within(&format!("GPT-2 {m}x{k}x{n}"), &got, &want, &tol);
                if let Some(ms) = cx.time_ms(&record).await {
                    add_throughput(rep, 2.0 * (m * n * k) as f64 / (ms * 1e6), "GFLOP/s");
                }
            }
        }
    }
}

/// Record a throughput figure; with several, the report keeps their mean.
pub(super) fn add_throughput(rep: &mut KernelReport, value: f64, unit: &'static str) {
    rep.throughput = Some(match rep.throughput {
        Some((v, u)) if u == unit => ((v + value) / 2.0, unit),
        _ => (value, unit),
    });
}

/// The autotuner's check of one matmul candidate: `variant` over `format` weights with the
/// given transposes and, with `low_rank`, a rank-3 epilogue, on every odd shape, against the
/// CPU reference within the kernel tests' bounds (f16 arithmetic's for f16-math variants).
pub async fn check_matmul(
    gpu: &Gpu,
    variant: MatmulVariant,
    format: Format,
    trans_a: bool,
    trans_b: bool,
    low_rank: bool,
) -> KernelReport {
    let name = format!(
        "{} (autotune check{}{})",
        name(variant, format, low_rank),
        if trans_a { " ta" } else { "" },
        if trans_b { " tb" } else { "" }
    );
    let mut rep = KernelReport::new(name);
    if variant.math() == Math::F16 && !super::has_f16(gpu) {
        return KernelReport::skipped(rep.kernel, super::NO_F16);
    }
    let mut rng = Rng::new(0xA070);
    for &(m, n, k) in &SHAPES {
        let case = Product {
            kernel: Candidate::Matmul(variant),
            format,
            dims: (m, n, k),
            trans: (trans_a, trans_b),
            low_rank,
        };
        case.check(gpu, &mut rep, &mut rng).await;
    }
    rep
}

/// One product of the autotuner's checks: `C = op(A)·op(B) + bias (+ 0.5·U·Lᵀ, rank 3)`.
pub(super) struct Product {
    pub kernel: Candidate,
    pub format: Format,
    pub dims: (usize, usize, usize),
    pub trans: (bool, bool),
    pub low_rank: bool,
}

impl Product {
    /// Run the product and compare it with the CPU: the f32 bound of [`tolerance`] plus the
    /// bias's rounding, f16 arithmetic's bound for f16-math kernels, and the rounding of the
    /// rank-r sum.
    pub(super) async fn check(&self, gpu: &Gpu, rep: &mut KernelReport, rng: &mut Rng) {
        let ((m, n, k), (ta, tb), rank, scale) = (self.dims, self.trans, 3, 0.5);
        let f16_math = matches!(self.kernel, Candidate::Matmul(v) if v.math() == Math::F16);
        let (a, w, bias) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0), rng.vec(n, 1.0));
        let (u, l) = (rng.vec(m * rank, 1.0), rng.vec(n * rank, 1.0));
        let (weight, b) = upload_weight(gpu, self.format, &w);
        let mut want = vec![0.0; m * n];
        cpu::matmul::gemm(&mut want, &a, &b, Some(&bias), m, n, k, ta, tb, 1.0, 0.0);
        let abs = cpu::matmul::gemm_abs(&a, &b, m, n, k, ta, tb);
        let a_max = abs_max(&a);
        let mut tol: Vec<f32> = (0..m * n)
            .map(|i| {
                let mut t = tolerance(&abs[i..][..1], k)[0]
                    + 2.0 * f32::EPSILON * (bias[i % n].abs() + 1.0);
                if f16_math {
                    t += super::matmul_f16::f16_excess(abs[i], k, a_max);
                }
                t
            })
            .collect();
        if self.low_rank {
            cpu::matmul::add_low_rank(&mut want, &u, &l, m, n, rank, scale);
            let abs_lr = cpu::matmul::gemm_abs(&u, &l, m, n, rank, false, true);
            for (t, s) in tol.iter_mut().zip(&abs_lr) {
                *t += 4.0 * rank as f32 * f32::EPSILON * s;
            }
        }
        let (c, a_t, bias_t) = (gpu.zeros(m * n), gpu.upload_f32(&a), gpu.upload_f32(&bias));
        let (u_t, l_t): (Tensor, Tensor) = (gpu.upload_f32(&u), gpu.upload_f32(&l));
        let mut g = Gemm::new(m, n, k).trans_a(ta).trans_b(tb);
        if self.low_rank {
            g = g.low_rank(LowRank {
                u: &u_t,
                l: &l_t,
                rank,
                scale,
            });
        }
        let mut cmd = gpu.commands();
        match self.kernel {
            Candidate::Gemv => {
                crate::kernels::gemv::gemv(&mut cmd, &c, &a_t, &weight, Some(&bias_t), g)
            }
            Candidate::Matmul(v) => gemm(&mut cmd, &c, &a_t, &weight, Some(&bias_t), g.variant(v)),
        }
        cmd.submit();
        let got = rep.read(gpu, &c).await;
        rep.within(&format!("{m}x{n}x{k}"), &got, &want, &tol);
    }
}
