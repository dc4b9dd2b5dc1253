//! Gradient norm, clipping and AdamW against `cpu::optim` (the cases:
//! `wgtune::kernels::selftest`, optim.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(grad_norm_clipping_and_adamw_steps_match_cpu, check_optim);
/// Five steps at four sizes.
async fn check_optim(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Optim).await;
}
