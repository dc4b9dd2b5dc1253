//! LoRA's seeded dropout (bit-identical masks, keep rate), forward and backward against
//! `cpu::lora` (the cases: `wgtune::kernels::selftest`, lora.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(lora_dropout_forward_and_backward_match_cpu, check_lora);
/// Dropout masks and the LoRA forward / backward.
async fn check_lora(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Lora).await;
}
