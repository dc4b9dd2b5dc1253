//! Compiled shader modules and compute pipelines, cached per device. The cache knows no
//! shader: the caller names each module by an id of its own and hands over the WGSL text the
//! first time it is asked for (the kernels' registry is `kernels::Shader`).

use std::collections::HashMap;
use std::sync::Mutex;

/// (module id, entry point, override constants as bits).
type PipelineKey = (u32, &'static str, Vec<(&'static str, u64)>);

/// Shader modules and compute pipelines, built on first use. Bind-group layouts come from the
/// pipelines (`layout: None`), so they are built once too.
pub struct PipelineCache {
    device: wgpu::Device,
    modules: Mutex<HashMap<u32, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    pub(super) fn new(device: wgpu::Device) -> Self {
        Self {
            device,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
        }
    }

    /// The pipeline for `entry` of module `id` with the given override constants; `source`
    /// gives the module's label and WGSL text when it is compiled (once per id).
    pub fn pipeline(
        &self,
        id: u32,
        source: impl FnOnce() -> (String, String),
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> wgpu::ComputePipeline {
        let key: PipelineKey = (
            id,
            entry,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let module = self
            .modules
            .lock()
            .unwrap()
            .entry(id)
            .or_insert_with(|| {
                let (label, wgsl) = source();
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&label),
                        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
                    })
            })
            .clone();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        pipeline
    }
}
