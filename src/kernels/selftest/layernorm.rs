//! LayerNorm and RMSNorm forward and backward (`kernels::layernorm`) against
//! `cpu::layernorm`, for each row reduction (workgroup memory; subgroups where the device has
//! them).

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::kernels::Reduction;
use crate::kernels::layernorm::LayerNorm;
use crate::{cpu, kernels};

/// Row counts and lengths C: odd ones, and 1, 3, 5, 7 shorter than a subgroup (8 on
/// lavapipe) or than the workgroup, so that most invocations hold no element.
const SHAPES: [(usize, usize); 9] = [
    (1, 3),
    (2, 1),
    (4, 5),
    (3, 7),
    (7, 17),
    (3, 65),
    (33, 96),
    (5, 768),
    (2, 1600),
];

/// GPT-2 small at 512 tokens.
const GPT2: (usize, usize) = (512, 768);

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    let mut shapes = SHAPES.to_vec();
    if cx.opts.gpt2_sizes {
        shapes.push(GPT2);
    }
    for (reduction, suffix, skip) in super::reductions(cx.gpu) {
        let (layernorm, rmsnorm) = (format!("layernorm{suffix}"), format!("rmsnorm{suffix}"));
        for kernel in [layernorm, rmsnorm].into_iter().filter(|k| cx.wants(k)) {
            if let Some(why) = skip {
                out.push(KernelReport::skipped(kernel, why));
                continue;
            }
            let mut rep = KernelReport::new(kernel.clone());
            if kernel.starts_with("rmsnorm") {
                let mut rng = Rng::new(4);
                for &(n, c) in &shapes {
                    for accumulate in [false, true] {
                        rms(cx, &mut rep, &mut rng, (n, c), accumulate, reduction).await;
                    }
                }
                out.push(rep);
                continue;
            }
            let mut rng = Rng::new(2);
            for &(n, c) in &shapes {
                forward(cx, &mut rep, &mut rng, n, c, reduction).await;
            }
            let mut rng = Rng::new(3);
            for &(n, c) in &shapes {
                for accumulate in [false, true] {
                    backward(cx, &mut rep, &mut rng, (n, c), accumulate, reduction).await;
                }
            }
            out.push(rep);
        }
    }
    out
}

/// RMSNorm forward (out, rstd) and backward (dx, overwritten or accumulated); the same
/// tolerances as LayerNorm's.
async fn rms(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (n, c): (usize, usize),
    accumulate: bool,
    reduction: Reduction,
) {
    let gpu = cx.gpu;
    let x: Vec<f32> = rng.vec(n * c, 2.0).iter().map(|v| v + 0.5).collect();
    let w = rng.vec(c, 1.0);
    let dout = rng.vec(n * c, 1.0);
    let dx0 = rng.vec(n * c, 1.0);
    let (mut out, mut rstd) = (vec![0.0; n * c], vec![0.0; n]);
    cpu::layernorm::rmsnorm_forward(&mut out, &mut rstd, &x, &w, n, c, 1e-6);
    let mut want = dx0.clone();
    cpu::layernorm::rmsnorm_backward(&mut want, &dout, &x, &w, &rstd, n, c, accumulate);

    let (go, gr) = (gpu.tensor(n * c), gpu.tensor(n));
    let (gx, gw, gd, dx) = (
        gpu.upload_f32(&x),
        gpu.upload_f32(&w),
        gpu.upload_f32(&dout),
        gpu.upload_f32(&dx0),
    );
    let record = |cmd: &mut crate::gpu::Commands| {
        kernels::layernorm::rmsnorm_forward(cmd, &go, &gr, &gx, &gw, n, c, 1e-6, reduction);
    };
    let mut cmd = gpu.commands();
    record(&mut cmd);
    // The backward from the GPU's own rstd, as the model runs it.
    kernels::layernorm::rmsnorm_backward(
        &mut cmd, &dx, &gd, &gx, &gw, &gr, n, c, accumulate, reduction,
    );
    cmd.submit();
    let name = |what: &str| format!("{what} {n}x{c} accumulate={accumulate}");
    let got = rep.read(gpu, &go).await;
    rep.close(&name("forward out"), &got, &out, 1e-5, 1e-5);
    let got = rep.read(gpu, &gr).await;
    rep.close(&name("forward rstd"), &got, &rstd, 1e-6, 1e-5);
    let got = rep.read(gpu, &dx).await;
    rep.close(&name("backward dx"), &got, &want, 2e-5, 1e-4);
    if (n, c, accumulate) == (GPT2.0, GPT2.1, false)
        && let Some(ms) = cx.time_ms(&record).await
    {
        add_throughput(rep, (8 * n * c) as f64 / (ms * 1e6), "GB/s");
    }
}

/// f32 sums of C terms on the GPU vs f64 on the CPU: inputs of order 1 give outputs of
/// order 1 with relative errors ~C·2⁻²⁴; 1e-5 absolute covers C = 1600 with margin.
async fn forward(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    n: usize,
    c: usize,
    reduction: Reduction,
) {
    let gpu = cx.gpu;
    // An offset mean exercises the two-pass variance.
    let x: Vec<f32> = rng.vec(n * c, 2.0).iter().map(|v| v + 0.5).collect();
    let w = rng.vec(c, 1.0);
    let b = rng.vec(c, 1.0);
    let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
    cpu::layernorm::layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &b, n, c, 1e-5);

    let (go, gm, gr) = (gpu.tensor(n * c), gpu.tensor(n), gpu.tensor(n));
    let ln = LayerNorm {
        weight: gpu.upload_f32(&w),
        bias: gpu.upload_f32(&b),
    };
    let gx = gpu.upload_f32(&x);
    let record = |cmd: &mut crate::gpu::Commands| {
        kernels::layernorm::layernorm_forward(cmd, &go, &gm, &gr, &gx, &ln, n, c, 1e-5, reduction);
    };
    let mut cmd = gpu.commands();
    record(&mut cmd);
    cmd.submit();
    let name = |what: &str| format!("forward {what} {n}x{c}");
    let got = rep.read(gpu, &go).await;
    rep.close(&name("out"), &got, &out, 1e-5, 1e-5);
    let got = rep.read(gpu, &gm).await;
    rep.close(&name("mean"), &got, &mean, 1e-6, 1e-5);
    let got = rep.read(gpu, &gr).await;
    rep.close(&name("rstd"), &got, &rstd, 1e-6, 1e-5);
    if (n, c) == GPT2
        && let Some(ms) = cx.time_ms(&record).await
    {
        add_throughput(rep, (8 * n * c) as f64 / (ms * 1e6), "GB/s");
    }
}

/// Same tolerance argument as the forward; gradients are of order 1.
async fn backward(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    (n, c): (usize, usize),
    accumulate: bool,
    reduction: Reduction,
) {
    let gpu = cx.gpu;
    let x = rng.vec(n * c, 2.0);
    let w = rng.vec(c, 1.0);
    let dout = rng.vec(n * c, 1.0);
    let dx0 = rng.vec(n * c, 1.0);
    let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
    cpu::layernorm::layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &w, n, c, 1e-5);
    let mut want = dx0.clone();
    cpu::layernorm::layernorm_backward(&mut want, &dout, &x, &w, &mean, &rstd, n, c, accumulate);

    let dx = gpu.upload_f32(&dx0);
    let mut cmd = gpu.commands();
    // The backward reads the weight only.
    let ln = LayerNorm {
        weight: gpu.upload_f32(&w),
        bias: gpu.upload_f32(&vec![0.0; c]),
    };
    kernels::layernorm::layernorm_backward(
        &mut cmd,
        &dx,
        &gpu.upload_f32(&dout),
        &gpu.upload_f32(&x),
        &ln,
        &gpu.upload_f32(&mean),
        &gpu.upload_f32(&rstd),
        n,
        c,
        accumulate,
        reduction,
    );
    cmd.submit();
    let got = rep.read(gpu, &dx).await;
    rep.close(
        &format!("backward dx {n}x{c} accumulate={accumulate}"),
        &got,
        &want,
        2e-5,
        1e-4,
    );
}
