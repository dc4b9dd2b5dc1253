//! The GPT-2 forward pass up to the final LayerNorm, optionally with a LoRA adapter, keeping
//! what a backward pass needs ([`Keep`]). Training, evaluation, prefill and decode all run it;
//! they differ in the attention source and what is kept.

use crate::gpu::{Commands, Tensor};
use crate::kernels::Reduction;
use crate::kernels::embedding::embedding_forward;
use crate::kernels::layernorm::layernorm_forward;
use crate::model::AdapterRef;
use crate::model::acts::{Acts, BlockActs, Keep, u_ranks};
use crate::model::generate::KvCache;
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
            wpe,
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
