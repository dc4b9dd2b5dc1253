//! LoRA adapters as the model's passes read them: a flat parameter buffer and where each
//! adapted Linear's A and B sit in it. The model knows no LoRA configuration: `crate::lora`
//! decides which modules are adapted and lays the buffer out (`lora::Layout`).

use crate::gpu::Tensor;
use crate::kernels::lora::LoraDims;
use crate::model::Module;

/// Where one adapted Linear's LoRA weights sit in the flat parameter buffer (and, at the same
/// offsets, in the gradient and AdamW moment buffers).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSlot {
    pub layer: usize,
    pub module: Module,
    pub k_in: usize,
    pub n_out: usize,
    /// Offset of A (r, in), in floats.
    pub a: usize,
    /// Offset of B (out, r), in floats.
    pub b: usize,
}

/// A LoRA adapter as the forward and backward passes see it.
#[derive(Clone, Copy)]
pub struct AdapterRef<'a> {
    /// The adapted modules, at most one per (layer, module).
    pub slots: &'a [LoraSlot],
    /// The flat parameter buffer the slots point into.
    pub params: &'a Tensor,
    pub rank: usize,
    pub scale: f32,
    pub p_drop: f32,
    /// Dropout seed of this step; each module derives its own.
    pub seed: u32,
}

impl AdapterRef<'_> {
    /// The slot of module `m` of block `layer`, if it is adapted.
    pub fn slot(&self, layer: usize, m: Module) -> Option<&LoraSlot> {
        self.slots
            .iter()
            .find(|s| s.layer == layer && s.module == m)
    }

    /// Whether any block adapts module `m`.
    pub fn adapts(&self, m: Module) -> bool {
        self.slots.iter().any(|s| s.module == m)
    }

    pub fn a(&self, s: &LoraSlot) -> Tensor {
        self.params.slice(s.a, self.rank * s.k_in)
    }

    pub fn b(&self, s: &LoraSlot) -> Tensor {
        self.params.slice(s.b, s.n_out * self.rank)
    }

    /// The kernel's view of slot `s` over `m` rows of input.
    pub fn dims(&self, s: &LoraSlot, m: usize) -> LoraDims {
        LoraDims {
            m,
            k_in: s.k_in,
            n_out: s.n_out,
            rank: self.rank,
            scale: self.scale,
            p_drop: self.p_drop,
            seed: dropout_seed(self.seed, s.layer, s.module),
        }
    }
}

/// The dropout seed of module `m` of block `layer` in a micro-batch whose adapter is seeded
/// `seed` (`train::session::step_seed`, plus the micro-batch's index).
///
/// A hash of both: the seed used to be `seed + (4·layer + module + 1)·0x9E3779B9` with the
/// step's seed `seed0 ^ step·0x9E3779B9`, so a module in one step drew exactly the mask
/// of another module some steps later (with seed 42, 83% of the (step, module) masks of a
/// 1000-step GPT-2 small all-linear run were copies of another's).
///
/// Llama's modules number 7 per layer (GPT-2's 4), so their key strides by 8.
pub fn dropout_seed(seed: u32, layer: usize, m: Module) -> u32 {
    let key = if m.is_gpt2() {
        layer as u32 * 4 + m as u32 + 1
    } else {
        layer as u32 * 8 + m.index() as u32 + 1
    };
    fmix32(seed ^ fmix32(key))
}

/// MurmurHash3's 32-bit finalizer: a bijection of u32 in which every output bit depends on
/// every input bit.
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
