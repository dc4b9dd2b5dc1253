//! A pool of GPU buffers keyed by (size, usage): creating buffers is expensive, so tensors hand
//! their buffer back when dropped and the next tensor of the same size reuses it.
//! The pool also keeps the byte accounting that `bench` reports as peak GPU memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};

/// Sizes are rounded up to this so that near-equal requests share buffers and every buffer can
/// be bound at any 256-byte offset.
pub const SIZE_QUANTUM: u64 = 256;

#[derive(Default)]
struct PoolState {
    /// Idle buffers by (size, usage). A set, taken from its least element: the buffer a take
    /// gets depends on which buffers are idle, not on the order they came back in, so a
    /// training step that takes and returns the same sizes as the last one gets the same
    /// buffers, and reuses its bind groups (`bind_groups.rs`).
    free: HashMap<(u64, u32), BTreeSet<wgpu::Buffer>>,
    /// Bytes in buffers the pool created and still holds (in use or free).
    allocated: u64,
    /// Bytes currently handed out.
    in_use: u64,
    peak_in_use: u64,
    peak_allocated: u64,
}

pub struct BufferPool {
    device: wgpu::Device,
    state: Mutex<PoolState>,
}

/// Memory figures of the pool, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    pub allocated: u64,
    pub in_use: u64,
    pub peak_in_use: u64,
    pub peak_allocated: u64,
}

/// A buffer on loan from the pool; it goes back when the last handle drops.
pub struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    usage: wgpu::BufferUsages,
    pool: Weak<BufferPool>,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(self.buffer.clone(), self.usage);
        }
    }
}

impl BufferPool {
    // On wasm32 wgpu handles are !Send: the GPU lives on one thread (the page's worker).
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn new(device: wgpu::Device) -> Arc<Self> {
        Arc::new(Self {
            device,
            state: Mutex::new(PoolState::default()),
        })
    }

    /// Borrow a buffer of at least `size` bytes with `usage`; its contents are undefined.
    // On wasm32 wgpu handles are !Send: the GPU lives on one thread (the page's worker).
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn take(self: &Arc<Self>, size: u64, usage: wgpu::BufferUsages) -> Arc<PooledBuffer> {
        let size = size.max(4).div_ceil(SIZE_QUANTUM) * SIZE_QUANTUM;
        let mut st = self.state.lock().unwrap();
        let buffer = match st
            .free
            .get_mut(&(size, usage.bits()))
            .and_then(|v| v.pop_first())
        {
            Some(b) => b,
            None => {
                st.allocated += size;
                st.peak_allocated = st.peak_allocated.max(st.allocated);
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("pooled"),
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            }
        };
        st.in_use += size;
        st.peak_in_use = st.peak_in_use.max(st.in_use);
        Arc::new(PooledBuffer {
            buffer,
            usage,
            pool: Arc::downgrade(self),
        })
    }

    fn give_back(&self, buffer: wgpu::Buffer, usage: wgpu::BufferUsages) {
        let mut st = self.state.lock().unwrap();
        st.in_use -= buffer.size();
        st.free
            .entry((buffer.size(), usage.bits()))
            .or_default()
            .insert(buffer);
    }

    /// Destroy every idle buffer (e.g. after loading, before training).
    pub fn trim(&self) {
        let mut st = self.state.lock().unwrap();
        let freed: u64 = st.free.values().flatten().map(|b| b.size()).sum();
        for b in st.free.drain().flat_map(|(_, v)| v) {
            b.destroy();
        }
        st.allocated -= freed;
    }

    pub fn stats(&self) -> PoolStats {
        let st = self.state.lock().unwrap();
        PoolStats {
            allocated: st.allocated,
            in_use: st.in_use,
            peak_in_use: st.peak_in_use,
            peak_allocated: st.peak_allocated,
        }
    }

    /// Start a new peak measurement from the current usage.
    pub fn reset_peak(&self) {
        let mut st = self.state.lock().unwrap();
        st.peak_in_use = st.in_use;
        st.peak_allocated = st.allocated;
    }
}
