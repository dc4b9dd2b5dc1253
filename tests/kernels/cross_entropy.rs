//! The tied LM head + cross-entropy in vocabulary chunks against full logits on the CPU, for
//! each row reduction (the cases: `wgtune::kernels::selftest`, cross_entropy.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(
    lm_head_loss_and_gradient_match_cpu_across_chunkings,
    check_crossentropy
);
/// Vocabularies 1 to 50257, f32 and f16 tables, with and without dx.
async fn check_crossentropy(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::CrossEntropy).await;
}
