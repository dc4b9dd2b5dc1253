//! GPU kernels against their CPU references (`wgtune::cpu`), on random data and odd shapes.
//! Runs on whatever adapter wgpu finds (lavapipe in CI). Without an adapter the tests fail
//! in CI (`CI` set to anything but empty, 0 or false: `common::ci`) and are skipped with a
//! message otherwise.
//!
//! The same tests run in a browser over WebGPU (`scripts/test-browser-kernels.sh`): each GPU
//! test body is an `async fn(&Gpu)` that `gpu_test!` turns into a native `#[test]` and a
//! `#[wasm_bindgen_test]`. There a missing WebGPU adapter fails the test.

mod common;

mod attention;
mod cross_entropy;
mod elementwise;
mod embedding;
mod gemv;
mod layernorm;
mod lora;
mod matmul;
mod matmul_f16;
mod matmul_low_rank;
mod nf4;
mod optim;
mod rope;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
