//! One GPT-2 block: its weights, keyed by the Hugging Face module names, and the one function
//! that records it, for training, evaluation, prefill and decode alike:
//!
//! ```text
//! x_mid = x_in  + attn.c_proj(attention(attn.c_attn(ln_1(x_in))))
//! x_out = x_mid + mlp.c_proj(gelu(mlp.c_fc(ln_2(x_mid))))
//! ```
//! What differs between those uses is an argument: the attention source ([`AttnSource`]: the
//! batch itself, or a KV cache that the block appends to), the adapter, and which activation
//! buffers are kept ([`super::acts::Keep`]).

use crate::gpu::{Commands, Tensor};
use crate::kernels::Reduction;
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::gelu_forward;
use crate::kernels::layernorm::{LayerNorm, layernorm_forward};
use crate::kernels::lora::lora_linear_forward;
use crate::kernels::matmul::{Weight, linear_forward};
use crate::model::acts::BlockActs;
use crate::model::forward::{AttnSource, Pass};
use crate::model::gpt2::Gpt2;

/// The Linear (Conv1D) modules of a GPT-2 block, in PEFT's module order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    CAttn,
    AttnProj,
    CFc,
    MlpProj,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::CAttn,
        Module::AttnProj,
        Module::CFc,
        Module::MlpProj,
    ];

    /// Path inside a block, as in Hugging Face names.
    pub fn path(self) -> &'static str {
        match self {
            Module::CAttn => "attn.c_attn",
            Module::AttnProj => "attn.c_proj",
            Module::CFc => "mlp.c_fc",
            Module::MlpProj => "mlp.c_proj",
        }
    }

    /// (in, out) features for embedding width `c`.
    pub fn dims(self, c: usize) -> (usize, usize) {
        match self {
            Module::CAttn => (c, 3 * c),
            Module::AttnProj => (c, c),
            Module::CFc => (c, 4 * c),
            Module::MlpProj => (4 * c, c),
        }
    }

    /// Its full name in the base model (`transformer.h.{layer}.attn.c_attn`), as PEFT
    /// matches and saves it.
    pub fn full_name(self, layer: usize) -> String {
        format!("transformer.h.{layer}.{}", self.path())
    }
}

/// A Conv1D layer `y = x·W + b` with `W (in,out)`.
pub struct Linear {
    pub weight: Weight,
    pub bias: Tensor,
    pub k_in: usize,
    pub n_out: usize,
}

impl Linear {
    /// Record `y (rows, out) (+)= x·W + b`.
    pub fn record(&self, cmd: &mut Commands, y: &Tensor, x: &Tensor, rows: usize, acc: bool) {
        let (w, b) = (&self.weight, Some(&self.bias));
        linear_forward(cmd, y, x, w, b, rows, self.k_in, self.n_out, acc);
    }

    pub fn size_bytes(&self) -> u64 {
        self.weight.size_bytes() + self.bias.size_bytes()
    }
}

/// One transformer block's weights.
pub struct Block {
    pub ln_1: LayerNorm,
    pub ln_2: LayerNorm,
    /// The Linears, indexed by [`Module`]: see [`Self::linear`].
    pub linears: [Linear; 4],
}

impl Block {
    /// The Linear of module `m`: the one table that pairs the modules LoRA adapts with the
    /// block's weights.
    pub fn linear(&self, m: Module) -> &Linear {
        &self.linears[m as usize]
    }

    pub fn size_bytes(&self) -> u64 {
        let linears: u64 = self.linears.iter().map(Linear::size_bytes).sum();
        self.ln_1.size_bytes() + self.ln_2.size_bytes() + linears
    }
}

impl Gpt2 {
    /// Record block `l` on the activations `a` (its input is `a.x_in`). When the buffers are
    /// shared (`x_mid`, `x_out` the same tensor as `x_in`), the residual stream is updated in
    /// place. `lora_scratch (rows, 4C)` holds the dropped-out LoRA input when dropout is on.
    pub fn record_block(
        &self,
        cmd: &mut Commands,
        l: usize,
        a: &BlockActs,
        pass: &Pass,
        lora_scratch: Option<&Tensor>,
    ) {
        let cfg = &self.config;
        let (c, rows) = (cfg.n_embd, pass.b * pass.t);
        let eps = cfg.layer_norm_epsilon as f32;
        let blk = &self.blocks[l];
        let linear = |cmd: &mut Commands, m: Module, y: &Tensor, x: &Tensor, acc: bool| {
            self.record_linear(cmd, l, m, a, pass, lora_scratch, y, x, acc);
        };
        let norm = |cmd: &mut Commands, out, mean, rstd, x, ln| {
            layernorm_forward(cmd, out, mean, rstd, x, ln, rows, c, eps, Reduction::Auto);
        };
        norm(cmd, &a.ln1, &a.mean1, &a.rstd1, &a.x_in, &blk.ln_1);
        linear(cmd, Module::CAttn, &a.qkv, &a.ln1, false);
        self.record_attention(cmd, l, a, pass);
        if !a.x_mid.same(&a.x_in) {
            cmd.copy(&a.x_in, &a.x_mid);
        }
        linear(cmd, Module::AttnProj, &a.x_mid, &a.att, true);
        norm(cmd, &a.ln2, &a.mean2, &a.rstd2, &a.x_mid, &blk.ln_2);
        linear(cmd, Module::CFc, &a.h, &a.ln2, false);
        gelu_forward(cmd, &a.g, &a.h, rows * 4 * c);
        if !a.x_out.same(&a.x_mid) {
            cmd.copy(&a.x_mid, &a.x_out);
        }
        linear(cmd, Module::MlpProj, &a.x_out, &a.g, true);
    }

    /// `y (+)= x·W + b` for module `m` of block `l`, plus its LoRA when the pass's adapter
    /// has one (keeping `u = dropout(x)·Aᵀ` in `a.u` for the backward pass).
    #[allow(clippy::too_many_arguments)] // the block's context, then the layer's operands
    fn record_linear(
        &self,
        cmd: &mut Commands,
        l: usize,
        m: Module,
        a: &BlockActs,
        pass: &Pass,
        lora_scratch: Option<&Tensor>,
        y: &Tensor,
        x: &Tensor,
        acc: bool,
    ) {
        let lin = self.blocks[l].linear(m);
        let rows = pass.b * pass.t;
        let Some((ad, slot)) = pass.adapter.and_then(|ad| Some((ad, ad.slot(l, m)?))) else {
            return lin.record(cmd, y, x, rows, acc);
        };
        let u = a.u[m as usize]
            .as_ref()
            .expect("u allocated for adapted modules");
        let scratch = lora_scratch.unwrap_or(x);
        let (w, bias) = (&lin.weight, Some(&lin.bias));
        let (la, lb) = (ad.a(slot), ad.b(slot));
        lora_linear_forward(
            cmd,
            y,
            u,
            scratch,
            x,
            w,
            bias,
            &la,
            &lb,
            &ad.dims(slot, rows),
            acc,
        );
    }

    /// Attention of the pass's rows from `a.qkv` into `a.att` (saving `a.lse`): over the batch
    /// itself, or over a KV cache after appending the rows' q/k/v to it.
    fn record_attention(&self, cmd: &mut Commands, l: usize, a: &BlockActs, pass: &Pass) {
        let cfg = &self.config;
        let (c, n_head) = (cfg.n_embd, cfg.n_head);
        match pass.src {
            AttnSource::Batch { mask } => {
                let (b, t) = (pass.b, pass.t);
                let dims = AttnDims { b, t, c, n_head };
                attention_forward(cmd, &a.att, &a.lse, &a.qkv, mask, &dims, 0, t);
            }
            AttnSource::Cache(cache) => {
                // A copy: row offsets in the cache need not be binding-aligned.
                let (kv, pos0, n) = (&cache.layers[l], cache.len(), pass.t);
                cmd.copy(&a.qkv, &kv.slice(pos0 * 3 * c, n * 3 * c));
                let t = cfg.n_positions;
                let dims = AttnDims { b: 1, t, c, n_head };
                attention_forward(cmd, &a.att, &a.lse, kv, &cache.mask, &dims, pos0, n);
            }
        }
    }
}
