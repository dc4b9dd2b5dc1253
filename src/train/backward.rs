//! The backward pass of GPT-2 with LoRA: from the loss through the frozen base (f32, f16 or
//! NF4 weights) down to the LoRA A/B gradients. Base weights, biases, LayerNorms and
//! embeddings get no gradient (they are frozen); only the input gradients flow through them.

use crate::gpu::{Commands, Tensor};
use crate::kernels::Reduction;
use crate::kernels::attention::{AttnDims, attention_backward};
use crate::kernels::cross_entropy::lm_head_loss;
use crate::kernels::elementwise::gelu_backward;
use crate::kernels::layernorm::layernorm_backward;
use crate::kernels::lora::lora_backward;
use crate::kernels::matmul::linear_backward_input;
use crate::model::acts::Acts;
use crate::model::forward::{AttnSource, Pass};
use crate::model::lm_head::vocab_chunk;
use crate::model::{AdapterRef, Gpt2, Module};

/// Record loss + backward for activations `acts` of a forward with `adapter`.
/// `targets (B,T)`: the label each position predicts (−100 = none). Writes the per-position
/// losses into `loss (BT)` and accumulates (+=) the LoRA gradients into `grads` (same layout
/// as the parameters); `grad_scale` is d(mean loss)/d(position loss) = 1 / trained tokens of
/// the whole optimizer step.
#[allow(clippy::too_many_arguments)] // mirrors the kernels' llm.c-style signatures
pub fn record_loss_and_backward(
    model: &Gpt2,
    cmd: &mut Commands,
    acts: &Acts,
    mask: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    adapter: &AdapterRef,
    grads: &Tensor,
    grad_scale: f32,
) {
    let gpu = cmd.gpu();
    let cfg = &model.config;
    let (b, t, c, v) = (acts.b, acts.t, cfg.n_embd, cfg.vocab_size);
    let rows = b * t;
    // Gradient buffers, reused across layers.
    let dlnf = gpu.tensor(rows * c);
    let dx = gpu.tensor(rows * c); // d loss / d residual stream
    let dln = gpu.tensor(rows * c);
    let datt = gpu.tensor(rows * c);
    let dqkv = gpu.tensor(rows * 3 * c);
    let dg = gpu.tensor(rows * 4 * c);
    let dh = gpu.tensor(rows * 4 * c);
    let delta = gpu.tensor(b * cfg.n_head * t);
    let du = gpu.tensor(rows * adapter.rank);
    let scratch = gpu.tensor(rows * 4 * c);

    let chunk = vocab_chunk(gpu, rows, v);
    let (logits, state) = (gpu.tensor(rows * chunk), gpu.tensor(rows * 3));
    lm_head_loss(
        cmd,
        loss,
        Some(&dlnf),
        &logits,
        &state,
        &acts.lnf,
        &model.wte,
        targets,
        rows,
        c,
        v,
        chunk,
        grad_scale,
        Reduction::Auto,
    );
    // dx (+)= d LayerNorm / d x · dout (the parameters are frozen).
    let norm_back = |cmd: &mut Commands, dx, dout, x, ln, mean, rstd, acc| {
        layernorm_backward(
            cmd,
            dx,
            dout,
            x,
            ln,
            mean,
            rstd,
            rows,
            c,
            acc,
            Reduction::Auto,
        );
    };
    let (mean, rstd) = (&acts.mean_f, &acts.rstd_f);
    norm_back(
        cmd,
        &dx,
        &dlnf,
        &acts.x_final,
        &model.ln_f,
        mean,
        rstd,
        false,
    );

    let dims = AttnDims::mha(b, t, c, cfg.n_head);
    let pass = Pass {
        b,
        t,
        src: AttnSource::Batch { mask },
        adapter: Some(adapter),
    };
    for (l, (blk, a)) in model.blocks.iter().zip(&acts.blocks).enumerate().rev() {
        if acts.checkpointed() {
            // Gradient checkpointing: rebuild this block's activations from its input.
            model.record_block(cmd, l, a, &pass, acts.lora_scratch.as_ref());
        }
        // d input of a Conv1D (overwrite), then its LoRA part (+=) and LoRA A/B grads (+=).
        let linear_back =
            |cmd: &mut Commands, m: Module, dx_in: &Tensor, dy: &Tensor, x: &Tensor| {
                let lin = blk.linear(m);
                linear_backward_input(
                    cmd,
                    dx_in,
                    dy,
                    &lin.weight,
                    rows,
                    lin.k_in,
                    lin.n_out,
                    false,
                );
                if let Some(slot) = adapter.slot(l, m) {
                    let u = a.u[m.index()].as_ref().expect("forward kept u");
                    let da = grads.slice(slot.a, adapter.rank * slot.k_in);
                    let db = grads.slice(slot.b, slot.n_out * adapter.rank);
                    lora_backward(
                        cmd,
                        dx_in,
                        &da,
                        &db,
                        dy,
                        x,
                        u,
                        &adapter.a(slot),
                        &adapter.b(slot),
                        &scratch,
                        &du,
                        &adapter.dims(slot, rows),
                    );
                }
            };
        // MLP: x_out = x_mid + c_proj(gelu(c_fc(ln_2(x_mid))))
        linear_back(cmd, Module::MlpProj, &dg, &dx, &a.g);
        gelu_backward(cmd, &dh, &a.h, &dg, rows * 4 * c, false);
        linear_back(cmd, Module::CFc, &dln, &dh, &a.ln2);
        norm_back(
            cmd, &dx, &dln, &a.x_mid, &blk.ln_2, &a.mean2, &a.rstd2, true,
        );
        // Attention: x_mid = x_in + c_proj(attn(c_attn(ln_1(x_in))))
        linear_back(cmd, Module::AttnProj, &datt, &dx, &a.att);
        attention_backward(
            cmd, &dqkv, &delta, &datt, &a.att, &a.qkv, &a.lse, mask, &dims,
        );
        linear_back(cmd, Module::CAttn, &dln, &dqkv, &a.ln1);
        norm_back(cmd, &dx, &dln, &a.x_in, &blk.ln_1, &a.mean1, &a.rstd1, true);
    }
}
