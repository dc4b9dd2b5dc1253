// Shared by matmul.wgsl, matmul_tiled.wgsl and gemv.wgsl (the registry prepends it with a B loader,
// matmul_b_{f32,f16,nf4}.wgsl): the override constants, Params and bindings of
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N]
//
// and the A / B index helpers. A is row-major f32 [M,K], or [K,M] when TRANS_A; B is read
// through `load_b` / `load_b_run4` at flat indices of its [K,N] (or [N,K] when TRANS_B) storage.

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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

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
