//! The WGSL kernels of a GPT-2 LoRA / QLoRA training step, one module per layer family.
//!
//! Each module has thin wrappers that record dispatches into [`Commands`](crate::gpu::Commands);
//! each kernel has a plain-Rust twin in [`crate::cpu`] that [`selftest`] (and through it the
//! kernel tests and the autotuner) compares against.
//! Shader text lives in `shaders/*.wgsl`, registered in [`Shader`] and compiled once per device
//! (on first use, cached by the device's pipeline cache). Which variant of a kernel runs
//! (tiled or register matmul, subgroup reductions, f16 math, ...) is the device's [`Tuning`].

// Kernel wrappers mirror llm.c's signatures (outputs first, then inputs, then sizes).
#![allow(clippy::too_many_arguments)]

pub mod attention;
pub mod autotune;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod gemv;
pub mod layernorm;
pub mod lora;
pub mod matmul;
pub mod nf4;
pub mod optim;
pub mod rope;
pub mod selftest;
mod shaders;
mod tuning;

pub use shaders::Shader;
pub use tuning::{KernelState, Tuning, check_env, state, tuning, tuning_mut};

/// How a row kernel (one workgroup per row: layernorm, the cross-entropy row max and sums)
/// reduces across its workgroup. Both give the same sums up to f32 rounding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Whichever the device's [`Tuning`] picks (`subgroups`): what the model runs.
    Auto,
    /// A tree through workgroup memory (`reduce_wg.wgsl`): every device, and the web.
    Workgroup,
    /// subgroupAdd / subgroupMax, then one step through workgroup memory across subgroups
    /// (`reduce_subgroup.wgsl`): fewer barriers. Needs `subgroups`, native only.
    Subgroup,
}

impl Reduction {
    /// Whether the subgroup variant runs: `Auto` as the tuning says; `Subgroup` falls back
    /// to `Workgroup` on a device without the feature and on wasm32 (never compiled there).
    pub fn uses_subgroups(self, gpu: &crate::gpu::Gpu) -> bool {
        let want = match self {
            Reduction::Auto => tuning(gpu).subgroups,
            Reduction::Workgroup => false,
            Reduction::Subgroup => true,
        };
        want && !cfg!(target_arch = "wasm32") && gpu.features.contains(wgpu::Features::SUBGROUP)
    }
}
