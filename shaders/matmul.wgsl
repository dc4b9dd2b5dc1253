// General matrix multiply over f32 activations and f32 / f16 / NF4 weights:
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N]
//
// op(X) is X or Xᵀ, chosen per pipeline with the override constants TRANS_A / TRANS_B.
// A is row-major f32: [M,K], or [K,M] when TRANS_A. B is read through `load_b(i)`, the flat
// element index into B's row-major storage ([K,N], or [N,K] when TRANS_B); the registry
// prepends one of matmul_b_{f32,f16,nf4}.wgsl, which declares binding 3 (and 5) and load_b.
//
// Each invocation computes a 4×4 block of C in registers; a workgroup of 8×8 invocations
// covers a 32×32 tile. beta == 0 never reads C (pooled buffers hold garbage).

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
    _pad1: u32,
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

@compute @workgroup_size(8, 8)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    let rows = min(4u, p.m - row0);
    let cols = min(4u, p.n - col0);

    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv = vec4<f32>(0.0);
        for (var j = 0u; j < cols; j++) { bv[j] = load_b(b_index(kk, col0 + j)); }
        for (var i = 0u; i < rows; i++) {
            acc[i] += load_a(row0 + i, kk) * bv;
        }
    }

    for (var i = 0u; i < rows; i++) {
        for (var j = 0u; j < cols; j++) {
            let idx = (row0 + i) * p.ldc + col0 + j;
            var v = p.alpha * acc[i][j];
            if (p.beta != 0.0) { v += p.beta * c[idx]; }
            if (p.has_bias != 0u) { v += bias[col0 + j]; }
            c[idx] = v;
        }
    }
}
