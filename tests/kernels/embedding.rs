use crate::common::{Rng, assert_close, read_f32};
use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::{cpu, kernels};

gpu_test!(embedding_forward_matches_cpu, check_embedding_forward);
/// Exact: one f32 addition per element on both sides.
async fn check_embedding_forward(gpu: &Gpu) {
    let mut rng = Rng::new(1);
    for &(b, t, c, v, p, pos0) in &[
        (2, 5, 17, 50, 8, 0),
        (1, 1, 3, 7, 4, 3),
        (3, 33, 96, 1000, 64, 0),
    ] {
        let ids: Vec<u32> = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
        let wte = rng.vec(v * c, 1.0);
        let wpe = rng.vec(p * c, 1.0);
        let mut want = vec![0.0; b * t * c];
        cpu::embedding::embedding_forward(&mut want, &ids, &wte, &wpe, b, t, c, pos0);

        let out = gpu.tensor(b * t * c);
        let mut cmd = gpu.commands();
        kernels::embedding::embedding_forward(
            &mut cmd,
            &out,
            &gpu.upload_u32(&ids),
            &gpu.upload_f32(&wte),
            &gpu.upload_f32(&wpe),
            b,
            t,
            c,
            pos0,
        );
        cmd.submit();
        assert_close("embedding", &read_f32(gpu, &out).await, &want, 0.0, 0.0);
    }
}
