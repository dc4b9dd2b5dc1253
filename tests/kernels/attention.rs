//! Causal attention forward (and the KV-cache row) and backward against `cpu::attention`
//! (the cases: `wgtune::kernels::selftest`, attention.rs).

use crate::gpu_test;
use wgtune::gpu::Gpu;
use wgtune::kernels::selftest::Family;

gpu_test!(attention_forward_and_backward_match_cpu, check_attention);
/// Odd T, head dims 1 to 64, padded sequences, grouped-query attention (1 to 3 KV heads).
async fn check_attention(gpu: &Gpu) {
    crate::common::assert_family(gpu, Family::Attention).await;
}
