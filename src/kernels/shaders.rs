//! The registry of shader files: every compilable shader and its WGSL text.

/// One compilable shader: a `shaders/` file, or a composition of several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Embedding,
    /// layernorm.wgsl with workgroup-memory reductions (reduce_wg.wgsl).
    LayerNorm,
    /// layernorm.wgsl with subgroup reductions (reduce_subgroup.wgsl); native only.
    LayerNormSubgroups,
    Elementwise,
    /// matmul.wgsl with the B loader for f32, f16 or NF4 weights (f32 arithmetic).
    MatmulF32,
    MatmulF16,
    MatmulNf4,
    /// matmul_tiled.wgsl (workgroup-memory tiles, for real GPUs) with the same B loaders.
    MatmulTiledF32,
    MatmulTiledF16,
    MatmulTiledNf4,
    /// The same for f16 / NF4 weights with f16 arithmetic in the inner loop
    /// (`enable f16;`: only for devices with `shader-f16`, see [`Shader::needs_f16`]).
    MatmulF16Math16,
    MatmulNf4Math16,
    MatmulTiledF16Math16,
    MatmulTiledNf4Math16,
    /// gemv.wgsl (C with at most 4 rows, e.g. decoding) with the same B loaders.
    GemvF32,
    GemvF16,
    GemvNf4,
    Nf4,
    Lora,
    Attention,
    /// Rotary position embedding with q/k/v packing (Llama, Qwen2).
    Rope,
    /// cross_entropy.wgsl with workgroup-memory reductions.
    CrossEntropy,
    /// cross_entropy.wgsl with subgroup reductions; native only.
    CrossEntropySubgroups,
    Optim,
}

impl Shader {
    /// The WGSL source; the one registry of shader files.
    pub fn source(self) -> String {
        const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
        const TILED: &str = include_str!("../../shaders/matmul_tiled.wgsl");
        const GEMV: &str = include_str!("../../shaders/gemv.wgsl");
        // Params, bindings and index helpers shared by MATMUL, TILED and GEMV.
        const COMMON: &str = include_str!("../../shaders/matmul_common.wgsl");
        const B_F32: &str = include_str!("../../shaders/matmul_b_f32.wgsl");
        const B_F16: &str = include_str!("../../shaders/matmul_b_f16.wgsl");
        const B_NF4: &str = include_str!("../../shaders/matmul_b_nf4.wgsl");
        const LAYERNORM: &str = include_str!("../../shaders/layernorm.wgsl");
        const CROSS_ENTROPY: &str = include_str!("../../shaders/cross_entropy.wgsl");
        const REDUCE_WG: &str = include_str!("../../shaders/reduce_wg.wgsl");
        // Browsers require `enable subgroups;`, which naga rejects, and wgpu's web backend has
        // no subgroups: the web never gets the subgroup text (Reduction::resolve never asks).
        #[cfg(not(target_arch = "wasm32"))]
        const REDUCE_SUBGROUP: &str = include_str!("../../shaders/reduce_subgroup.wgsl");
        #[cfg(target_arch = "wasm32")]
        const REDUCE_SUBGROUP: &str = REDUCE_WG;
        const MATH_F32: &str = include_str!("../../shaders/matmul_math_f32.wgsl");
        // Starts with `enable f16;`, which must open the module.
        const MATH_F16: &str = include_str!("../../shaders/matmul_math_f16.wgsl");
        match self {
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl").into(),
            Shader::LayerNorm => [REDUCE_WG, LAYERNORM].concat(),
            Shader::LayerNormSubgroups => [REDUCE_SUBGROUP, LAYERNORM].concat(),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl").into(),
            Shader::MatmulF32 => [MATH_F32, B_F32, COMMON, MATMUL].concat(),
            Shader::MatmulF16 => [MATH_F32, B_F16, COMMON, MATMUL].concat(),
            Shader::MatmulNf4 => [MATH_F32, B_NF4, COMMON, MATMUL].concat(),
            Shader::MatmulF16Math16 => [MATH_F16, B_F16, COMMON, MATMUL].concat(),
            Shader::MatmulNf4Math16 => [MATH_F16, B_NF4, COMMON, MATMUL].concat(),
            Shader::MatmulTiledF32 => [MATH_F32, B_F32, COMMON, TILED].concat(),
            Shader::MatmulTiledF16 => [MATH_F32, B_F16, COMMON, TILED].concat(),
            Shader::MatmulTiledNf4 => [MATH_F32, B_NF4, COMMON, TILED].concat(),
            Shader::MatmulTiledF16Math16 => [MATH_F16, B_F16, COMMON, TILED].concat(),
            Shader::MatmulTiledNf4Math16 => [MATH_F16, B_NF4, COMMON, TILED].concat(),
            Shader::GemvF32 => [B_F32, COMMON, GEMV].concat(),
            Shader::GemvF16 => [B_F16, COMMON, GEMV].concat(),
            Shader::GemvNf4 => [B_NF4, COMMON, GEMV].concat(),
            Shader::Nf4 => include_str!("../../shaders/nf4.wgsl").into(),
            Shader::Lora => include_str!("../../shaders/lora.wgsl").into(),
            Shader::Attention => include_str!("../../shaders/attention.wgsl").into(),
            Shader::Rope => include_str!("../../shaders/rope.wgsl").into(),
            Shader::CrossEntropy => [REDUCE_WG, CROSS_ENTROPY].concat(),
            Shader::CrossEntropySubgroups => [REDUCE_SUBGROUP, CROSS_ENTROPY].concat(),
            Shader::Optim => include_str!("../../shaders/optim.wgsl").into(),
        }
    }

    /// Whether the shader text enables f16 (compile it only where the device has `shader-f16`).
    pub fn needs_f16(self) -> bool {
        matches!(
            self,
            Shader::MatmulF16Math16
                | Shader::MatmulNf4Math16
                | Shader::MatmulTiledF16Math16
                | Shader::MatmulTiledNf4Math16
        )
    }

    pub const ALL: [Shader; 24] = [
        Shader::Embedding,
        Shader::LayerNorm,
        Shader::LayerNormSubgroups,
        Shader::Elementwise,
        Shader::MatmulF32,
        Shader::MatmulF16,
        Shader::MatmulNf4,
        Shader::MatmulTiledF32,
        Shader::MatmulTiledF16,
        Shader::MatmulTiledNf4,
        Shader::MatmulF16Math16,
        Shader::MatmulNf4Math16,
        Shader::MatmulTiledF16Math16,
        Shader::MatmulTiledNf4Math16,
        Shader::GemvF32,
        Shader::GemvF16,
        Shader::GemvNf4,
        Shader::Nf4,
        Shader::Lora,
        Shader::Attention,
        Shader::Rope,
        Shader::CrossEntropy,
        Shader::CrossEntropySubgroups,
        Shader::Optim,
    ];
}

impl Shader {
    /// The pipeline for `entry` of this shader on `gpu`, compiled on first use (cached by the
    /// device's [`PipelineCache`](crate::gpu::PipelineCache)).
    pub fn pipeline(
        self,
        gpu: &crate::gpu::Gpu,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> wgpu::ComputePipeline {
        let source = || (format!("{self:?}"), self.source());
        gpu.pipelines()
            .pipeline(self as u32, source, entry, constants)
    }
}

/// FNV-1a over the WGSL of every matmul and gemv shader: part of the autotuner's cache key, so
/// that a changed kernel is timed afresh.
pub fn matmul_source_hash() -> u64 {
    Shader::ALL
        .iter()
        .filter(|s| format!("{s:?}").starts_with("Matmul") || format!("{s:?}").starts_with("Gemv"))
        .flat_map(|s| s.source().into_bytes())
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
}
