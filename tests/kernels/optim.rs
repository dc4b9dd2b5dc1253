use crate::common::{Rng, assert_close, read_f32};
use crate::gpu_test;
use wgtune::cpu;
use wgtune::gpu::Gpu;
use wgtune::kernels::optim::{AdamW, NORM_PARTIALS, adamw, grad_norm};

gpu_test!(
    grad_norm_clipping_and_adamw_steps_match_cpu,
    check_grad_norm_and_adamw
);
/// Norm: a sum of n squares in f32 (tree) vs f64 → 1e-5 relative. AdamW: identical f32
/// formulas, but sqrt/division may differ by an ulp → 1e-6 abs + 1e-5 rel after 5 steps.
async fn check_grad_norm_and_adamw(gpu: &Gpu) {
    let mut rng = Rng::new(13);
    for &(n, max_norm, wd) in &[
        (1usize, 1.0f32, 0.0f32),
        (1000, 0.5, 0.01),
        (70_001, 1e9, 0.1),
        (333, 0.0, 0.0),
    ] {
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
            let got = read_f32(gpu, &norm).await;
            assert_close("grad norm", &got[..1], &[want_norm], 0.0, 1e-5);
            assert_close("clip coef", &got[1..], &[coef], 0.0, 1e-5);
        }
        assert_close(
            &format!("adamw p n={n}"),
            &read_f32(gpu, &gp).await,
            &p,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("adamw m n={n}"),
            &read_f32(gpu, &gm).await,
            &m,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("adamw v n={n}"),
            &read_f32(gpu, &gv).await,
            &v,
            1e-7,
            1e-5,
        );
    }
}
