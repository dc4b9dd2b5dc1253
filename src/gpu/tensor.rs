//! `Tensor`: a typed window (in 32-bit words) onto a pooled GPU buffer.
//!
//! Everything the kernels touch is stored in 4-byte words: f32 values, u32 token ids, f16 weights
//! packed two to a word, NF4 weights packed eight to a word. Clones share the buffer; the buffer
//! returns to the pool when the last clone drops.

use std::sync::Arc;

use super::pool::PooledBuffer;

#[derive(Clone)]
pub struct Tensor {
    alloc: Arc<PooledBuffer>,
    /// Offset into the buffer, in bytes (a multiple of 4; of 256 when it is to be bound).
    offset: u64,
    /// Length in 32-bit words.
    len: usize,
}

impl Tensor {
    pub(crate) fn new(alloc: Arc<PooledBuffer>, len: usize) -> Self {
        Self {
            alloc,
            offset: 0,
            len,
        }
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.alloc.buffer
    }

    pub fn offset_bytes(&self) -> u64 {
        self.offset
    }

    /// Length in 32-bit words.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn size_bytes(&self) -> u64 {
        self.len as u64 * 4
    }

    /// A sub-range of words `[start, start+len)`. To be bound in a shader, `start * 4` must be a
    /// multiple of the device's `min_storage_buffer_offset_alignment` (256 on most devices).
    pub fn slice(&self, start: usize, len: usize) -> Tensor {
        assert!(
            start + len <= self.len,
            "slice {start}+{len} out of {}",
            self.len
        );
        Tensor {
            alloc: self.alloc.clone(),
            offset: self.offset + start as u64 * 4,
            len,
        }
    }

    /// Whether both views are the same words of the same buffer.
    pub fn same(&self, other: &Tensor) -> bool {
        std::sync::Arc::ptr_eq(&self.alloc, &other.alloc)
            && self.offset == other.offset
            && self.len == other.len
    }
}
