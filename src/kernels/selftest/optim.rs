//! Global gradient norm with clipping, and AdamW (`kernels::optim`) against `cpu::optim`.

use super::matmul::add_throughput;
use super::{Ctx, KernelReport, Rng};
use crate::cpu;
use crate::kernels::optim::{AdamW, NORM_PARTIALS, adamw, grad_norm};

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let kernel = "grad norm, clipping and adamw";
    if !cx.wants(kernel) {
        return Vec::new();
    }
    let mut rep = KernelReport::new(kernel);
    let mut cases = vec![
        (1usize, 1.0f32, 0.0f32),
        (1000, 0.5, 0.01),
        (70_001, 1e9, 0.1),
        (333, 0.0, 0.0),
    ];
    if cx.opts.gpt2_sizes {
        cases.push((768 * 2304, 1.0, 0.01)); // GPT-2 small's c_attn, as a full fine-tune has it
    }
    let mut rng = Rng::new(13);
    for (n, max_norm, wd) in cases {
        steps(cx, &mut rep, &mut rng, n, max_norm, wd).await;
    }
    vec![rep]
}

/// Norm: a sum of n squares in f32 (tree) vs f64 → 1e-5 relative. AdamW: identical f32
/// formulas, but sqrt/division may differ by an ulp → 1e-6 abs + 1e-5 rel after 5 steps.
async fn steps(
    cx: &Ctx<'_>,
    rep: &mut KernelReport,
    rng: &mut Rng,
    n: usize,
    max_norm: f32,
    wd: f32,
) {
    let gpu = cx.gpu;
    let mut p = rng.vec(n, 1.0);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let (gp, gm, gv) = (gpu.upload_f32(&p), gpu.zeros(n), gpu.zeros(n));
    let (norm, partials) = (gpu.tensor(2), gpu.tensor(NORM_PARTIALS));
    for step in 1..=5u32 {
        let g = rng.vec(n, 0.5);
        let (want_norm, coef) = cpu::optim::grad_norm(&g, max_norm);
        cpu::optim::adamw(
            &mut p, &mut m, &mut v, &g, coef, 1e-2, 0.9, 0.999, 1e-8, wd, step,
        );

        let h = AdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
            step,
        };
        let gg = gpu.upload_f32(&g);
        let mut cmd = gpu.commands();
        grad_norm(&mut cmd, &norm, &partials, &gg, n, max_norm);
        adamw(&mut cmd, &gp, &gm, &gv, &gg, &norm, n, &h);
        cmd.submit();
        let got = rep.read(gpu, &norm).await;
        let (got_norm, got_coef) = got.split_at(1.min(got.len()));
        rep.close(
            &format!("grad norm n={n} step {step}"),
            got_norm,
            &[want_norm],
            0.0,
            1e-5,
        );
        rep.close(
            &format!("clip coef n={n} step {step}"),
            got_coef,
            &[coef],
            0.0,
            1e-5,
        );
    }
    let got = rep.read(gpu, &gp).await;
    rep.close(&format!("adamw p n={n}"), &got, &p, 1e-6, 1e-5);
    let got = rep.read(gpu, &gm).await;
    rep.close(&format!("adamw m n={n}"), &got, &m, 1e-6, 1e-5);
    let got = rep.read(gpu, &gv).await;
    rep.close(&format!("adamw v n={n}"), &got, &v, 1e-7, 1e-5);
    if n > 1_000_000 {
        // Timed apart from the check: the state it leaves is not compared.
        let (sp, sm, sv, sg) = (gpu.zeros(n), gpu.zeros(n), gpu.zeros(n), gpu.zeros(n));
        let h = AdamW {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
            step: 1,
        };
        let record = |cmd: &mut crate::gpu::Commands| {
            grad_norm(cmd, &norm, &partials, &sg, n, max_norm);
            adamw(cmd, &sp, &sm, &sv, &sg, &norm, n, &h);
        };
        // Reads p, m, v, g (twice: norm and update), writes p, m, v.
        if let Some(ms) = cx.time_ms(&record).await {
            add_throughput(rep, (8 * 4 * n) as f64 / (ms * 1e6), "GB/s");
        }
    }
}
