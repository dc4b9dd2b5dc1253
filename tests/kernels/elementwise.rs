//! GELU forward / backward and addition against `cpu::elementwise` (the cases:
//! `wgtune::kernels::selftest`, elementwise.rs), and the dispatch grid.

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(gelu_and_add_match_cpu, check_elementwise);
/// GELU (with huge arguments) and exact addition.
async fn check_elementwise(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Elementwise).await;
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
