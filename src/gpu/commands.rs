//! Recording GPU work: kernels push dispatches (pipeline + uniform params + tensors), then one
//! `submit` writes every dispatch's params into the device's uniform buffer, takes the bind
//! groups from the cache (`bind_groups.rs`: a step binds what the previous one did) and encodes
//! everything as a single command buffer. Tensors stay alive (and out of the pool)
//! until the work is submitted.

use super::{Gpu, Tensor};

/// Every dispatch's uniform params get a slot of this many bytes (the usual
/// `min_uniform_buffer_offset_alignment`; checked against the device in `submit`).
const UNIFORM_SLOT: usize = 256;

enum Op {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        uniform_offset: usize,
        uniform_size: usize,
        /// (binding, tensor) pairs.
        tensors: Vec<(u32, Tensor)>,
        groups: [u32; 3],
    },
    Copy {
        src: Tensor,
        dst: Tensor,
    },
    Clear(Tensor),
}

pub struct Commands<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    uniforms: Vec<u8>,
    /// [`host_clock_ns`] when recording began (the host cost counted in `Gpu::host_time`).
    #[cfg(not(target_arch = "wasm32"))]
    started: u64,
}

impl<'g> Commands<'g> {
    pub(super) fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            ops: Vec::new(),
            uniforms: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            started: host_clock_ns(),
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Number of kernel dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Dispatch { .. }))
            .count()
    }

    /// Record one dispatch. `params` is bound at binding 0 as a uniform; `tensors` at bindings
    /// 1, 2, ... in order, exactly the storage bindings the entry point uses.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) {
        let bound: Vec<(u32, &Tensor)> = (1..).zip(tensors.iter().copied()).collect();
        self.dispatch_bound(pipeline, params, &bound, groups);
    }

    /// [`dispatch`](Self::dispatch) with explicit binding numbers, for entry points whose
    /// storage bindings have gaps (e.g. the matmul's low-rank epilogue at 6 and 7, after
    /// bindings 1..4 of f32 weights, which lack NF4's binding 5).
    pub fn dispatch_bound<P: bytemuck::Pod>(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        tensors: &[(u32, &Tensor)],
        groups: [u32; 3],
    ) {
        if groups.contains(&0) {
            return; // nothing to do (an empty tensor)
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        assert!(
            groups.iter().all(|&g| g <= max),
            "dispatch {groups:?} exceeds {max} workgroups per dimension"
        );
        let max_binding = self.gpu.limits.max_storage_buffer_binding_size;
        let align = self.gpu.limits.min_storage_buffer_offset_alignment as u64;
        for (_, t) in tensors {
            assert!(
                t.size_bytes() <= max_binding,
                "a {} MiB tensor exceeds this GPU's {} MiB storage binding limit: split it",
                t.size_bytes() >> 20,
                max_binding >> 20
            );
            assert!(
                t.offset_bytes().is_multiple_of(align),
                "tensor slice at byte {} is not {align}-byte aligned for binding",
                t.offset_bytes()
            );
        }
        let bytes = bytemuck::bytes_of(params);
        let uniform_offset = self.uniforms.len();
        self.uniforms.extend_from_slice(bytes);
        self.uniforms.resize(
            uniform_offset + bytes.len().div_ceil(UNIFORM_SLOT) * UNIFORM_SLOT,
            0,
        );
        self.ops.push(Op::Dispatch {
            pipeline: pipeline.clone(),
            uniform_offset,
            uniform_size: bytes.len(),
            tensors: tensors.iter().map(|&(i, t)| (i, t.clone())).collect(),
            groups,
        });
    }

    /// Record a copy of `src` into `dst` (same length).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) {
        assert_eq!(src.len(), dst.len(), "copy length mismatch");
        self.ops.push(Op::Copy {
            src: src.clone(),
            dst: dst.clone(),
        });
    }

    /// Record zero-filling of `t`.
    pub fn clear(&mut self, t: &Tensor) {
        self.ops.push(Op::Clear(t.clone()));
    }

    /// Encode and submit everything recorded, as one command buffer.
    pub fn submit(self) -> wgpu::SubmissionIndex {
        let gpu = self.gpu;
        use std::sync::atomic::Ordering::Relaxed;
        gpu.dispatches
            .fetch_add(self.dispatch_count() as u64, Relaxed);
        gpu.submissions.fetch_add(1, Relaxed);
        assert!(gpu.limits.min_uniform_buffer_offset_alignment as usize <= UNIFORM_SLOT);
        // Locked until the queue has the work: another thread's params must not overwrite
        // this submission's in the one uniform buffer before it is submitted.
        let mut bindings = gpu.bindings.lock().unwrap();
        let uniform = (!self.uniforms.is_empty())
            .then(|| bindings.uniform_buffer(&gpu.device, &gpu.queue, &self.uniforms));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let mut i = 0;
        while i < self.ops.len() {
            match &self.ops[i] {
                Op::Copy { src, dst } => {
                    enc.copy_buffer_to_buffer(
                        src.buffer(),
                        src.offset_bytes(),
                        dst.buffer(),
                        dst.offset_bytes(),
                        src.size_bytes(),
                    );
                    i += 1;
                }
                Op::Clear(t) => {
                    enc.clear_buffer(t.buffer(), t.offset_bytes(), Some(t.size_bytes()));
                    i += 1;
                }
                Op::Dispatch { .. } => {
                    // One compute pass for the whole run of consecutive dispatches.
                    let uniform = uniform.as_ref().expect("uniforms recorded");
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    while let Some(Op::Dispatch {
                        pipeline,
                        uniform_offset,
                        uniform_size,
                        tensors,
                        groups,
                    }) = self.ops.get(i)
                    {
                        let mut entries = Vec::with_capacity(tensors.len() + 1);
                        entries.push((
                            0,
                            uniform.clone(),
                            *uniform_offset as u64,
                            *uniform_size as u64,
                        ));
                        for (binding, t) in tensors {
                            entries.push((
                                *binding,
                                t.buffer().clone(),
                                t.offset_bytes(),
                                t.size_bytes().max(4),
                            ));
                        }
                        let bind_group = bindings.bind_group(&gpu.device, pipeline, entries);
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, &bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                }
            }
        }
        let index = gpu.queue.submit([enc.finish()]);
        bindings.submitted();
        #[cfg(not(target_arch = "wasm32"))]
        gpu.host_ns
            .fetch_add(host_clock_ns().saturating_sub(self.started), Relaxed);
        index
    }
}

/// The calling thread's CPU time in ns where the OS gives it (unix), else a wall clock.
/// Recording and submitting is CPU work on one thread: CPU time leaves out what a loaded
/// machine (or lavapipe's shader threads, on the same cores) would add to a wall clock.
#[cfg(unix)]
fn host_clock_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; it has no other
    // effect. CLOCK_THREAD_CPUTIME_ID exists on Linux, macOS and the BSDs.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(all(not(unix), not(target_arch = "wasm32")))]
fn host_clock_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Workgroup counts covering `n` invocations of a 1-D kernel with `wg` invocations per group,
/// folded into (x, y) when x would exceed the per-dimension limit. Shaders recover the flat
/// index as `gid.x + gid.y * num_workgroups.x * wg`.
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}
