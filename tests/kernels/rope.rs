//! RoPE with q/k/v packing and its backward against `cpu::rope` (the cases:
//! `wgtune::kernels::selftest`, rope.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(rope_pack_and_unpack_match_cpu, check_rope);
/// Head dims 2 to 64 (12 and 20: not powers of two), GQA groups, a KV-cache step.
async fn check_rope(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Rope).await;
}
