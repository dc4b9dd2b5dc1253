//! GPU kernels against their CPU references (`wgtune::cpu`), on random data and odd shapes.
//! Runs on whatever adapter wgpu finds (lavapipe in CI). Without an adapter the tests fail
//! when CI=true and are skipped with a message otherwise.

mod common;

mod attention;
mod cross_entropy;
mod elementwise;
mod embedding;
mod layernorm;
mod lora;
mod matmul;
mod nf4;
mod optim;
