//! LoRA on one Conv1D layer, PEFT semantics:
//! `y += scale · dropout(x) · Aᵀ · Bᵀ` with `A (r,in)`, `B (out,r)`, and its backward to
//! dA, dB and the LoRA part of dx. Built from [`gemm`] plus the seeded dropout kernel; the
//! dropout mask is recomputed from the seed in the backward pass instead of being stored.
//! [`lora_linear_forward`] runs the base layer and its LoRA together, the up-projection in
//! the base matmul's epilogue ([`LowRank`]).

use bytemuck::{Pod, Zeroable};

use super::Shader;
use super::matmul::{Gemm, LowRank, Weight, gemm, linear_forward};
use crate::gpu::{Commands, Tensor, grid_1d};

/// Sizes and scalars of one LoRA-adapted layer in one step.
#[derive(Clone, Copy, Debug)]
pub struct LoraDims {
    /// Rows of x (B*T).
    pub m: usize,
    pub k_in: usize,
    pub n_out: usize,
    pub rank: usize,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scale: f32,
    /// Dropout probability on the LoRA input; 0 disables the dropout pass.
    pub p_drop: f32,
    /// Seed of this layer's dropout mask for this step.
    pub seed: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DropoutParams {
    n: u32,
    seed: u32,
    p_drop: f32,
    accumulate: u32,
}

/// `out (+)= x * keep(seed,i) / (1-p)` over `n` elements (`cpu::lora::dropout` on the CPU).
pub fn dropout(
    cmd: &mut Commands,
    out: &Tensor,
    x: &Tensor,
    n: usize,
    p_drop: f32,
    seed: u32,
    accumulate: bool,
) {
    let pipeline = Shader::Lora.pipeline(cmd.gpu(), "lora_dropout", &[]);
    let params = DropoutParams {
        n: n as u32,
        seed,
        p_drop,
        accumulate: accumulate as u32,
    };
    cmd.dispatch(&pipeline, &params, &[out, x], grid_1d(n, 256));
}

/// Forward: `y (M,out) += scale · h · Aᵀ · Bᵀ` with `h = dropout(x)`.
/// Saves `u = h · Aᵀ (M,r)` for the backward pass. `h_scratch (M,in)` is used only when
/// `p_drop > 0`.
pub fn lora_forward(
    cmd: &mut Commands,
    y: &Tensor,
    u: &Tensor,
    h_scratch: &Tensor,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: &LoraDims,
) {
    down_projection(cmd, u, h_scratch, x, a, d);
    gemm(
        cmd,
        y,
        u,
        &Weight::F32(b.clone()),
        None,
        Gemm::new(d.m, d.n_out, d.rank)
            .trans_b(true)
            .alpha(d.scale)
            .accumulate(true),
    );
}

/// A LoRA-adapted Conv1D: `y (M,out) (+)= x·W + bias + scale · h·Aᵀ·Bᵀ` with `h = dropout(x)`,
/// saving `u = h·Aᵀ (M,r)` as [`lora_forward`] does. With the tuning's `fused_lora` (the
/// default), u is computed first and the base matmul adds `scale · u·Bᵀ` in its epilogue: the
/// up-projection's dispatch and its second read and write of y disappear. Otherwise the base
/// layer ([`linear_forward`]) and [`lora_forward`] run one after the other.
pub fn lora_linear_forward(
    cmd: &mut Commands,
    y: &Tensor,
    u: &Tensor,
    h_scratch: &Tensor,
    x: &Tensor,
    w: &Weight,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    d: &LoraDims,
    accumulate: bool,
) {
    if !super::tuning(cmd.gpu()).fused_lora {
        linear_forward(cmd, y, x, w, bias, d.m, d.k_in, d.n_out, accumulate);
        lora_forward(cmd, y, u, h_scratch, x, a, b, d);
        return;
    }
    down_projection(cmd, u, h_scratch, x, a, d);
    let low_rank = LowRank {
        u,
        l: b,
        rank: d.rank,
        scale: d.scale,
    };
    let g = Gemm::new(d.m, d.n_out, d.k_in)
        .trans_b(w.is_linear_layout())
        .accumulate(accumulate)
        .low_rank(low_rank);
    gemm(cmd, y, x, w, bias, g);
}

/// Backward: `dA (r,in) += duᵀ·h`, `dB (out,r) += scale·dyᵀ·u`, `dx (M,in) += dropout'(du·A)`
/// with `du = scale·dy·B (M,r)`. Gradients accumulate (micro-batches add up); `dx` holds the
/// base layer's input gradient already. Scratch: `h_scratch (M,in)`, `du (M,r)`.
pub fn lora_backward(
    cmd: &mut Commands,
    dx: &Tensor,
    da: &Tensor,
    db: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    u: &Tensor,
    a: &Tensor,
    b: &Tensor,
    h_scratch: &Tensor,
    du: &Tensor,
    d: &LoraDims,
) {
    // du (M,r) = scale · dy (M,out) · B (out,r)
    gemm(
        cmd,
        du,
        dy,
        &Weight::F32(b.clone()),
        None,
        Gemm::new(d.m, d.rank, d.n_out).alpha(d.scale),
    );
    // dB (out,r) += scale · dyᵀ · u
    gemm(
        cmd,
        db,
        dy,
        &Weight::F32(u.clone()),
        None,
        Gemm::new(d.n_out, d.rank, d.m)
            .trans_a(true)
            .alpha(d.scale)
            .accumulate(true),
    );
    // dA (r,in) += duᵀ · h
    let h = dropped_input(cmd, h_scratch, x, d);
    gemm(
        cmd,
        da,
        du,
        &Weight::F32(h.clone()),
        None,
        Gemm::new(d.rank, d.k_in, d.m)
            .trans_a(true)
            .accumulate(true),
    );
    // dx += dropout'(du · A): straight into dx without dropout, through the scratch with it.
    let a_w = Weight::F32(a.clone());
    if d.p_drop > 0.0 {
        gemm(
            cmd,
            h_scratch,
            du,
            &a_w,
            None,
            Gemm::new(d.m, d.k_in, d.rank),
        );
        dropout(cmd, dx, h_scratch, d.m * d.k_in, d.p_drop, d.seed, true);
    } else {
        gemm(
            cmd,
            dx,
            du,
            &a_w,
            None,
            Gemm::new(d.m, d.k_in, d.rank).accumulate(true),
        );
    }
}

/// `dropout(x)` into the scratch, or `x` itself when dropout is off.
/// `u (M,r) = dropout(x) · Aᵀ`, LoRA's down-projection (kept for the backward pass).
fn down_projection(
    cmd: &mut Commands,
    u: &Tensor,
    h_scratch: &Tensor,
    x: &Tensor,
    a: &Tensor,
    d: &LoraDims,
) {
    let h = dropped_input(cmd, h_scratch, x, d);
    gemm(
        cmd,
        u,
        h,
        &Weight::F32(a.clone()),
        None,
        Gemm::new(d.m, d.rank, d.k_in).trans_b(true),
    );
}

fn dropped_input<'t>(
    cmd: &mut Commands,
    h_scratch: &'t Tensor,
    x: &'t Tensor,
    d: &LoraDims,
) -> &'t Tensor {
    if d.p_drop > 0.0 {
        dropout(cmd, h_scratch, x, d.m * d.k_in, d.p_drop, d.seed, false);
        h_scratch
    } else {
        x
    }
}
