//! The GPU layer: device creation, pooled tensors, command recording, read-back, and a
//! pipeline cache. Nothing here knows about shaders, GPT-2 or the command line: the kernels
//! build on it and the model builds on them.

mod bind_groups;
mod commands;
mod context;
mod error;
mod fault;
mod pipelines;
mod pool;
mod tensor;

use std::any::Any;
use std::sync::{Arc, OnceLock};

pub use commands::{Commands, grid_1d};
#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use error::GpuError;
pub use pipelines::PipelineCache;
pub use pool::{BufferPool, PoolStats};
pub use tensor::Tensor;

/// Usage of every tensor buffer: bound as storage, filled by the queue, copied for read-back.
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// The GPU context: device, queue, limits and features in force, the pipeline cache and the
/// buffer pool. Built once per process (or per page) and shared.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pool: Arc<BufferPool>,
    pipelines: PipelineCache,
    /// Per-device state of the layer above, which gpu holds without knowing its type (the
    /// kernels keep their variant choices here, `kernels::Tuning`).
    attached: OnceLock<Box<dyn Any + Send + Sync>>,
    faults: Arc<fault::FaultLog>,
    /// Bound where a kernel's optional input is absent (e.g. a matmul without bias).
    dummy: Tensor,
    /// Kernel dispatches and queue submissions so far (benchmarks report them per step).
    pub(crate) dispatches: std::sync::atomic::AtomicU64,
    pub(crate) submissions: std::sync::atomic::AtomicU64,
    /// Host CPU time spent recording and submitting [`Commands`], in ns (natively; 0 on
    /// wasm32, which has no clock in std): the CPU cost of a step apart from the GPU's.
    pub(crate) host_ns: std::sync::atomic::AtomicU64,
    /// The uniform params buffer and the bind groups kept across submissions
    /// (`bind_groups.rs`), locked for the whole of a submission.
    bindings: std::sync::Mutex<bind_groups::Bindings>,
}

impl Gpu {
    /// Open the best adapter (see `context`) with its full limits.
    pub async fn new() -> Result<Self, GpuError> {
        let b = context::create_device().await?;
        // First, so that no error of ours can reach wgpu's panicking default handler.
        let faults = fault::FaultLog::install(&b.device);
        let limits = b.device.limits();
        let features = b.device.features();
        let info = b.adapter.get_info();
        let pool = BufferPool::new(b.device.clone());
        let pipelines = PipelineCache::new(b.device.clone());
        let dummy = Tensor::new(pool.take(4, TENSOR_USAGE), 1);
        Ok(Self {
            faults,
            dummy,
            dispatches: Default::default(),
            submissions: Default::default(),
            host_ns: Default::default(),
            bindings: Default::default(),
            adapter_info: info,
            device: b.device,
            queue: b.queue,
            limits,
            features,
            pool,
            pipelines,
            attached: OnceLock::new(),
        })
    }

    /// Blocking constructor for native code and tests.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self, GpuError> {
        pollster::block_on(Self::new())
    }

    /// Test hook (feature `test-hooks`): record a fault of `kind` (`oom`, `lost`) as wgpu's
    /// callbacks would; the next read-back or check reports it.
    #[cfg(feature = "test-hooks")]
    pub fn inject_fault(&self, kind: &str) {
        self.faults.inject(kind);
    }

    /// The first GPU fault (out of memory, device lost, an error wgpu reported) so far.
    pub fn check_healthy(&self) -> Result<(), GpuError> {
        self.faults.first().map_or(Ok(()), Err)
    }

    /// Compiled shader modules and pipelines of this device.
    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    /// The state a layer above attaches to this device, made by `init` on first use. One type
    /// per device: asking for another is a wgtune bug (a panic).
    pub fn attached<T: Any + Send + Sync>(&self, init: impl FnOnce(&Gpu) -> T) -> &T {
        self.attached
            .get_or_init(|| Box::new(init(self)))
            .downcast_ref()
            .expect("Gpu::attached holds one type")
    }

    /// [`Self::attached`], to change it (tests pin kernel variants this way).
    pub fn attached_mut<T: Any + Send + Sync>(&mut self, init: impl FnOnce(&Gpu) -> T) -> &mut T {
        self.attached(init);
        self.attached
            .get_mut()
            .and_then(|b| b.downcast_mut())
            .expect("Gpu::attached holds one type")
    }

    pub(crate) fn dummy(&self) -> &Tensor {
        &self.dummy
    }

    /// (kernel dispatches, command submissions) recorded by [`Commands`] so far.
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.dispatches.load(Relaxed),
            self.submissions.load(Relaxed),
        )
    }

    /// Host seconds spent so far recording and submitting [`Commands`], from the creation of
    /// each to the return of its `queue.submit`: the thread's CPU time on unix (a wall clock
    /// elsewhere; natively only). GPU work is not included.
    pub fn host_time(&self) -> f64 {
        self.host_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
    }

    /// (bind groups reused from the cache, bind groups built) by [`Commands`] so far.
    pub fn bind_group_counts(&self) -> (u64, u64) {
        self.bindings.lock().unwrap().counts()
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// The largest tensor (in 32-bit words) one shader binding can see.
    pub fn max_binding_words(&self) -> usize {
        (self.limits.max_storage_buffer_binding_size / 4) as usize
    }

    /// An uninitialised tensor of `len` 32-bit words.
    pub fn tensor(&self, len: usize) -> Tensor {
        Tensor::new(self.pool.take(len as u64 * 4, TENSOR_USAGE), len)
    }

    pub fn upload_f32(&self, data: &[f32]) -> Tensor {
        self.upload_words(bytemuck::cast_slice(data))
    }

    pub fn upload_u32(&self, data: &[u32]) -> Tensor {
        self.upload_words(data)
    }

    /// Upload raw bytes (f16 or NF4-packed weights), zero-padded to whole 32-bit words.
    pub fn upload_bytes(&self, bytes: &[u8]) -> Tensor {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        self.upload_words(&words)
    }

    fn upload_words(&self, words: &[u32]) -> Tensor {
        let t = self.tensor(words.len());
        self.write(&t, words);
        t
    }

    /// Overwrite a tensor's words from the host (ordered before the next submission).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        assert_eq!(bytes.len() as u64, t.size_bytes(), "write size mismatch");
        if !bytes.is_empty() {
            self.queue.write_buffer(t.buffer(), t.offset_bytes(), bytes);
        }
    }

    /// A tensor of `len` zero words.
    pub fn zeros(&self, len: usize) -> Tensor {
        let t = self.tensor(len);
        let mut cmd = self.commands();
        cmd.clear(&t);
        cmd.submit();
        t
    }

    /// Start recording a batch of GPU work (submitted as one command buffer).
    pub fn commands(&self) -> Commands<'_> {
        Commands::new(self)
    }

    /// Block until the GPU has finished all submitted work (native); a no-op on the web.
    pub fn wait(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Copy a tensor back to the host as raw words.
    pub async fn read_words(&self, t: &Tensor) -> Result<Vec<u32>, GpuError> {
        self.check_healthy()?;
        if t.is_empty() {
            return Ok(Vec::new());
        }
        let staging = self.pool.take(
            t.size_bytes(),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(
            t.buffer(),
            t.offset_bytes(),
            &staging.buffer,
            0,
            t.size_bytes(),
        );
        self.queue.submit([enc.finish()]);
        let slice = staging.buffer.slice(0..t.size_bytes());
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait();
        // A fault explains a failed (or garbage) read-back better than the mapping error.
        let mapped = rx.await;
        self.check_healthy()?;
        mapped
            .map_err(|_| GpuError::Lost("the read-back was dropped".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let words = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            bytemuck::pod_collect_to_vec::<u8, u32>(&view)
        };
        staging.buffer.unmap();
        Ok(words)
    }

    pub async fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>, GpuError> {
        Ok(bytemuck::cast_vec(self.read_words(t).await?))
    }

    /// Blocking read-back for native code and tests.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32_blocking(&self, t: &Tensor) -> Vec<f32> {
        pollster::block_on(self.read_f32(t)).expect("GPU read-back")
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_words_blocking(&self, t: &Tensor) -> Vec<u32> {
        pollster::block_on(self.read_words(t)).expect("GPU read-back")
    }
}

/// A human-readable summary of the adapter, backend, limits and features in use.
pub fn describe(gpu: &Gpu) -> String {
    let i = &gpu.adapter_info;
    let l = &gpu.limits;
    let mib = |b: u64| format!("{} MiB", b / (1024 * 1024));
    let has = |f: wgpu::Features| {
        if gpu.features.contains(f) {
            "yes"
        } else {
            "no"
        }
    };
    let mut s = String::new();
    use std::fmt::Write;
    let _ = writeln!(s, "  adapter: {} ({:?})", i.name, i.device_type);
    let _ = writeln!(s, "  backend: {:?}", i.backend);
    let _ = writeln!(s, "  driver: {} {}", i.driver, i.driver_info);
    let _ = writeln!(s, "  limits:");
    let _ = writeln!(s, "    max_buffer_size: {}", mib(l.max_buffer_size));
    let _ = writeln!(
        s,
        "    max_storage_buffer_binding_size: {}",
        mib(l.max_storage_buffer_binding_size)
    );
    let _ = writeln!(
        s,
        "    max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    let _ = writeln!(
        s,
        "    max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    let _ = writeln!(
        s,
        "    max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    let _ = writeln!(
        s,
        "    max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    let _ = writeln!(
        s,
        "    min_storage_buffer_offset_alignment: {}",
        l.min_storage_buffer_offset_alignment
    );
    let _ = writeln!(s, "  features:");
    let _ = writeln!(s, "    shader-f16: {}", has(wgpu::Features::SHADER_F16));
    let _ = writeln!(
        s,
        "    subgroups: {} (size {}..{})",
        has(wgpu::Features::SUBGROUP),
        i.subgroup_min_size,
        i.subgroup_max_size
    );
    let _ = write!(
        s,
        "    timestamp-query: {}",
        has(wgpu::Features::TIMESTAMP_QUERY)
    );
    s
}
