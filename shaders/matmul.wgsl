// General matrix multiply over f32 activations and f32 / f16 / NF4 weights:
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N]
//
// op(X) is X or Xᵀ, chosen per pipeline with the override constants TRANS_A / TRANS_B.
// A is row-major f32: [M,K], or [K,M] when TRANS_A. B is read through the loader that the
// registry prepends (one of matmul_b_{f32,f16,nf4}.wgsl, declaring binding 3, and 5 for NF4):
// `load_b(i)` reads the element at flat index i of B's row-major storage ([K,N], or [N,K]
// when TRANS_B), and `load_b_run4(i)` the four elements i..i+3 for i a multiple of 4 (one
// NF4 half-word with its absmax, two f16 words: the format is decoded once per four values).
//
// Each invocation computes an 8×4 block of C (8 rows, 4 columns) in registers; a workgroup
// of 8×8 invocations covers a 64×32 tile. No workgroup memory or barriers: on CPU Vulkan
// (lavapipe) barriers cost more than the reuse saves, while register blocks reuse each B
// value (and its NF4 decoding) eight times and each A value four times.
// Blocks of 4 full columns whose K-runs are 4-aligned (p.vec_ok, checked on the host) take the
// fast path: K in steps of 4, each step one 4×4 block of B (as a mat4x4) times up to eight A
// vectors. The block product goes through `prep_b` / `block_times`, which the registry also
// prepends (matmul_math_f32.wgsl, or matmul_math_f16.wgsl for f16 arithmetic). Blocks at the
// right edge and the K tail take the scalar path. beta == 0 never reads C (pooled buffers
// hold garbage).

// Params, bindings, load_a, b_index and b_block: matmul_common.wgsl.

fn a_run4(i: u32) -> vec4<f32> {
    return vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]);
}

// A[row, kk..kk+4].
fn a_row4(row: u32, kk: u32) -> vec4<f32> {
    if (TRANS_A) {
        return vec4<f32>(a[kk * p.m + row], a[(kk + 1u) * p.m + row],
                         a[(kk + 2u) * p.m + row], a[(kk + 3u) * p.m + row]);
    }
    return a_run4(row * p.k + kk);
}

// A[row0..row0+4, kk..kk+4], with column i of the matrix holding row row0+i's four values.
fn a_block(row0: u32, kk: u32) -> mat4x4<f32> {
    if (TRANS_A) {
        return transpose(mat4x4<f32>(
            a_run4(kk * p.m + row0),
            a_run4((kk + 1u) * p.m + row0),
            a_run4((kk + 2u) * p.m + row0),
            a_run4((kk + 3u) * p.m + row0)));
    }
    return mat4x4<f32>(
        a_run4(row0 * p.k + kk),
        a_run4((row0 + 1u) * p.k + kk),
        a_run4((row0 + 2u) * p.k + kk),
        a_run4((row0 + 3u) * p.k + kk));
}

// The 8×4 block of op(A)·op(B) at (row0, col0), of which rows × cols lie inside C.
fn block_product(row0: u32, col0: u32, rows: u32, cols: u32) -> array<vec4<f32>, 8> {
    var acc: array<vec4<f32>, 8>;
    var k_done = 0u;
    if (p.vec_ok != 0u && cols == 4u) {
        k_done = p.k & ~3u;
        for (var kk = 0u; kk < k_done; kk += 4u) {
            let bm = prep_b(b_block(kk, col0));
            if (rows == 8u) {
                let top = a_block(row0, kk);
                let bottom = a_block(row0 + 4u, kk);
                // bm * v = Σ_r bm[r] · v[r]: row i of C gains Σ_r A[i, kk+r] · B[kk+r, :].
                acc[0] += block_times(bm, top[0]);
                acc[1] += block_times(bm, top[1]);
                acc[2] += block_times(bm, top[2]);
                acc[3] += block_times(bm, top[3]);
                acc[4] += block_times(bm, bottom[0]);
                acc[5] += block_times(bm, bottom[1]);
                acc[6] += block_times(bm, bottom[2]);
                acc[7] += block_times(bm, bottom[3]);
            } else {
                // The last row block (e.g. M = 1 when decoding): same B block, fewer rows.
                for (var i = 0u; i < rows; i++) { acc[i] += block_times(bm, a_row4(row0 + i, kk)); }
            }
        }
    }
    for (var kk = k_done; kk < p.k; kk++) {
        var bv = vec4<f32>(0.0);
        for (var j = 0u; j < cols; j++) { bv[j] = load_b(b_index(kk, col0 + j)); }
        for (var i = 0u; i < rows; i++) {
            acc[i] += load_a(row0 + i, kk) * bv;
        }
    }
    return acc;
}

// C = alpha · acc + beta · C + bias over the block's rows × cols.
fn store_block(row0: u32, col0: u32, rows: u32, cols: u32, acc: array<vec4<f32>, 8>,
               alpha: f32) {
    for (var i = 0u; i < rows; i++) {
        for (var j = 0u; j < cols; j++) {
            let idx = (row0 + i) * p.ldc + col0 + j;
            var v = alpha * acc[i][j];
            if (p.beta != 0.0) { v += p.beta * c[idx]; }
            if (p.has_bias != 0u) { v += bias[col0 + j]; }
            c[idx] = v;
        }
    }
}

@compute @workgroup_size(8, 8)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    let rows = min(8u, p.m - row0);
    let cols = min(4u, p.n - col0);
    store_block(row0, col0, rows, cols, block_product(row0, col0, rows, cols), p.alpha);
}

// matmul plus lr_scale · U·Lᵀ (matmul_common.wgsl) in the epilogue: alpha scales the product
// first, then each of the r steps adds one column of U times one row of L to the block (one
// more K step's worth of work, without a dispatch or a pass over C of its own).
@compute @workgroup_size(8, 8)
fn matmul_low_rank(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    let rows = min(8u, p.m - row0);
    let cols = min(4u, p.n - col0);
    var acc = block_product(row0, col0, rows, cols);
    for (var i = 0u; i < 8u; i++) { acc[i] *= p.alpha; }
    for (var j = 0u; j < p.rank; j++) {
        let l = low_rank_l4(col0, cols, j);
        for (var i = 0u; i < rows; i++) { acc[i] += low_rank_u(row0 + i, j) * l; }
    }
    store_block(row0, col0, rows, cols, acc, 1.0);
}
