//! The matrix-vector kernel (`shaders/gemv.wgsl`, C with at most 4 rows) against the CPU gemm,
//! for every weight format, transpose and epilogue, and through `gemm`'s routing (the cases:
//! `wgtune::kernels::selftest`, gemv.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(
    gemv_matches_cpu_for_every_format_transpose_and_epilogue,
    check_gemv
);
/// gemv over f32, f16 and NF4 weights.
async fn check_gemv(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Gemv).await;
}
