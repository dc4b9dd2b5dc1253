//! What submissions bind: the uniform params buffer, and bind groups kept across submissions.
//! A training step records the same ~600 dispatches on
//! the same pooled buffers every step (the pool hands the buffers back in the same order), so
//! the bind group of a dispatch (pipeline, uniform slot, storage ranges) is almost always the
//! one the previous step built. Creating one costs microseconds of host time each; looking it
//! up costs a hash. What a bind group binds is all of its identity here: a buffer that was
//! handed back to the pool and taken again by another tensor binds the same range, so reusing
//! the bind group is right. Entries unused for [`KEEP_SUBMISSIONS`] submissions are dropped, so
//! that the cache does not keep destroyed or long-idle buffers referenced.

use std::collections::HashMap;

/// Submissions an entry survives unused (a training loop's eval and decode submissions come
/// in between its steps; they rebuild their own groups after that long).
const KEEP_SUBMISSIONS: u64 = 16;

/// One binding of a dispatch: (binding number, buffer, byte offset, byte size).
pub(super) type Binding = (u32, wgpu::Buffer, u64, u64);

#[derive(PartialEq, Eq, Hash)]
struct Key {
    pipeline: wgpu::ComputePipeline,
    bindings: Vec<Binding>,
}

#[derive(Default)]
pub(super) struct Bindings {
    /// Every submission's uniform params, rewritten by each (the queue orders the write after
    /// the work submitted before it); grown when one needs more. One buffer, so that the bind
    /// groups of one step fit the next.
    uniform: Option<wgpu::Buffer>,
    groups: HashMap<Key, (wgpu::BindGroup, u64)>,
    /// `get_bind_group_layout` makes a new handle per call: one per pipeline.
    layouts: HashMap<wgpu::ComputePipeline, wgpu::BindGroupLayout>,
    submission: u64,
    hits: u64,
    misses: u64,
}

impl Bindings {
    /// The uniform buffer with `bytes` written at its start (queued: it takes effect for the
    /// next submission).
    pub(super) fn uniform_buffer(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        bytes: &[u8],
    ) -> wgpu::Buffer {
        if self
            .uniform
            .as_ref()
            .is_none_or(|b| b.size() < bytes.len() as u64)
        {
            self.uniform = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("uniform params"),
                size: (bytes.len() as u64).next_power_of_two().max(1 << 16),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let buffer = self.uniform.clone().expect("made above");
        queue.write_buffer(&buffer, 0, bytes);
        buffer
    }

    /// The bind group of `pipeline` with `bindings` (binding 0 the uniform slot), built on a
    /// miss.
    pub(super) fn bind_group(
        &mut self,
        device: &wgpu::Device,
        pipeline: &wgpu::ComputePipeline,
        bindings: Vec<Binding>,
    ) -> wgpu::BindGroup {
        let key = Key {
            pipeline: pipeline.clone(),
            bindings,
        };
        let now = self.submission;
        if let Some((group, used)) = self.groups.get_mut(&key) {
            *used = now;
            self.hits += 1;
            return group.clone();
        }
        self.misses += 1;
        let layout = self
            .layouts
            .entry(pipeline.clone())
            .or_insert_with(|| pipeline.get_bind_group_layout(0));
        let entries: Vec<wgpu::BindGroupEntry> = key
            .bindings
            .iter()
            .map(|(binding, buffer, offset, size)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: *offset,
                    size: wgpu::BufferSize::new(*size),
                }),
            })
            .collect();
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        });
        self.groups.insert(key, (group.clone(), now));
        group
    }

    /// Count one submission and drop the entries it has left long unused.
    pub(super) fn submitted(&mut self) {
        self.submission += 1;
        let now = self.submission;
        if now.is_multiple_of(KEEP_SUBMISSIONS) {
            self.groups
                .retain(|_, (_, used)| now - *used <= KEEP_SUBMISSIONS);
        }
    }

    /// (bind groups reused, bind groups built) so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}
