//! The GPT-2 forward pass up to the final LayerNorm, optionally with a LoRA adapter, keeping
//! what a backward pass needs ([`Keep`]). Training, evaluation, prefill and decode all run
//! it, and the one block function [`Gpt2::record_block`]:
//!
//! ```text
//! x_mid = x_in  + attn.c_proj(attention(attn.c_attn(ln_1(x_in))))
//! x_out = x_mid + mlp.c_proj(gelu(mlp.c_fc(ln_2(x_mid))))
//! ```
//! What differs between those uses is an argument: the attention source ([`AttnSource`]: the
//! batch itself, or a [`KvCache`] that the block appends to), the adapter, and which
//! activation buffers are kept.

use crate::error::Result;
use crate::gpu::{Commands, Gpu, Tensor};
use crate::kernels::Reduction;
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::gelu_forward;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::layernorm_forward;
use crate::kernels::lora::lora_linear_forward;
use crate::model::AdapterRef;
use crate::model::acts::{Acts, BlockActs, Keep, u_ranks};
use crate::model::block::Module;
use crate::model::gpt2::Gpt2;

/// What a block's attention reads.
#[derive(Clone, Copy)]
pub enum AttnSource<'a> {
    /// The batch itself (training, evaluation): each sequence attends within its own rows;
    /// `mask (B,T)` is 1 for tokens, 0 for padding.
    Batch { mask: &'a Tensor },
    /// A KV cache (prefill, decode; one sequence): the new rows sit at the cache's next
    /// positions, their q/k/v are appended to it and they attend over all of it.
    Cache(&'a KvCache),
}

/// One forward pass: `b` sequences of `t` new tokens, what their attention reads, and the
/// adapter applied (none: the base model).
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    pub b: usize,
    pub t: usize,
    pub src: AttnSource<'a>,
    pub adapter: Option<&'a AdapterRef<'a>>,
}

impl Pass<'_> {
    /// Position of the first new token: 0 for a batch, the cache's length for a KV cache.
    pub fn pos0(&self) -> usize {
        match self.src {
            AttnSource::Batch { .. } => 0,
            AttnSource::Cache(cache) => cache.len(),
        }
    }
}

impl Gpt2 {
    /// Record the forward pass of `ids (B,T)` up to the final LayerNorm, keeping what `keep`
    /// says for a backward pass. The caller has checked the ids ([`Gpt2::check_input`]).
    pub fn record_forward(
        &self,
        cmd: &mut Commands,
        ids: &Tensor,
        pass: &Pass,
        keep: Keep,
    ) -> Acts {
        let gpu = cmd.gpu();
        let cfg = &self.config;
        let (b, t, c) = (pass.b, pass.t, cfg.n_embd);
        let rows = b * t;
        let sizes = |layer: Option<usize>| {
            let u = pass
                .adapter
                .map_or([None; 4], |a| u_ranks(a.slots, a.rank, layer));
            BlockActs::sizes(cfg, b, t, u)
        };
        let all = sizes(None); // the shapes every block shares
        let x0 = gpu.tensor(all.x_in);
        let (wte, wpe) = (&self.wte, &self.wpe);
        embedding_forward(
            cmd,
            &x0,
            ids,
            wte,
            Some(wpe),
            cfg.vocab_size,
            b,
            t,
            c,
            pass.pos0(),
        );
        let lora_scratch = pass
            .adapter
            .filter(|a| a.p_drop > 0.0)
            .map(|_| gpu.tensor(rows * 4 * c));
        // One set of buffers that every block uses, unless every block keeps its own.
        let shared = match keep {
            Keep::All => None,
            Keep::Nothing => Some(all.alloc(gpu, x0.clone(), x0.clone(), x0.clone())),
            Keep::LayerInputs => {
                let x_mid = gpu.tensor(all.x_mid);
                Some(all.alloc(gpu, x0.clone(), x_mid, x0.clone()))
            }
        };
        let mut blocks: Vec<BlockActs> = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let x_in = blocks.last().map_or(x0.clone(), |p| p.x_out.clone());
            let a = match (&shared, keep) {
                (None, _) => {
                    let own = sizes(Some(l));
                    let (x_mid, x_out) = (gpu.tensor(own.x_mid), gpu.tensor(own.x_out));
                    own.alloc(gpu, x_in, x_mid, x_out)
                }
                (Some(s), Keep::LayerInputs) => BlockActs {
                    x_in,
                    x_out: gpu.tensor(all.x_out),
                    ..s.clone()
                },
                (Some(s), _) => s.clone(),
            };
            self.record_block(cmd, l, &a, pass, lora_scratch.as_ref());
            blocks.push(a);
        }
        let x_final = blocks.last().map_or(x0.clone(), |a| a.x_out.clone());
        let (lnf, mean_f, rstd_f) = (gpu.tensor(rows * c), gpu.tensor(rows), gpu.tensor(rows));
        let eps = cfg.layer_norm_epsilon as f32;
        let ln_f = &self.ln_f;
        layernorm_forward(
            cmd,
            &lnf,
            &mean_f,
            &rstd_f,
            &x_final,
            ln_f,
            rows,
            c,
            eps,
            Reduction::Auto,
        );
        Acts {
            b,
            t,
            keep,
            blocks,
            x_final,
            lnf,
            mean_f,
            rstd_f,
            lora_scratch,
        }
    }
}

/// Per layer, the c_attn output (q|k|v) of every position so far: (n_positions, 3C).
pub struct KvCache {
    pub(super) layers: Vec<Tensor>,
    /// All-ones mask over the cache rows (generation has no padding).
    pub(super) mask: Tensor,
    len: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, model: &Gpt2) -> Self {
        let cfg = &model.config;
        Self::with_rows(gpu, cfg.n_layer, cfg.n_positions, 3 * cfg.n_embd)
    }

    /// A cache of `layers` layers, each `positions` rows of `width` (attention's packed
    /// q|k|v row: GPT-2's 3C, Llama's C + 2·KV).
    pub fn with_rows(gpu: &Gpu, layers: usize, positions: usize, width: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| gpu.tensor(positions * width)).collect(),
            mask: gpu.upload_u32(&vec![1; positions]),
            len: 0,
        }
    }

    /// Positions the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.mask.len()
    }

    /// Check that a step of `n` tokens fits: at least one, and room for all of them.
    pub fn check_room(&self, n: usize) -> Result<()> {
        if n == 0 {
            crate::bail!("nothing to run: the prompt is empty");
        }
        if self.len + n > self.capacity() {
            crate::bail!(
                "{} tokens exceed the KV cache's {} positions",
                self.len + n,
                self.capacity()
            );
        }
        Ok(())
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `n` more positions are in the cache (a step appended them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
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
        let u = a.u[m.index()]
            .as_ref()
            .expect("u allocated for adapted modules");
        let scratch = lora_scratch.unwrap_or(x);
        let (w, bias) = (&lin.weight, lin.bias.as_ref());
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
                let dims = AttnDims::mha(b, t, c, n_head);
                attention_forward(cmd, &a.att, &a.lse, &a.qkv, mask, &dims, 0, t);
            }
            AttnSource::Cache(cache) => {
                // A copy: row offsets in the cache need not be binding-aligned.
                let (kv, pos0, n) = (&cache.layers[l], cache.len(), pass.t);
                cmd.copy(&a.qkv, &kv.slice(pos0 * 3 * c, n * 3 * c));
                let t = cfg.n_positions;
                let dims = AttnDims::mha(1, t, c, n_head);
                attention_forward(cmd, &a.att, &a.lse, kv, &cache.mask, &dims, pos0, n);
            }
        }
    }
}
