//! LoRA's seeded dropout, forward and backward (`kernels::lora`) against `cpu::lora`.

use super::{Ctx, KernelReport, Rng};
use crate::cpu;
use crate::gpu::Gpu;
use crate::kernels::lora::{LoraDims, dropout, lora_backward, lora_forward};

pub(super) async fn run(cx: &Ctx<'_>) -> Vec<KernelReport> {
    let mut out = Vec::new();
    if cx.wants("lora dropout") {
        let mut rep = KernelReport::new("lora dropout");
        check_dropout(cx.gpu, &mut rep).await;
        out.push(rep);
    }
    if cx.wants("lora forward and backward") {
        let mut rep = KernelReport::new("lora forward and backward");
        check_lora(cx.gpu, &mut rep).await;
        out.push(rep);
    }
    out
}

/// The GPU and CPU dropout masks are bit-identical for the same seed, and the keep rate is
/// 1 - p within sampling error.
async fn check_dropout(gpu: &Gpu, rep: &mut KernelReport) {
    let n = 10_007;
    let x = vec![1.0f32; n];
    for &(p, seed) in &[(0.1f32, 0u32), (0.5, 12345), (0.05, 7)] {
        let want = cpu::lora::dropout(&x, p, seed);
        let out = gpu.tensor(n);
        let mut cmd = gpu.commands();
        dropout(&mut cmd, &out, &gpu.upload_f32(&x), n, p, seed, false);
        cmd.submit();
        let got = rep.read(gpu, &out).await;
        rep.close(&format!("p={p} seed={seed}"), &got, &want, 0.0, 0.0);
        let kept = got.iter().filter(|&&v| v != 0.0).count() as f32 / n as f32;
        rep.check((kept - (1.0 - p)).abs() < 0.02, || {
            format!("keep rate {kept} for p={p}")
        });
    }
}

/// LoRA forward and backward (with and without dropout) against the CPU composition of the
/// same gemms: sums over K, N or M terms of order-1 values → 2e-5 abs + 1e-4 rel.
async fn check_lora(gpu: &Gpu, rep: &mut KernelReport) {
    let mut rng = Rng::new(12);
    for &(m, k, n, r, p_drop) in &[
        (5, 17, 33, 4, 0.0f32),
        (5, 17, 33, 4, 0.1),
        (1, 3, 1, 1, 0.0),
        (20, 96, 288, 8, 0.05),
    ] {
        let scale = 16.0 / r as f32;
        let seed = 99;
        let x = rng.vec(m * k, 1.0);
        let a = rng.vec(r * k, 0.3);
        let b = rng.vec(n * r, 0.3);
        let y0 = rng.vec(m * n, 1.0);
        let dy = rng.vec(m * n, 1.0);
        let dx0 = rng.vec(m * k, 1.0);
        let da0 = rng.vec(r * k, 1.0);
        let db0 = rng.vec(n * r, 1.0);

        let mut want_y = y0.clone();
        let u = cpu::lora::lora_forward(&mut want_y, &x, &a, &b, m, k, n, r, scale, p_drop, seed);
        let (mut want_dx, mut want_da, mut want_db) = (dx0.clone(), da0.clone(), db0.clone());
        cpu::lora::lora_backward(
            &mut want_dx,
            &mut want_da,
            &mut want_db,
            &dy,
            &x,
            &u,
            &a,
            &b,
            m,
            k,
            n,
            r,
            scale,
            p_drop,
            seed,
        );

        let d = LoraDims {
            m,
            k_in: k,
            n_out: n,
            rank: r,
            scale,
            p_drop,
            seed,
        };
        let (gy, gdx, gda, gdb) = (
            gpu.upload_f32(&y0),
            gpu.upload_f32(&dx0),
            gpu.upload_f32(&da0),
            gpu.upload_f32(&db0),
        );
        let (gu, h, du) = (gpu.tensor(m * r), gpu.tensor(m * k), gpu.tensor(m * r));
        let (gx, ga, gb) = (gpu.upload_f32(&x), gpu.upload_f32(&a), gpu.upload_f32(&b));
        let mut cmd = gpu.commands();
        lora_forward(&mut cmd, &gy, &gu, &h, &gx, &ga, &gb, &d);
        lora_backward(
            &mut cmd,
            &gdx,
            &gda,
            &gdb,
            &gpu.upload_f32(&dy),
            &gx,
            &gu,
            &ga,
            &gb,
            &h,
            &du,
            &d,
        );
        cmd.submit();
        let name = format!("m={m} k={k} n={n} r={r} p={p_drop}");
        for (what, t, want) in [
            ("y", &gy, &want_y),
            ("u", &gu, &u),
            ("dx", &gdx, &want_dx),
            ("dA", &gda, &want_da),
            ("dB", &gdb, &want_db),
        ] {
            let got = rep.read(gpu, t).await;
            rep.close(&format!("{name} {what}"), &got, want, 2e-5, 1e-4);
        }
    }
}
