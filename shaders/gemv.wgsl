// Matrix-vector form of matmul.wgsl for C with at most 4 rows (decoding one token: M = 1):
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N],   M <= 4
//
// Same bindings, Params, override constants and B loaders (matmul_b_{f32,f16,nf4}.wgsl,
// prepended by the registry) as matmul.wgsl. There, an 8×4 register block per invocation
// leaves 7 of every 8 rows idle at M = 1, and one invocation walks all of K alone. Here a
// workgroup of 16×4 invocations owns 16 output columns (4 groups of 4) and splits K 16 ways:
// invocation (ks, cg) takes the runs of 4 at kk = 4·ks, 4·(ks+16), … for columns
// 4·(4·wg + cg) .. +4, for every row of A. The 16 partial sums per column meet in workgroup
// memory after one barrier. Each B value is read (and NF4-decoded) once per workgroup.
// p.vec_ok says B's runs of 4 are 4-aligned (checked on the host); A is read by scalars, so
// it needs no alignment. beta == 0 never reads C (pooled buffers hold garbage).

const KSPLIT: u32 = 16u;    // invocations sharing one column group's K
const GROUPS: u32 = 4u;     // column groups of 4 per workgroup
const MAX_ROWS: u32 = 4u;   // rows of C (the host routes only M <= 4 here)

// Partial sums, index (row · GROUPS + cg) · KSPLIT + ks: 4 rows × 64 invocations.
var<workgroup> partial: array<vec4<f32>, 256>;

// Params, bindings, load_a, b_index and b_block: matmul_common.wgsl.

// A[row, kk..kk+4].
fn a_row4(row: u32, kk: u32) -> vec4<f32> {
    return vec4<f32>(load_a(row, kk), load_a(row, kk + 1u), load_a(row, kk + 2u),
                     load_a(row, kk + 3u));
}

// Columns of C (0..4) in invocation (ks, cg)'s column group col0 = 4·(4·wg + cg).
fn group_cols(col0: u32) -> u32 {
    if (col0 < p.n) { return min(4u, p.n - col0); }
    return 0u;
}

// Invocation ks's share of op(A)·op(B) for rows 0..rows and columns col0..col0+cols.
fn partial_product(ks: u32, col0: u32, cols: u32, rows: u32) -> array<vec4<f32>, 4> {
    var acc: array<vec4<f32>, 4>;
    var k_done = 0u;
    if (p.vec_ok != 0u && cols == 4u) {
        k_done = p.k & ~3u;
        for (var kk = ks * 4u; kk < k_done; kk += KSPLIT * 4u) {
            let bm = b_block(kk, col0);
            // bm * v = Σ_r bm[r] · v[r]: row i of C gains Σ_r A[i, kk+r] · B[kk+r, :].
            for (var i = 0u; i < rows; i++) { acc[i] += bm * a_row4(i, kk); }
        }
    }
    // Scalar path: edge column groups, unaligned B, and the K tail of the fast path.
    if (cols > 0u) {
        for (var kk = k_done + ks; kk < p.k; kk += KSPLIT) {
            var bv = vec4<f32>(0.0);
            for (var j = 0u; j < cols; j++) { bv[j] = load_b(b_index(kk, col0 + j)); }
            for (var i = 0u; i < rows; i++) { acc[i] += load_a(i, kk) * bv; }
        }
    }
    return acc;
}

// Sum the KSPLIT partial sums of each column group and write C = alpha · sum + beta · C +
// bias. Every invocation must call it (barrier).
fn finish(ks: u32, cg: u32, col0: u32, cols: u32, rows: u32, acc: array<vec4<f32>, 4>,
          alpha: f32) {
    for (var i = 0u; i < MAX_ROWS; i++) {
        partial[(i * GROUPS + cg) * KSPLIT + ks] = acc[i];
    }
    workgroupBarrier();

    // Invocation ks < rows finishes row ks of this column group.
    if (ks < rows && cols > 0u) {
        let base = (ks * GROUPS + cg) * KSPLIT;
        var sum = vec4<f32>(0.0);
        for (var s = 0u; s < KSPLIT; s++) { sum += partial[base + s]; }
        for (var j = 0u; j < cols; j++) {
            let idx = ks * p.ldc + col0 + j;
            var v = alpha * sum[j];
            if (p.beta != 0.0) { v += p.beta * c[idx]; }
            if (p.has_bias != 0u) { v += bias[col0 + j]; }
            c[idx] = v;
        }
    }
}

@compute @workgroup_size(16, 4)
fn gemv(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
    let col0 = (wid.x * GROUPS + lid.y) * 4u;
    let cols = group_cols(col0);
    let rows = min(p.m, MAX_ROWS);
    // No early return: every invocation must reach the barrier in finish.
    let acc = partial_product(lid.x, col0, cols, rows);
    finish(lid.x, lid.y, col0, cols, rows, acc, p.alpha);
}

// gemv plus lr_scale · U·Lᵀ (matmul_common.wgsl): the r steps are split across the KSPLIT
// invocations like K is (invocation ks takes j = ks, ks + 16, ...) and join the partial sums
// after alpha has scaled them, so one reduction covers both.
@compute @workgroup_size(16, 4)
fn gemv_low_rank(@builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(workgroup_id) wid: vec3<u32>) {
    let ks = lid.x;
    let col0 = (wid.x * GROUPS + lid.y) * 4u;
    let cols = group_cols(col0);
    let rows = min(p.m, MAX_ROWS);
    var acc = partial_product(ks, col0, cols, rows);
    for (var i = 0u; i < MAX_ROWS; i++) { acc[i] *= p.alpha; }
    if (cols > 0u) {
        for (var j = ks; j < p.rank; j += KSPLIT) {
            let l = low_rank_l4(col0, cols, j);
            for (var i = 0u; i < rows; i++) { acc[i] += low_rank_u(i, j) * l; }
        }
    }
    finish(ks, lid.y, col0, cols, rows, acc, 1.0);
}
