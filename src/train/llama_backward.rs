//! The backward pass of the Llama family with LoRA: from the loss through the frozen base
//! (f32, f16 or NF4 weights) down to the LoRA A/B gradients, as `backward` does for GPT-2.
//! Norms, biases and embeddings are frozen; only input gradients flow through them.

use crate::gpu::{Commands, Tensor};
use crate::kernels::Reduction;
use crate::kernels::attention::{AttnDims, attention_backward};
use crate::kernels::cross_entropy::lm_head_loss;
use crate::kernels::elementwise::swiglu_backward;
use crate::kernels::layernorm::rmsnorm_backward;
use crate::kernels::lora::lora_backward;
use crate::kernels::matmul::linear_backward_input;
use crate::kernels::rope::{RopeDims, rope_unpack};
use crate::model::forward::AttnSource;
use crate::model::llama::Llama;
use crate::model::llama_forward::LlamaActs;
use crate::model::lm_head::vocab_chunk;
use crate::model::{AdapterRef, Module};

/// Record loss + backward for the activations `acts` of a forward with `adapter` (kept:
/// `record_forward(.., Keep::All)`, or `Keep::LayerInputs`, each layer then recomputed). `targets (B,T)`: the label each position predicts
/// (−100 = none). Writes the per-position losses into `loss (BT)` and accumulates (+=) the
/// LoRA gradients into `grads` (the parameters' layout); `grad_scale` is d(mean loss)/d(position
/// loss) = 1 / trained tokens of the whole optimizer step.
#[allow(clippy::too_many_arguments)] // mirrors GPT-2's record_loss_and_backward
pub fn record_loss_and_backward(
    model: &Llama,
    cmd: &mut Commands,
    acts: &LlamaActs,
    mask: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    adapter: &AdapterRef,
    grads: &Tensor,
    grad_scale: f32,
) {
    let gpu = cmd.gpu();
    let cfg = &model.config;
    let (b, t) = (acts.b, acts.t);
    let (c, kv, ff, v) = (
        cfg.hidden_size,
        cfg.kv_dim(),
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    let rows = b * t;
    // Gradient buffers, reused across layers.
    let dhidden = gpu.tensor(rows * c);
    let dx = gpu.tensor(rows * c); // d loss / d residual stream
    let dh = gpu.tensor(rows * c);
    let datt = gpu.tensor(rows * c);
    let dqkv = gpu.tensor(rows * (c + 2 * kv));
    let (dq, dk, dv) = (
        gpu.tensor(rows * c),
        gpu.tensor(rows * kv),
        gpu.tensor(rows * kv),
    );
    let (dg, dgate, dup) = (
        gpu.tensor(rows * ff),
        gpu.tensor(rows * ff),
        gpu.tensor(rows * ff),
    );
    let delta = gpu.tensor(b * cfg.num_attention_heads * t);
    let du = gpu.tensor(rows * adapter.rank);
    let scratch = gpu.tensor(rows * c.max(ff));

    let chunk = vocab_chunk(gpu, rows, v);
    let (logits, state) = (gpu.tensor(rows * chunk), gpu.tensor(rows * 3));
    lm_head_loss(
        cmd,
        loss,
        Some(&dhidden),
        &logits,
        &state,
        &acts.hidden,
        model.head(),
        targets,
        rows,
        c,
        v,
        chunk,
        grad_scale,
        Reduction::Auto,
    );
    // dx (+)= d RMSNorm / d x · dout (the weight is frozen).
    let norm_back =
        |cmd: &mut Commands, dout: &Tensor, x: &Tensor, w: &Tensor, rstd: &Tensor, acc| {
            rmsnorm_backward(cmd, &dx, dout, x, w, rstd, rows, c, acc, Reduction::Auto);
        };
    norm_back(
        cmd,
        &dhidden,
        &acts.x_final,
        &model.norm,
        &acts.rstd_f,
        false,
    );

    let attn = AttnDims {
        b,
        t,
        c,
        n_head: cfg.num_attention_heads,
        n_kv_head: cfg.num_key_value_heads,
    };
    let rope = RopeDims {
        rows,
        t,
        pos0: 0,
        n_head: cfg.num_attention_heads,
        n_kv_head: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
    };
    for (l, (blk, a)) in model.blocks.iter().zip(&acts.layers).enumerate().rev() {
        if acts.recompute {
            // Gradient checkpointing: this layer's activations again, from its kept input,
            // with the same dropout masks (seeded by step, layer and module).
            let src = AttnSource::Batch { mask };
            let scratch = acts.lora_scratch.as_ref();
            model.record_layer(cmd, l, a, src, (b, t), Some(adapter), scratch);
        }
        // d input of a Linear (overwrite or accumulate), then its LoRA part (+=) and its LoRA
        // A/B gradients (+=).
        let linear_back =
            |cmd: &mut Commands, m: Module, dx_in: &Tensor, dy: &Tensor, x: &Tensor, acc: bool| {
                let lin = blk.linear(m);
                linear_backward_input(cmd, dx_in, dy, &lin.weight, rows, lin.k_in, lin.n_out, acc);
                let Some(slot) = adapter.slot(l, m) else {
                    return;
                };
                let u = a.u[m.index()].as_ref().expect("forward kept u");
                let da = grads.slice(slot.a, adapter.rank * slot.k_in);
                let db = grads.slice(slot.b, slot.n_out * adapter.rank);
                let (la, lb) = (adapter.a(slot), adapter.b(slot));
                let dims = adapter.dims(slot, rows);
                lora_backward(
                    cmd, dx_in, &da, &db, dy, x, u, &la, &lb, &scratch, &du, &dims,
                );
            };
        // MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2))
        linear_back(cmd, Module::DownProj, &dg, &dx, &a.g, false);
        swiglu_backward(cmd, &dgate, &dup, &a.gate, &a.up, &dg, rows * ff);
        linear_back(cmd, Module::GateProj, &dh, &dgate, &a.h2, false);
        linear_back(cmd, Module::UpProj, &dh, &dup, &a.h2, true);
        norm_back(cmd, &dh, &a.x_mid, &blk.post_norm, &a.rstd2, true);
        // Attention: x_mid = x_in + o(attention(rope(q(h1), k(h1)), v(h1)))
        linear_back(cmd, Module::OProj, &datt, &dx, &a.att, false);
        attention_backward(
            cmd, &dqkv, &delta, &datt, &a.att, &a.qkv, &a.lse, mask, &attn,
        );
        rope_unpack(cmd, &dq, &dk, &dv, &dqkv, &model.rope, &rope);
        linear_back(cmd, Module::QProj, &dh, &dq, &a.h1, false);
        linear_back(cmd, Module::KProj, &dh, &dk, &a.h1, true);
        linear_back(cmd, Module::VProj, &dh, &dv, &a.h1, true);
        norm_back(cmd, &dh, &a.x_in, &blk.input_norm, &a.rstd1, true);
    }
}
