//! The GPT-2 forward pass, optionally with LoRA adapters, optionally keeping every layer's
//! activations for the backward pass (training) — or reusing one set of buffers (inference).

use crate::gpu::{Commands, Tensor};
use crate::kernels::attention::{AttnDims, attention_forward};
use crate::kernels::elementwise::gelu_forward;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::layernorm_forward;
use crate::kernels::lora::{LoraDims, lora_forward};
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
    pub blocks: Vec<BlockActs>,
    pub lnf: Tensor,
    pub mean_f: Tensor,
    pub rstd_f: Tensor,
    /// (BT, 4C) scratch for LoRA dropout.
    pub lora_scratch: Option<Tensor>,
}

impl Gpt2 {
    /// Record the forward pass of `ids (B,T)` with `mask (B,T)` up to the final LayerNorm.
    /// `keep` allocates every layer's activations (for backward); otherwise one set is reused.
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, b, t) travels as its parts
    pub fn record_forward(
        &self,
        cmd: &mut Commands,
        ids: &Tensor,
        mask: &Tensor,
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef>,
        keep: bool,
    ) -> Acts {
        let gpu = cmd.gpu();
        let cfg = &self.config;
        let (c, rows) = (cfg.n_embd, b * t);
        let eps = cfg.layer_norm_epsilon as f32;
        let new_block = |x_in: Tensor, shared_residual: bool| {
            let x_mid = if shared_residual {
                x_in.clone()
            } else {
                gpu.tensor(rows * c)
            };
            let x_out = if shared_residual {
                x_in.clone()
            } else {
                gpu.tensor(rows * c)
            };
            BlockActs {
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
                u: Default::default(),
                x_in,
                x_mid,
                x_out,
            }
        };
        let lora_scratch = adapter
            .filter(|a| a.p_drop > 0.0)
            .map(|_| gpu.tensor(rows * 4 * c));
        let dims = AttnDims {
            b,
            t,
            c,
            n_head: cfg.n_head,
        };
        let x0 = gpu.tensor(rows * c);
        embedding_forward(cmd, &x0, ids, &self.wte, &self.wpe, b, t, c, 0);
        let mut blocks: Vec<BlockActs> = Vec::new();
        let mut shared: Option<BlockActs> = None;
        for (l, blk) in self.blocks.iter().enumerate() {
            let mut a = if keep {
                let x_in = blocks.last().map_or(x0.clone(), |p| p.x_out.clone());
                new_block(x_in, false)
            } else {
                shared.take().unwrap_or_else(|| new_block(x0.clone(), true))
            };
            let lora =
                |cmd: &mut Commands, a: &mut BlockActs, m: Module, y: &Tensor, x: &Tensor| {
                    if let Some(ad) = adapter
                        && let Some(slot) = ad.layout.slot(l, m)
                    {
                        let u = a.u[m as usize]
                            .get_or_insert_with(|| gpu.tensor(rows * ad.rank))
                            .clone();
                        let scratch = lora_scratch.as_ref().unwrap_or(x);
                        lora_forward(
                            cmd,
                            y,
                            &u,
                            scratch,
                            x,
                            &ad.a(slot),
                            &ad.b(slot),
                            &ad.dims(slot, rows),
                        );
                    }
                };
            let linear = |cmd: &mut Commands, y: &Tensor, x: &Tensor, lin: &Linear, acc: bool| {
                run_linear(cmd, y, x, lin, rows, acc);
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
            linear(cmd, &a.qkv, &a.ln1, &blk.c_attn, false);
            let (qkv, ln1) = (a.qkv.clone(), a.ln1.clone());
            lora(cmd, &mut a, Module::CAttn, &qkv, &ln1);
            attention_forward(cmd, &a.att, &a.lse, &a.qkv, mask, &dims, 0, t);
            if !a.x_mid.same(&a.x_in) {
                cmd.copy(&a.x_in, &a.x_mid);
            }
            linear(cmd, &a.x_mid, &a.att, &blk.attn_proj, true);
            let (x_mid, att) = (a.x_mid.clone(), a.att.clone());
            lora(cmd, &mut a, Module::AttnProj, &x_mid, &att);
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
            linear(cmd, &a.h, &a.ln2, &blk.c_fc, false);
            let (h, ln2) = (a.h.clone(), a.ln2.clone());
            lora(cmd, &mut a, Module::CFc, &h, &ln2);
            gelu_forward(cmd, &a.g, &a.h, rows * 4 * c);
            if !a.x_out.same(&a.x_mid) {
                cmd.copy(&a.x_mid, &a.x_out);
            }
            linear(cmd, &a.x_out, &a.g, &blk.mlp_proj, true);
            let (x_out, g) = (a.x_out.clone(), a.g.clone());
            lora(cmd, &mut a, Module::MlpProj, &x_out, &g);
            if keep {
                blocks.push(a);
            } else {
                shared = Some(a);
            }
        }
        let last = if keep { blocks.last() } else { shared.as_ref() };
        let x_final = last.map_or(x0.clone(), |a| a.x_out.clone());
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
        if !keep {
            blocks.extend(shared);
        }
        Acts {
            b,
            t,
            blocks,
            lnf,
            mean_f,
            rstd_f,
            lora_scratch,
        }
    }
}
