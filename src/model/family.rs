//! A loaded model of either family, as the training job, evaluation and generation use it:
//! [`Model`] owns one, [`ModelRef`] borrows one (what the job and the passes' callers hold).
//! Each method hands over to the family's own file; nothing here computes.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::AdapterRef;
use crate::model::forward::KvCache;
use crate::model::gpt2::{Gpt2, Quant};
use crate::model::llama::Llama;
use crate::model::model_config::ModelConfig;

/// A model on the GPU: GPT-2, or the Llama family (Llama, Qwen2).
pub enum Model {
    Gpt2(Gpt2),
    Llama(Llama),
}

impl Model {
    pub fn as_ref(&self) -> ModelRef<'_> {
        match self {
            Self::Gpt2(m) => ModelRef::Gpt2(m),
            Self::Llama(m) => ModelRef::Llama(m),
        }
    }
}

/// A borrowed model of either family.
#[derive(Clone, Copy)]
pub enum ModelRef<'a> {
    Gpt2(&'a Gpt2),
    Llama(&'a Llama),
}

impl<'a> From<&'a Gpt2> for ModelRef<'a> {
    fn from(m: &'a Gpt2) -> Self {
        Self::Gpt2(m)
    }
}

impl<'a> From<&'a Llama> for ModelRef<'a> {
    fn from(m: &'a Llama) -> Self {
        Self::Llama(m)
    }
}

impl ModelRef<'_> {
    /// Its config.json, as the family-independent layers read it.
    pub fn config(&self) -> ModelConfig {
        match self {
            Self::Gpt2(m) => ModelConfig::Gpt2(m.config.clone()),
            Self::Llama(m) => ModelConfig::Llama(m.config.clone()),
        }
    }

    /// How the frozen Linears are stored.
    pub fn quant(&self) -> Quant {
        match self {
            Self::Gpt2(m) => m.quant,
            Self::Llama(m) => m.quant,
        }
    }

    /// Bytes of GPU memory the weights occupy.
    pub fn weight_bytes(&self) -> u64 {
        match self {
            Self::Gpt2(m) => m.weight_bytes(),
            Self::Llama(m) => m.weight_bytes(),
        }
    }

    /// The longest sequence a pass may run (GPT-2's n_positions; Llama's RoPE table).
    pub fn positions(&self) -> usize {
        match self {
            Self::Gpt2(m) => m.config.n_positions,
            Self::Llama(m) => m.positions,
        }
    }

    /// Check that a batch of `b`×`t` tokens fits the GPU's binding limit.
    pub fn check_fits(&self, gpu: &Gpu, b: usize, t: usize) -> Result<()> {
        match self {
            Self::Gpt2(m) => m.check_fits(gpu, b, t),
            Self::Llama(m) => m.check_fits(gpu, b, t),
        }
    }

    /// A batch of `b` sequences of `t` tokens: its shape, its tokens and that it fits.
    pub fn check_batch(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        b: usize,
        t: usize,
    ) -> Result<()> {
        match self {
            Self::Gpt2(m) => m.check_batch(gpu, ids, mask, b, t),
            Self::Llama(m) => m.check_batch(gpu, ids, mask, b, t),
        }
    }

    /// Per-position losses (B·T) of predicting `targets (B,T)` (−100 = not trained).
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, targets, b, t) as its parts
    pub async fn position_losses(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        targets: &[i32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        match self {
            Self::Gpt2(m) => {
                m.position_losses(gpu, ids, mask, targets, b, t, adapter)
                    .await
            }
            Self::Llama(m) => {
                m.position_losses(gpu, ids, mask, targets, b, t, adapter)
                    .await
            }
        }
    }

    /// An empty KV cache for up to `positions` tokens (at most [`Self::positions`]).
    pub fn kv_cache(&self, gpu: &Gpu, positions: usize) -> KvCache {
        match self {
            Self::Gpt2(m) => {
                let c = &m.config;
                let p = positions.min(c.n_positions);
                KvCache::with_rows(gpu, c.n_layer, p, 3 * c.n_embd)
            }
            Self::Llama(m) => m.kv_cache(gpu, positions),
        }
    }

    /// Run `ids` at the next positions of `cache` and return the last one's logits (V).
    pub async fn step(
        &self,
        gpu: &Gpu,
        cache: &mut KvCache,
        ids: &[u32],
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        match self {
            Self::Gpt2(m) => m.step(gpu, cache, ids, adapter).await,
            Self::Llama(m) => m.step(gpu, cache, ids, adapter).await,
        }
    }
}
