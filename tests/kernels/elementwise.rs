use crate::common::{Rng, assert_close, read_f32};
use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::{cpu, kernels};

gpu_test!(gelu_forward_and_backward_match_cpu, check_gelu);
/// f32 arithmetic and the GPU tanh (a few ulp) vs f64: 2e-6 absolute + relative, tight enough
/// to catch a wrong constant in the 4th significant digit.
async fn check_gelu(gpu: &Gpu) {
    let mut rng = Rng::new(4);
    for &n in &[1usize, 3, 1000, 70001] {
        let mut x = rng.vec(n, 5.0);
        if n > 3 {
            x[0] = 40.0; // large arguments must not give NaN
            x[1] = -40.0;
        }
        let dout = rng.vec(n, 1.0);
        let acc0 = rng.vec(n, 1.0);
        let mut want_y = vec![0.0; n];
        cpu::elementwise::gelu_forward(&mut want_y, &x);
        let mut want_dx = acc0.clone();
        cpu::elementwise::gelu_backward(&mut want_dx, &x, &dout, true);

        let (gx, gy, gdx) = (gpu.upload_f32(&x), gpu.tensor(n), gpu.upload_f32(&acc0));
        let mut cmd = gpu.commands();
        kernels::elementwise::gelu_forward(&mut cmd, &gy, &gx, n);
        kernels::elementwise::gelu_backward(&mut cmd, &gdx, &gx, &gpu.upload_f32(&dout), n, true);
        cmd.submit();
        assert_close("gelu", &read_f32(gpu, &gy).await, &want_y, 2e-6, 2e-6);
        assert_close("gelu'", &read_f32(gpu, &gdx).await, &want_dx, 2e-6, 2e-6);
    }
}

gpu_test!(add_matches_cpu, check_add);
/// One f32 addition: exact.
async fn check_add(gpu: &Gpu) {
    let mut rng = Rng::new(5);
    for &n in &[1usize, 17, 5000] {
        let (a, b) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let out = gpu.tensor(n);
        let mut cmd = gpu.commands();
        kernels::elementwise::add(&mut cmd, &out, &gpu.upload_f32(&a), &gpu.upload_f32(&b), n);
        cmd.submit();
        assert_close("add", &read_f32(gpu, &out).await, &want, 0.0, 0.0);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn grid_folds_large_dispatches_within_limits() {
    for &n in &[
        1usize,
        255,
        256,
        257,
        65535 * 256,
        65535 * 256 + 1,
        100_000_000,
    ] {
        let g = wgtune::gpu::grid_1d(n, 256);
        assert!(g[0] <= 65535 && g[1] <= 65535, "{n}: {g:?}");
        assert!(
            g[0] as usize * g[1] as usize * 256 >= n,
            "{n}: {g:?} too small"
        );
    }
}
