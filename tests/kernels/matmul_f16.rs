//! The matmuls with f16 arithmetic (`Math::F16`, `shaders/matmul_math_f16.wgsl`) for f16 and
//! NF4 weights, every transpose, two epilogues, tiny and huge activations; skipped (reported
//! as such) without shader-f16 (the cases: `wgtune::kernels::selftest`, matmul_f16.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(
    gemm_f16_math_matches_cpu_for_every_transpose_and_epilogue,
    check_matmulf16
);
/// Every f16-math matmul variant against the f64 CPU reference over the same weights.
async fn check_matmulf16(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::MatmulF16).await;
}
