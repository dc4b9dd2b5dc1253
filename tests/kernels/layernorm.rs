//! LayerNorm forward and backward against `cpu::layernorm`, for each row reduction (the
//! cases: `wgtune::kernels::selftest`, layernorm.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(layernorm_forward_and_backward_match_cpu, check_layernorm);
/// Row lengths 1 to 1600, workgroup and (where the device has them) subgroup reductions.
async fn check_layernorm(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Layernorm).await;
}
