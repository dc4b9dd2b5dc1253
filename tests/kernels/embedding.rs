//! The token + position embedding against `cpu::embedding`, f32 and f16 tables (the cases:
//! `wgtune::kernels::selftest`, embedding.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(embedding_forward_matches_cpu, check_embedding);
/// Exact, for both table formats.
async fn check_embedding(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Embedding).await;
}
