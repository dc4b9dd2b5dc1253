//! The activations of a forward pass: one size table ([`BlockActs::sizes`], as llm.c's
//! `fill_in_activation_sizes`) that both allocates the buffers and counts them for the memory
//! estimate (`train::memory`).

use crate::gpu::{Gpu, Tensor};
use crate::model::config::Gpt2Config;
use crate::model::{LoraSlot, Module};

/// One block's activations. `BlockActs<usize>` is the size table (words per buffer),
/// `BlockActs<Tensor>` the buffers. Clones share the buffers (a [`Tensor`] is a handle).
///
/// `x_in`, `x_mid` and `x_out` are the residual stream before the block, after attention and
/// after the MLP; a forward pass that keeps nothing makes them one tensor, updated in place.
#[derive(Clone)]
pub struct BlockActs<T = Tensor> {
    pub x_in: T,  // (BT,C)
    pub ln1: T,   // (BT,C)
    pub mean1: T, // (BT)
    pub rstd1: T, // (BT)
    pub qkv: T,   // (BT,3C)
    pub att: T,   // (BT,C)
    pub lse: T,   // (B,nh,T)
    pub x_mid: T, // (BT,C)
    pub ln2: T,   // (BT,C)
    pub mean2: T, // (BT)
    pub rstd2: T, // (BT)
    pub h: T,     // (BT,4C) before GELU
    pub g: T,     // (BT,4C) after GELU
    pub x_out: T, // (BT,C)
    /// LoRA `u = dropout(x)·Aᵀ (BT,r)` per adapted module, indexed by [`Module`].
    pub u: [Option<T>; 4],
}

impl BlockActs<usize> {
    /// The size table: words of every buffer of one block for `b` sequences of `t` tokens;
    /// `u_rank[m]` is the LoRA rank where module `m` keeps a `u`.
    pub fn sizes(cfg: &Gpt2Config, b: usize, t: usize, u_rank: [Option<usize>; 4]) -> Self {
        let (rows, c) = (b * t, cfg.n_embd);
        BlockActs {
            x_in: rows * c,
            ln1: rows * c,
            mean1: rows,
            rstd1: rows,
            qkv: rows * 3 * c,
            att: rows * c,
            lse: b * cfg.n_head * t,
            x_mid: rows * c,
            ln2: rows * c,
            mean2: rows,
            rstd2: rows,
            h: rows * 4 * c,
            g: rows * 4 * c,
            x_out: rows * c,
            u: u_rank.map(|r| r.map(|r| rows * r)),
        }
    }

    /// Words of the buffers a block owns: all but its residual stream.
    pub fn owned_words(&self) -> usize {
        self.owned().copied().sum()
    }

    /// Buffers of these sizes around the residual-stream tensors given (which the forward
    /// pass shares between blocks or not, see [`Keep`]).
    pub fn alloc(&self, gpu: &Gpu, x_in: Tensor, x_mid: Tensor, x_out: Tensor) -> BlockActs {
        let t = |words: usize| gpu.tensor(words);
        BlockActs {
            x_in,
            ln1: t(self.ln1),
            mean1: t(self.mean1),
            rstd1: t(self.rstd1),
            qkv: t(self.qkv),
            att: t(self.att),
            lse: t(self.lse),
            x_mid,
            ln2: t(self.ln2),
            mean2: t(self.mean2),
            rstd2: t(self.rstd2),
            h: t(self.h),
            g: t(self.g),
            x_out,
            u: self.u.map(|w| w.map(t)),
        }
    }
}

impl<T> BlockActs<T> {
    /// The buffers a block owns (what [`BlockActs::alloc`] allocates): all but `x_in`,
    /// `x_mid` and `x_out`.
    fn owned(&self) -> impl Iterator<Item = &T> {
        [
            &self.ln1,
            &self.mean1,
            &self.rstd1,
            &self.qkv,
            &self.att,
            &self.lse,
            &self.ln2,
            &self.mean2,
            &self.rstd2,
            &self.h,
            &self.g,
        ]
        .into_iter()
        .chain(self.u.iter().flatten())
    }
}

/// The LoRA rank per module for the `u` buffers of block `layer` (`None`: of any block, for
/// buffers that all blocks share).
pub fn u_ranks(slots: &[LoraSlot], rank: usize, layer: Option<usize>) -> [Option<usize>; 4] {
    Module::GPT2.map(|m| {
        let adapted = slots
            .iter()
            .any(|s| s.module == m && layer.is_none_or(|l| s.layer == l));
        adapted.then_some(rank)
    })
}

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: one set of buffers for all layers, residual stream updated in place.
    Nothing,
    /// Every layer's activations.
    All,
    /// Only each layer's input (gradient checkpointing); the backward pass recomputes the
    /// rest one layer at a time in shared buffers.
    LayerInputs,
}

/// A forward pass's activations, up to the final LayerNorm.
pub struct Acts {
    pub b: usize,
    pub t: usize,
    pub keep: Keep,
    pub blocks: Vec<BlockActs>,
    /// The last block's output (input of the final LayerNorm).
    pub x_final: Tensor,
    pub lnf: Tensor,
    pub mean_f: Tensor,
    pub rstd_f: Tensor,
    /// (BT, 4C) scratch for LoRA dropout.
    pub lora_scratch: Option<Tensor>,
}

impl Acts {
    /// Whether the backward pass must recompute each block's activations first.
    pub fn checkpointed(&self) -> bool {
        self.keep == Keep::LayerInputs
    }
}
