//! The Llama family's forward pass up to the final RMSNorm, optionally with a LoRA adapter,
//! keeping every layer's activations for a backward pass or none (the residual stream then
//! updated in place). One layer function, [`Llama::record_layer`]:
//!
//! ```text
//! x_mid = x_in  + o_proj(attention(rope_pack(q_proj(h1), k_proj(h1), v_proj(h1))))
//!                                                     h1 = rmsnorm(x_in)
//! x_out = x_mid + down_proj(silu(gate_proj(h2)) * up_proj(h2)),  h2 = rmsnorm(x_mid)
//! ```

use crate::gpu::{Commands, Tensor};
use crate::kernels::Reduction;
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::swiglu_forward;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::rmsnorm_forward;
use crate::kernels::lora::lora_linear_forward;
use crate::kernels::rope::{RopeDims, rope_pack};
use crate::model::AdapterRef;
use crate::model::acts::Keep;
use crate::model::block::Module;
use crate::model::forward::AttnSource;
use crate::model::llama::{Llama, module_dims};

/// One layer's activations (clones share the buffers). `x_in`, `x_mid` and `x_out` are the
/// residual stream before the layer, after attention and after the MLP.
#[derive(Clone)]
pub struct LayerActs {
    pub x_in: Tensor,  // (BT,C)
    pub h1: Tensor,    // (BT,C) input_layernorm output
    pub rstd1: Tensor, // (BT)
    pub q: Tensor,     // (BT,C)
    pub k: Tensor,     // (BT,KV)
    pub v: Tensor,     // (BT,KV)
    pub qkv: Tensor,   // (BT,C+2KV) rotated q, k and v
    pub att: Tensor,   // (BT,C)
    pub lse: Tensor,   // (B,nh,T)
    pub x_mid: Tensor, // (BT,C)
    pub h2: Tensor,    // (BT,C) post_attention_layernorm output
    pub rstd2: Tensor, // (BT)
    pub gate: Tensor,  // (BT,FF)
    pub up: Tensor,    // (BT,FF)
    pub g: Tensor,     // (BT,FF) silu(gate) * up
    pub x_out: Tensor, // (BT,C)
    /// LoRA `u = dropout(x)·Aᵀ (BT,r)` per adapted module, indexed by [`Module::index`].
    pub u: Vec<Option<Tensor>>,
}

/// A forward pass's activations up to the final RMSNorm.
pub struct LlamaActs {
    pub b: usize,
    pub t: usize,
    pub layers: Vec<LayerActs>,
    /// The last layer's output (input of the final norm).
    pub x_final: Tensor,
    pub hidden: Tensor, // (BT,C) the final norm's output
    pub rstd_f: Tensor, // (BT)
    /// (BT, max(C,FF)) scratch for LoRA dropout.
    pub lora_scratch: Option<Tensor>,
    /// Only each layer's input and output are the layer's own (`Keep::LayerInputs`): the
    /// other buffers are shared, and the backward pass recomputes each layer into them.
    pub recompute: bool,
}

impl Llama {
    /// Record the forward pass of `ids (B,T)` and `adapter` to the final RMSNorm, attending
    /// over `src` (the batch with its mask, 1 = token: positions 0..T in every row; or a KV
    /// cache, one sequence at its next positions, appended to); `keep`: every layer's
    /// activations for a backward pass, only each layer's input (gradient checkpointing:
    /// one set of buffers for the rest, which the backward pass refills layer by layer), or
    /// nothing (one set of buffers, the residual stream updated in place). The caller has
    /// checked the ids ([`Llama::check_input`]).
    pub fn record_forward(
        &self,
        cmd: &mut Commands,
        ids: &Tensor,
        src: AttnSource,
        (b, t): (usize, usize),
        adapter: Option<&AdapterRef>,
        keep: Keep,
    ) -> LlamaActs {
        let gpu = cmd.gpu();
        let cfg = &self.config;
        let (c, kv, ff) = (cfg.hidden_size, cfg.kv_dim(), cfg.intermediate_size);
        let rows = b * t;
        let x0 = gpu.tensor(rows * c);
        embedding_forward(cmd, &x0, ids, &self.embed, None, cfg.vocab_size, b, t, c, 0);
        let lora_scratch = adapter
            .filter(|a| a.p_drop > 0.0)
            .map(|_| gpu.tensor(rows * c.max(ff)));
        let alloc = |l: usize, x_in: Tensor, x_mid: Tensor, x_out: Tensor| {
            let u = Module::LLAMA
                .iter()
                .map(|&m| {
                    let a = adapter?;
                    a.slot(l, m).map(|_| gpu.tensor(rows * a.rank))
                })
                .collect();
            LayerActs {
                x_in,
                h1: gpu.tensor(rows * c),
                rstd1: gpu.tensor(rows),
                q: gpu.tensor(rows * c),
                k: gpu.tensor(rows * kv),
                v: gpu.tensor(rows * kv),
                qkv: gpu.tensor(rows * (c + 2 * kv)),
                att: gpu.tensor(rows * c),
                lse: gpu.tensor(b * cfg.num_attention_heads * t),
                x_mid,
                h2: gpu.tensor(rows * c),
                rstd2: gpu.tensor(rows),
                gate: gpu.tensor(rows * ff),
                up: gpu.tensor(rows * ff),
                g: gpu.tensor(rows * ff),
                x_out,
                u,
            }
        };
        // Unless every layer's activations are kept, one set of buffers serves every layer (u:
        // any layer's adapted modules, all of the same rank); with `LayerInputs` each layer
        // still writes its own output (the next layer's input, kept), and x_mid is shared.
        let shared = (keep != Keep::All).then(|| {
            let x_mid = match keep {
                Keep::LayerInputs => gpu.tensor(rows * c),
                _ => x0.clone(),
            };
            let mut a = alloc(0, x0.clone(), x_mid, x0.clone());
            if let Some(ad) = adapter {
                a.u = Module::LLAMA
                    .iter()
                    .map(|&m| ad.adapts(m).then(|| gpu.tensor(rows * ad.rank)))
                    .collect();
            }
            a
        });
        let mut layers: Vec<LayerActs> = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let a = match &shared {
                Some(s) if keep == Keep::LayerInputs => LayerActs {
                    x_in: layers.last().map_or(x0.clone(), |p| p.x_out.clone()),
                    x_out: gpu.tensor(rows * c),
                    ..s.clone()
                },
                Some(s) => s.clone(),
                None => {
                    let x_in = layers.last().map_or(x0.clone(), |p| p.x_out.clone());
                    alloc(l, x_in, gpu.tensor(rows * c), gpu.tensor(rows * c))
                }
            };
            self.record_layer(cmd, l, &a, src, (b, t), adapter, lora_scratch.as_ref());
            layers.push(a);
        }
        let x_final = layers.last().map_or(x0.clone(), |a| a.x_out.clone());
        let (hidden, rstd_f) = (gpu.tensor(rows * c), gpu.tensor(rows));
        let eps = cfg.rms_norm_eps as f32;
        rmsnorm_forward(
            cmd,
            &hidden,
            &rstd_f,
            &x_final,
            &self.norm,
            rows,
            c,
            eps,
            Reduction::Auto,
        );
        if keep == Keep::Nothing {
            layers.truncate(0);
        }
        LlamaActs {
            b,
            t,
            layers,
            x_final,
            hidden,
            rstd_f,
            lora_scratch,
            recompute: keep == Keep::LayerInputs,
        }
    }

    /// Record layer `l` on the activations `a` (its input is `a.x_in`; where `x_mid` and
    /// `x_out` are the same tensor as `x_in`, the residual stream is updated in place).
    #[allow(clippy::too_many_arguments)] // the layer's context, then the batch's
    pub fn record_layer(
        &self,
        cmd: &mut Commands,
        l: usize,
        a: &LayerActs,
        src: AttnSource,
        (b, t): (usize, usize),
        adapter: Option<&AdapterRef>,
        lora_scratch: Option<&Tensor>,
    ) {
        let cfg = &self.config;
        let (c, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let rows = b * t;
        let eps = cfg.rms_norm_eps as f32;
        let blk = &self.blocks[l];
        let linear = |cmd: &mut Commands, m: Module, y: &Tensor, x: &Tensor, acc: bool| {
            self.record_linear(cmd, l, m, a, rows, adapter, lora_scratch, y, x, acc);
        };
        let norm = |cmd: &mut Commands, out: &Tensor, rstd: &Tensor, x: &Tensor, w: &Tensor| {
            rmsnorm_forward(cmd, out, rstd, x, w, rows, c, eps, Reduction::Auto);
        };
        norm(cmd, &a.h1, &a.rstd1, &a.x_in, &blk.input_norm);
        linear(cmd, Module::QProj, &a.q, &a.h1, false);
        linear(cmd, Module::KProj, &a.k, &a.h1, false);
        linear(cmd, Module::VProj, &a.v, &a.h1, false);
        let pos0 = match src {
            AttnSource::Batch { .. } => 0,
            AttnSource::Cache(cache) => cache.len(),
        };
        let rope = RopeDims {
            rows,
            t,
            pos0,
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
        };
        rope_pack(cmd, &a.qkv, &a.q, &a.k, &a.v, &self.rope, &rope);
        let attn = |b, t| AttnDims {
            b,
            t,
            c,
            n_head: nh,
            n_kv_head: nkv,
        };
        match src {
            AttnSource::Batch { mask } => {
                attention_forward(cmd, &a.att, &a.lse, &a.qkv, mask, &attn(b, t), 0, t);
            }
            AttnSource::Cache(cache) => {
                // The rows' rotated q|k|v join the cache (a copy: their offset need not be
                // binding-aligned), then they attend over all of it.
                let (kv, w) = (&cache.layers[l], attn(1, t).width());
                cmd.copy(&a.qkv, &kv.slice(pos0 * w, t * w));
                let dims = attn(1, cache.capacity());
                attention_forward(cmd, &a.att, &a.lse, kv, &cache.mask, &dims, pos0, t);
            }
        }
        if !a.x_mid.same(&a.x_in) {
            cmd.copy(&a.x_in, &a.x_mid);
        }
        linear(cmd, Module::OProj, &a.x_mid, &a.att, true);
        norm(cmd, &a.h2, &a.rstd2, &a.x_mid, &blk.post_norm);
        linear(cmd, Module::GateProj, &a.gate, &a.h2, false);
        linear(cmd, Module::UpProj, &a.up, &a.h2, false);
        swiglu_forward(cmd, &a.g, &a.gate, &a.up, rows * ff);
        if !a.x_out.same(&a.x_mid) {
            cmd.copy(&a.x_mid, &a.x_out);
        }
        linear(cmd, Module::DownProj, &a.x_out, &a.g, true);
    }

    /// `y (+)= x·W (+ b)` for module `m` of layer `l`, plus its LoRA when the adapter has one
    /// (keeping `u` in `a.u` for the backward pass).
    #[allow(clippy::too_many_arguments)] // the layer's context, then the Linear's operands
    fn record_linear(
        &self,
        cmd: &mut Commands,
        l: usize,
        m: Module,
        a: &LayerActs,
        rows: usize,
        adapter: Option<&AdapterRef>,
        lora_scratch: Option<&Tensor>,
        y: &Tensor,
        x: &Tensor,
        acc: bool,
    ) {
        let lin = self.blocks[l].linear(m);
        let Some((ad, slot)) = adapter.and_then(|ad| Some((ad, ad.slot(l, m)?))) else {
            return lin.record(cmd, y, x, rows, acc);
        };
        debug_assert_eq!((slot.k_in, slot.n_out), module_dims(&self.config, m));
        let u = a.u[m.index()]
            .as_ref()
            .expect("u allocated for adapted modules");
        let scratch = lora_scratch.unwrap_or(x);
        let (la, lb) = (ad.a(slot), ad.b(slot));
        let (w, bias) = (&lin.weight, lin.bias.as_ref());
        let dims = ad.dims(slot, rows);
        lora_linear_forward(cmd, y, u, scratch, x, w, bias, &la, &lb, &dims, acc);
    }
}
