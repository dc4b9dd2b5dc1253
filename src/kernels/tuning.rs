//! Which kernel variants a device runs. Chosen on first use from the adapter's type and
//! features; `WGTUNE_KERNELS` overrides it for benchmarks and experiments (tests call the
//! variants explicitly instead, so that one process checks all of them). Where the autotuner
//! has timed a matmul shape class (`autotune`), its choice wins over these defaults, unless
//! `WGTUNE_KERNELS` is set. Both are kept with the device ([`Gpu::attached`]).

use std::sync::Mutex;

use super::autotune::Tuned;
use crate::gpu::Gpu;

/// What the kernels keep per device: the variants in force and the autotuner's choices.
pub struct KernelState {
    pub tuning: Tuning,
    pub tuned: Mutex<Tuned>,
}

impl KernelState {
    fn for_device(gpu: &Gpu) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        let forced = std::env::var("WGTUNE_KERNELS").is_ok();
        #[cfg(target_arch = "wasm32")]
        let forced = false;
        Self {
            tuning: Tuning::for_device(gpu),
            tuned: Mutex::new(Tuned::for_device(gpu, forced)),
        }
    }
}

/// The kernel state of `gpu`, made on first use (the cache file is read then, natively).
pub fn state(gpu: &Gpu) -> &KernelState {
    gpu.attached(KernelState::for_device)
}

/// The variants in force on `gpu`.
pub fn tuning(gpu: &Gpu) -> &Tuning {
    &state(gpu).tuning
}

/// The variants in force on `gpu`, to change them (tests pin f32 arithmetic this way).
pub fn tuning_mut(gpu: &mut Gpu) -> &mut Tuning {
    &mut gpu.attached_mut(KernelState::for_device).tuning
}

/// The `WGTUNE_KERNELS` variable, checked: front ends call this before opening the GPU, so
/// that a typo is an error rather than the warning [`Tuning::for_device`] logs.
pub fn check_env() -> Result<(), String> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(list) = std::env::var("WGTUNE_KERNELS") {
        Tuning::auto(wgpu::DeviceType::Cpu, wgpu::Features::all())
            .with_overrides(&list, wgpu::Features::all())?;
    }
    Ok(())
}

/// Kernel variants in force for one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Matmul tiles staged in workgroup memory (what suits real GPUs), rather than the
    /// register-only kernel that suits CPU adapters such as lavapipe, where barriers are slow.
    pub tiled_matmul: bool,
    /// f16 arithmetic in the matmul inner loop, register or tiled kernel (needs `shader-f16`;
    /// checked against f32). Opt-in (`WGTUNE_KERNELS=f16`) until a real GPU shows it pays: its
    /// per-row scaling adds about as many instructions as it saves, and on lavapipe the tiled
    /// kernel ran at half speed with it.
    pub f16_math: bool,
    /// Subgroup reductions (needs `subgroups`, native only: wgpu's web backend lacks them).
    pub subgroups: bool,
    /// A matrix-vector kernel for products of at most 4 rows (decoding), on every adapter;
    /// `-gemv` keeps the general matmul there (to compare the two).
    pub gemv: bool,
    /// LoRA's up-projection `scale·u·Bᵀ` added in the base matmul's epilogue (one dispatch
    /// and one pass over y less per adapted layer) rather than by a gemm of its own; `-fuse`
    /// keeps the separate gemm (to compare the two).
    pub fused_lora: bool,
}

impl Tuning {
    /// [`Self::auto`] for `gpu`, with `WGTUNE_KERNELS` applied (natively). An unknown variant
    /// there is logged and ignored ([`check_env`] reports it as an error).
    pub fn for_device(gpu: &Gpu) -> Self {
        let auto = Self::auto(gpu.adapter_info.device_type, gpu.features);
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(list) = std::env::var("WGTUNE_KERNELS") {
            match auto.with_overrides(&list, gpu.features) {
                Ok(t) => return t,
                Err(e) => log::warn!("{e}"),
            }
        }
        auto
    }

    /// The variants that suit an adapter of this type with these features.
    pub fn auto(device_type: wgpu::DeviceType, features: wgpu::Features) -> Self {
        let gpu = !matches!(device_type, wgpu::DeviceType::Cpu);
        Self {
            tiled_matmul: gpu,
            f16_math: false,
            subgroups: gpu && features.contains(wgpu::Features::SUBGROUP),
            gemv: true,
            fused_lora: true,
        }
    }

    /// Apply a `WGTUNE_KERNELS`-style list such as `tiled,-f16,subgroups` (`-` turns a variant
    /// off). A variant whose feature the device lacks stays off.
    pub fn with_overrides(mut self, list: &str, features: wgpu::Features) -> Result<Self, String> {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (on, name) = match item.strip_prefix('-') {
                Some(rest) => (false, rest),
                None => (true, item),
            };
            match name {
                "tiled" => self.tiled_matmul = on,
                "f16" => self.f16_math = on && features.contains(wgpu::Features::SHADER_F16),
                "subgroups" => self.subgroups = on && features.contains(wgpu::Features::SUBGROUP),
                "gemv" => self.gemv = on,
                "fuse" => self.fused_lora = on,
                _ => {
                    return Err(format!(
                        "WGTUNE_KERNELS: unknown kernel variant {name:?}; use tiled, f16, subgroups, gemv, fuse (prefix - to turn one off)"
                    ));
                }
            }
        }
        Ok(self)
    }
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "tiled matmul {}, f16 math {}, subgroups {}, gemv {}, fused lora {}",
            on(self.tiled_matmul),
            on(self.f16_math),
            on(self.subgroups),
            on(self.gemv),
            on(self.fused_lora)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_and_overrides() {
        let all = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let cpu = Tuning::auto(wgpu::DeviceType::Cpu, all);
        assert!(!cpu.tiled_matmul && !cpu.f16_math && !cpu.subgroups);
        let gpu = Tuning::auto(wgpu::DeviceType::DiscreteGpu, all);
        assert!(gpu.tiled_matmul && !gpu.f16_math && gpu.subgroups);
        let no_f16 = Tuning::auto(wgpu::DeviceType::IntegratedGpu, wgpu::Features::empty());
        assert!(no_f16.tiled_matmul && !no_f16.f16_math && !no_f16.subgroups);
        let t = cpu.with_overrides("tiled, f16, -gemv", all).unwrap();
        assert!(t.tiled_matmul && t.f16_math && !t.subgroups && !t.gemv && t.fused_lora);
        assert!(!cpu.with_overrides("-fuse", all).unwrap().fused_lora);
        let t = gpu
            .with_overrides("-tiled,subgroups", wgpu::Features::empty())
            .unwrap();
        assert!(!t.tiled_matmul && !t.subgroups);
        assert!(
            cpu.with_overrides("fast", all)
                .unwrap_err()
                .contains("fast")
        );
    }
}
