// Shared by matmul.wgsl, matmul_tiled.wgsl and gemv.wgsl (the registry prepends it with a B loader,
// matmul_b_{f32,f16,nf4}.wgsl): the override constants, Params and bindings of
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N]
//              (+ lr_scale * U[M,r] · L[N,r]ᵀ in the *_low_rank entry points)
//
// and the A / B index helpers. A is row-major f32 [M,K], or [K,M] when TRANS_A; B is read
// through `load_b` / `load_b_run4` at flat indices of its [K,N] (or [N,K] when TRANS_B) storage.
//
// The low-rank term is LoRA's `scale · u · Bᵀ` (u = x·Aᵀ), added in the epilogue so that it
// needs no dispatch of its own nor a second pass over C. Only the *_low_rank entry points use
// bindings 6 and 7 (pipeline layouts are derived per entry point), so the plain ones bind and
// pay nothing for it.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
    ldc: u32,      // row stride of C (N, or more when C is a column block of a wider matrix)
    vec_ok: u32,   // 1 when the runs of 4 that the fast path loads are 4-aligned (see gemm())
    rank: u32,     // r of the low-rank epilogue (0 in the plain entry points)
    lr_scale: f32, // its scale
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> lr_u: array<f32>;   // (M, rank) row-major
@group(0) @binding(7) var<storage, read> lr_l: array<f32>;   // (N, rank) row-major

fn load_a(row: u32, kk: u32) -> f32 {
    if (TRANS_A) { return a[kk * p.m + row]; }
    return a[row * p.k + kk];
}

fn b_index(kk: u32, col: u32) -> u32 {
    if (TRANS_B) { return col * p.k + kk; }
    return kk * p.n + col;
}

// B[kk..kk+4, col0..col0+4] with column r of the matrix holding B row kk+r.
fn b_block(kk: u32, col0: u32) -> mat4x4<f32> {
    if (TRANS_B) {
        // Runs go along K (one per output column): load by column, then transpose.
        return transpose(mat4x4<f32>(
            load_b_run4(b_index(kk, col0)),
            load_b_run4(b_index(kk, col0 + 1u)),
            load_b_run4(b_index(kk, col0 + 2u)),
            load_b_run4(b_index(kk, col0 + 3u))));
    }
    return mat4x4<f32>(
        load_b_run4(b_index(kk, col0)),
        load_b_run4(b_index(kk + 1u, col0)),
        load_b_run4(b_index(kk + 2u, col0)),
        load_b_run4(b_index(kk + 3u, col0)));
}

// U[row, j].
fn low_rank_u(row: u32, j: u32) -> f32 {
    return lr_u[row * p.rank + j];
}

// lr_scale · L[col0 + c, j] for c < cols, 0 beyond: one step j of the rank-r sum for a run
// of up to 4 output columns.
fn low_rank_l4(col0: u32, cols: u32, j: u32) -> vec4<f32> {
    var l = vec4<f32>(0.0);
    for (var c = 0u; c < cols; c++) { l[c] = lr_l[(col0 + c) * p.rank + j]; }
    return p.lr_scale * l;
}
