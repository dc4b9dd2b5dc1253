//! Plain-Rust CPU references of every GPU kernel, written for clarity rather than speed
//! (llm.c style: forward/backward pairs, shapes in comments, f64 accumulation where a sum is
//! long). The selftest (`kernels::selftest`: `wgtune selftest`, the kernel tests in
//! tests/kernels/, the autotuner's check) compares the GPU kernels against these; PyTorch
//! fixtures check the model and training built from the kernels (tests/model/,
//! tests/train/), not these.

// References mirror llm.c's signatures (outputs first, then inputs, then sizes).
#![allow(clippy::too_many_arguments)]

pub mod attention;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod layernorm;
pub mod lora;
pub mod matmul;
pub mod optim;
pub mod rope;
