//! Matrix-vector products for C with at most [`GEMV_MAX_ROWS`] rows (`shaders/gemv.wgsl`):
//! decoding one token runs every linear layer and the LM head at M = 1, where the register
//! matmul keeps one invocation in eight busy and walks all of K in one invocation.
//! [`gemv`] computes exactly what [`gemm`](super::matmul::gemm) does (same [`Gemm`], same
//! weights, same CPU reference `cpu::matmul::gemm`); `gemm` routes small M here.

use super::Shader;
use super::matmul::{Gemm, Weight, dispatch};
use crate::gpu::{Commands, Tensor};

/// Most rows of C the kernel handles (its partial sums hold 4 rows).
pub const GEMV_MAX_ROWS: usize = 4;

/// Output columns per workgroup: 4 groups of 4, each summed over K by 16 invocations.
const COLS_PER_GROUP: usize = 16;

fn shader(b: &Weight) -> Shader {
    match b {
        Weight::F32(_) => Shader::GemvF32,
        Weight::F16(_) => Shader::GemvF16,
        Weight::Nf4 { .. } => Shader::GemvNf4,
    }
}

/// `C[M,N] = alpha·op(A)·op(B) + beta·C + bias[N]` for `M <= GEMV_MAX_ROWS`, plus
/// `g.low_rank`'s term in the epilogue (its r steps are split across a workgroup like K).
/// `g.variant` does not apply: this is a kernel of its own.
pub fn gemv(
    cmd: &mut Commands,
    c: &Tensor,
    a: &Tensor,
    b: &Weight,
    bias: Option<&Tensor>,
    g: Gemm,
) {
    assert!(
        g.m <= GEMV_MAX_ROWS,
        "gemv: {} rows, at most {GEMV_MAX_ROWS}",
        g.m
    );
    let ldc = super::matmul::check_operands("gemv", c, a, &g);
    if g.m == 0 || g.n == 0 {
        return;
    }
    // B's runs of 4 go along K when transposed, along N otherwise; NF4 needs them 4-aligned
    // so that a run is one half-word within one 64-block. A is read by scalars.
    let b_run = if g.trans_b { g.k } else { g.n };
    let groups = [g.n.div_ceil(COLS_PER_GROUP) as u32, 1, 1];
    let vec_ok = b_run.is_multiple_of(4) as u32;
    let entry = if g.low_rank.is_some() {
        "gemv_low_rank"
    } else {
        "gemv"
    };
    dispatch(
        cmd,
        (shader(b), entry),
        c,
        a,
        b,
        bias,
        &g,
        ldc,
        vec_ok,
        groups,
        None,
    );
}
