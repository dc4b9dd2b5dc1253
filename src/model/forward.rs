//! The GPT-2 forward pass, optionally with LoRA adapters, optionally keeping every layer's
//! activations for the backward pass (training) — or reusing one set of buffers (inference).

use crate::gpu::{Commands, Tensor};
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::gelu_forward;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::layernorm_forward;
use crate::kernels::lora::{LoraDims, lora_linear_forward};
use crate::lora::{Layout, Module, Slot};
use crate::model::gpt2::{Gpt2, Linear, run_linear};

/// LoRA adapters as the forward/backward passes see them.
pub struct AdapterRef<'a> {
    pub layout: &'a Layout,
    /// The flat parameter buffer (see [`crate::lora::Layout`]).
    pub params: &'a Tensor,
    pub rank: usize,
    pub scale: f32,
    pub p_drop: f32,
    /// Dropout seed of this step; each module derives its own.
    pub seed: u32,
}

impl AdapterRef<'_> {
    pub fn a(&self, s: &Slot) -> Tensor {
        self.params.slice(s.a, self.rank * s.k_in)
    }
    pub fn b(&self, s: &Slot) -> Tensor {
        self.params.slice(s.b, s.n_out * self.rank)
    }
    pub fn dims(&self, s: &Slot, m: usize) -> LoraDims {
        LoraDims {
            m,
            k_in: s.k_in,
            n_out: s.n_out,
            rank: self.rank,
            scale: self.scale,
            p_drop: self.p_drop,
            seed: self
                .seed
                .wrapping_add((s.layer as u32 * 4 + s.module as u32 + 1).wrapping_mul(0x9E37_79B9)),
        }
    }
}

/// A LoRA adapter held on the GPU for inference (eval, generate, the web app's Try tab).
pub struct GpuAdapter {
    pub config: crate::lora::LoraConfig,
    pub layout: Layout,
    pub params: Tensor,
}

impl GpuAdapter {
    /// Upload flat parameters (PEFT's tensors laid out by [`Layout`]).
    pub fn new(
        gpu: &crate::gpu::Gpu,
        model: &crate::model::Gpt2Config,
        config: crate::lora::LoraConfig,
        params: &[f32],
    ) -> Self {
        Self {
            layout: Layout::new(model, &config),
            params: gpu.upload_f32(params),
            config,
        }
    }

    /// The adapter as the forward passes take it (no dropout).
    pub fn as_ref(&self) -> AdapterRef<'_> {
        AdapterRef {
            layout: &self.layout,
            params: &self.params,
            rank: self.config.r,
            scale: self.config.scale(),
            p_drop: 0.0,
            seed: 0,
        }
    }
}

/// One block's activations. In inference all blocks share one set and `x_in`, `x_mid`,
/// `x_out` are the same tensor (the residual stream, updated in place).
pub struct BlockActs {
    pub x_in: Tensor,  // (BT,C) block input
    pub ln1: Tensor,   // (BT,C)
    pub mean1: Tensor, // (BT)
    pub rstd1: Tensor, // (BT)
    pub qkv: Tensor,   // (BT,3C)
    pub att: Tensor,   // (BT,C)
    pub lse: Tensor,   // (B,nh,T)
    pub x_mid: Tensor, // (BT,C) after attention
    pub ln2: Tensor,   // (BT,C)
    pub mean2: Tensor, // (BT)
    pub rstd2: Tensor, // (BT)
    pub h: Tensor,     // (BT,4C) before GELU
    pub g: Tensor,     // (BT,4C) after GELU
    pub x_out: Tensor, // (BT,C) block output
    /// LoRA `u = dropout(x)·Aᵀ (BT,r)` per module, indexed by `Module as usize`.
    pub u: [Option<Tensor>; 4],
}

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

impl Acts {
    /// Whether the backward pass must recompute each block's activations first.
    pub fn checkpointed(&self) -> bool {
        self.keep == Keep::LayerInputs
    }
}

impl Gpt2 {
    /// Record the forward pass of `ids (B,T)` with `mask (B,T)` up to the final LayerNorm,
    /// keeping what `keep` says for a backward pass.
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, b, t) travels as its parts
    pub fn record_forward(
        &self,
        cmd: &mut Commands,
        ids: &Tensor,
        mask: &Tensor,
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef>,
        keep: Keep,
    ) -> Acts {
        let gpu = cmd.gpu();
        let cfg = &self.config;
        let (c, rows) = (cfg.n_embd, b * t);
        let eps = cfg.layer_norm_epsilon as f32;
        let x0 = gpu.tensor(rows * c);
        embedding_forward(
            cmd,
            &x0,
            ids,
            &self.wte,
            &self.wpe,
            self.config.vocab_size,
            b,
            t,
            c,
            0,
        );
        // Internal buffers: per layer when keeping everything, else one shared set.
        let internals = |l: usize, x_in: Tensor, x_mid: Tensor, x_out: Tensor| BlockActs {
            ln1: gpu.tensor(rows * c),
            mean1: gpu.tensor(rows),
            rstd1: gpu.tensor(rows),
            qkv: gpu.tensor(rows * 3 * c),
            att: gpu.tensor(rows * c),
            lse: gpu.tensor(b * cfg.n_head * t),
            ln2: gpu.tensor(rows * c),
            mean2: gpu.tensor(rows),
            rstd2: gpu.tensor(rows),
            h: gpu.tensor(rows * 4 * c),
            g: gpu.tensor(rows * 4 * c),
            u: Module::ALL.map(|m| {
                adapter
                    .filter(|a| {
                        a.layout.slot(l, m).is_some()
                            || (keep != Keep::All && a.layout.slots.iter().any(|s| s.module == m))
                    })
                    .map(|a| gpu.tensor(rows * a.rank))
            }),
            x_in,
            x_mid,
            x_out,
        };
        let lora_scratch = adapter
            .filter(|a| a.p_drop > 0.0)
            .map(|_| gpu.tensor(rows * 4 * c));
        let mut blocks: Vec<BlockActs> = Vec::with_capacity(cfg.n_layer);
        let mut shared: Option<BlockActs> = None;
        for l in 0..cfg.n_layer {
            let a = match keep {
                Keep::Nothing => {
                    let s = shared
                        .get_or_insert_with(|| internals(l, x0.clone(), x0.clone(), x0.clone()));
                    BlockActs { ..s.share() }
                }
                Keep::All => {
                    let x_in = blocks.last().map_or(x0.clone(), |p| p.x_out.clone());
                    internals(l, x_in, gpu.tensor(rows * c), gpu.tensor(rows * c))
                }
                Keep::LayerInputs => {
                    let x_in = blocks.last().map_or(x0.clone(), |p| p.x_out.clone());
                    let s = shared.get_or_insert_with(|| {
                        internals(l, x0.clone(), gpu.tensor(rows * c), x0.clone())
                    });
                    BlockActs {
                        x_in,
                        x_out: gpu.tensor(rows * c),
                        ..s.share()
                    }
                }
            };
            self.record_block_forward(cmd, l, &a, mask, b, t, adapter, lora_scratch.as_ref());
            blocks.push(a);
        }
        let x_final = blocks.last().map_or(x0.clone(), |a| a.x_out.clone());
        let (lnf, mean_f, rstd_f) = (gpu.tensor(rows * c), gpu.tensor(rows), gpu.tensor(rows));
        layernorm_forward(
            cmd,
            &lnf,
            &mean_f,
            &rstd_f,
            &x_final,
            &self.ln_f.0,
            &self.ln_f.1,
            rows,
            c,
            eps,
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

    /// Record block `l` on the activations `a` (its input is `a.x_in`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_block_forward(
        &self,
        cmd: &mut Commands,
        l: usize,
        a: &BlockActs,
        mask: &Tensor,
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef>,
        lora_scratch: Option<&Tensor>,
    ) {
        let cfg = &self.config;
        let (c, rows) = (cfg.n_embd, b * t);
        let eps = cfg.layer_norm_epsilon as f32;
        let blk = &self.blocks[l];
        let dims = AttnDims {
            b,
            t,
            c,
            n_head: cfg.n_head,
        };
        // Conv1D `lin` of module `m`, with its LoRA (keeping u for the backward) if adapted.
        let linear =
            |cmd: &mut Commands, m: Module, y: &Tensor, x: &Tensor, lin: &Linear, acc: bool| {
                if let Some(ad) = adapter
                    && let Some(slot) = ad.layout.slot(l, m)
                {
                    let u = a.u[m as usize]
                        .as_ref()
                        .expect("u allocated for adapted modules");
                    let scratch = lora_scratch.unwrap_or(x);
                    lora_linear_forward(
                        cmd,
                        y,
                        u,
                        scratch,
                        x,
                        &lin.weight,
                        Some(&lin.bias),
                        &ad.a(slot),
                        &ad.b(slot),
                        &ad.dims(slot, rows),
                        acc,
                    );
                } else {
                    run_linear(cmd, y, x, lin, rows, acc);
                }
            };
        layernorm_forward(
            cmd,
            &a.ln1,
            &a.mean1,
            &a.rstd1,
            &a.x_in,
            &blk.ln_1.0,
            &blk.ln_1.1,
            rows,
            c,
            eps,
        );
        linear(cmd, Module::CAttn, &a.qkv, &a.ln1, &blk.c_attn, false);
        attention_forward(cmd, &a.att, &a.lse, &a.qkv, mask, &dims, 0, t);
        if !a.x_mid.same(&a.x_in) {
            cmd.copy(&a.x_in, &a.x_mid);
        }
        linear(
            cmd,
            Module::AttnProj,
            &a.x_mid,
            &a.att,
            &blk.attn_proj,
            true,
        );
        layernorm_forward(
            cmd,
            &a.ln2,
            &a.mean2,
            &a.rstd2,
            &a.x_mid,
            &blk.ln_2.0,
            &blk.ln_2.1,
            rows,
            c,
            eps,
        );
        linear(cmd, Module::CFc, &a.h, &a.ln2, &blk.c_fc, false);
        gelu_forward(cmd, &a.g, &a.h, rows * 4 * c);
        if !a.x_out.same(&a.x_mid) {
            cmd.copy(&a.x_mid, &a.x_out);
        }
        linear(cmd, Module::MlpProj, &a.x_out, &a.g, &blk.mlp_proj, true);
    }
}

impl BlockActs {
    /// Another handle on the same buffers.
    fn share(&self) -> BlockActs {
        BlockActs {
            x_in: self.x_in.clone(),
            ln1: self.ln1.clone(),
            mean1: self.mean1.clone(),
            rstd1: self.rstd1.clone(),
            qkv: self.qkv.clone(),
            att: self.att.clone(),
            lse: self.lse.clone(),
            x_mid: self.x_mid.clone(),
            ln2: self.ln2.clone(),
            mean2: self.mean2.clone(),
            rstd2: self.rstd2.clone(),
            h: self.h.clone(),
            g: self.g.clone(),
            x_out: self.x_out.clone(),
            u: self.u.clone(),
        }
    }
}
