//! The matmuls' and gemv's low-rank epilogue (LoRA's up-projection fused into the base layer)
//! against the unfused CPU computation, and `lora_linear_forward` as the model runs it (the
//! cases: `wgtune::kernels::selftest`, matmul_low_rank.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(
    low_rank_epilogue_matches_base_plus_separate_lora,
    check_matmullowrank
);
/// Every kernel and weight format with ranks 1, 3, 8, 64 and three epilogues.
async fn check_matmullowrank(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::MatmulLowRank).await;
}
