use crate::common::{Rng, assert_close, read_f32, reductions};
use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::layernorm::LayerNorm;
use wgtune::{cpu, kernels};

/// Row lengths C: odd ones, and 1, 3, 5, 7 shorter than a subgroup (8 on lavapipe) or
/// than the workgroup, so that most invocations hold no element.
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

gpu_test!(layernorm_forward_matches_cpu, check_layernorm_forward);
/// f32 sums of C terms on the GPU vs f64 on the CPU: inputs of order 1 give outputs of
/// order 1 with relative errors ~C·2⁻²⁴; 1e-5 absolute covers C = 1600 with margin.
async fn check_layernorm_forward(gpu: &Gpu) {
    let mut rng = Rng::new(2);
    for (reduction, &(n, c)) in reductions(gpu)
        .into_iter()
        .flat_map(|r| SHAPES.iter().map(move |s| (r, s)))
    {
        // An offset mean exercises the two-pass variance.
        let x: Vec<f32> = rng.vec(n * c, 2.0).iter().map(|v| v + 0.5).collect();
        let w = rng.vec(c, 1.0);
        let b = rng.vec(c, 1.0);
        let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        cpu::layernorm::layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &b, n, c, 1e-5);

        let (go, gm, gr) = (gpu.tensor(n * c), gpu.tensor(n), gpu.tensor(n));
        let mut cmd = gpu.commands();
        let ln = LayerNorm {
            weight: gpu.upload_f32(&w),
            bias: gpu.upload_f32(&b),
        };
        kernels::layernorm::layernorm_forward(
            &mut cmd,
            &go,
            &gm,
            &gr,
            &gpu.upload_f32(&x),
            &ln,
            n,
            c,
            1e-5,
            reduction,
        );
        cmd.submit();
        let name = |what: &str| format!("{reduction:?} ln {what} {n}x{c}");
        assert_close(&name("out"), &read_f32(gpu, &go).await, &out, 1e-5, 1e-5);
        assert_close(&name("mean"), &read_f32(gpu, &gm).await, &mean, 1e-6, 1e-5);
        assert_close(&name("rstd"), &read_f32(gpu, &gr).await, &rstd, 1e-6, 1e-5);
    }
}

gpu_test!(layernorm_backward_matches_cpu, check_layernorm_backward);
/// Same tolerance argument as the forward; gradients are of order 1.
async fn check_layernorm_backward(gpu: &Gpu) {
    let mut rng = Rng::new(3);
    for (reduction, &(n, c)) in reductions(gpu)
        .into_iter()
        .flat_map(|r| SHAPES.iter().map(move |s| (r, s)))
    {
        for accumulate in [false, true] {
            let x = rng.vec(n * c, 2.0);
            let w = rng.vec(c, 1.0);
            let dout = rng.vec(n * c, 1.0);
            let dx0 = rng.vec(n * c, 1.0);
            let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            cpu::layernorm::layernorm_forward(
                &mut out, &mut mean, &mut rstd, &x, &w, &w, n, c, 1e-5,
            );
            let mut want = dx0.clone();
            cpu::layernorm::layernorm_backward(
                &mut want, &dout, &x, &w, &mean, &rstd, n, c, accumulate,
            );

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
            let name = format!("{reduction:?} ln dx {n}x{c} accumulate={accumulate}");
            assert_close(&name, &read_f32(gpu, &dx).await, &want, 2e-5, 1e-4);
        }
    }
}
