//! The matmuls with f32 arithmetic: the register kernel and the tiled kernel in every tile
//! shape that fits the device, over f32 / f16 / NF4 weights, every transpose and epilogue, as
//! linear layers forward and backward (the cases: `wgtune::kernels::selftest`, matmul.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(
    matmul_f32_math_matches_cpu_for_every_variant_format_transpose_and_epilogue,
    check_matmul
);
/// Every f32-math matmul variant against `cpu::matmul::gemm`.
async fn check_matmul(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Matmul).await;
}
