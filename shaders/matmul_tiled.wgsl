// General matrix multiply for real GPUs, same contract as matmul.wgsl:
//
//     C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C + bias[N]
//
// (TRANS_A / TRANS_B override constants, A row-major f32, B read through the loader that the
// registry prepends: one of matmul_b_{f32,f16,nf4}.wgsl with `load_b` and `load_b_run4`; the
// inner loop's block arithmetic from matmul_math_{f32,f16}.wgsl, as in matmul.wgsl.)
//
// The classic shared-memory kernel: a workgroup of WG_X × WG_Y invocations owns a tile of C
// of TM = 4·WG_Y rows and TN = 4·WG_X columns and walks K in steps of BK = 16. Each step, the
// invocations stage a TM×BK slice of A and a BK×TN slice of B in workgroup memory (runs of 4
// values each, as many rounds as it takes), so each global value is read once per tile
// instead of once per register block, and B is decoded (f16 unpack, NF4 code lookup and
// absmax scale) once per tile. Each invocation then accumulates a 4×4 block of C in registers
// from one vec4 of A and one vec4 of B per k. WG_X and WG_Y are override constants: the host
// picks the tile shape (64×64 by default; the autotuner times others, kernels/autotune.rs).
// Workgroup memory: BK · (TM + TN) · 4 B (8 KiB at 64×64), invocations WG_X · WG_Y: both
// checked against the device's limits on the host.
//
// Both slices are stored k-major as vec4s: `as_[k * WG_Y + i]` holds rows 4i..4i+3 of the
// tile at k, `bs[k * WG_X + j]` columns 4j..4j+3. Values outside the matrix are staged as 0,
// so edge tiles and the K tail need no special inner loop. Runs of 4 along a dimension that is
// a multiple of 4 (p.vec_ok bit 0 for A, bit 1 for B, checked on the host) are loaded as one
// vec4 (NF4: one half-word and one absmax); others element by element.
// beta == 0 never reads C (pooled buffers hold garbage).

// Params (vec_ok here: bit 0 A's runs are 4-aligned, bit 1 B's), bindings, load_a and
// b_index: matmul_common.wgsl.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
const BK: u32 = 16u;

var<workgroup> as_: array<vec4<f32>, BK * WG_Y>;   // (BK, TM/4) rows of the A slice
var<workgroup> bs: array<vec4<f32>, BK * WG_X>;    // (BK, TN/4) columns of the B slice

// op(A)[row, kk], 0 outside the matrix.
fn a_at(row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) { return 0.0; }
    return load_a(row, kk);
}

// op(B)[kk, col], 0 outside the matrix.
fn b_at(kk: u32, col: u32) -> f32 {
    if (kk >= p.k || col >= p.n) { return 0.0; }
    return load_b(b_index(kk, col));
}

// Stage A[r0.., k0..] as (BK, TM) in as_: run s of the TM·BK/4 runs of 4 along A's storage
// rows: along K (4 k's of one row) or, when TRANS_A, along M (4 rows at one k).
fn stage_a_run(s: u32, r0: u32, k0: u32) {
    let vec_ok = (p.vec_ok & 1u) != 0u;
    if (TRANS_A) {
        let kk = s / WG_Y;
        let rq = (s % WG_Y) * 4u;
        let row = r0 + rq;
        let k = k0 + kk;
        var v: vec4<f32>;
        if (vec_ok && row < p.m && k < p.k) {
            let i = k * p.m + row;
            v = vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]);
        } else {
            v = vec4<f32>(a_at(row, k), a_at(row + 1u, k), a_at(row + 2u, k), a_at(row + 3u, k));
        }
        as_[kk * WG_Y + rq / 4u] = v;
    } else {
        let r = s / 4u;
        let kq = (s % 4u) * 4u;
        let row = r0 + r;
        let k = k0 + kq;
        var v: vec4<f32>;
        if (vec_ok && row < p.m && k < p.k) {
            let i = row * p.k + k;
            v = vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]);
        } else {
            v = vec4<f32>(a_at(row, k), a_at(row, k + 1u), a_at(row, k + 2u), a_at(row, k + 3u));
        }
        for (var j = 0u; j < 4u; j++) { as_[(kq + j) * WG_Y + r / 4u][r % 4u] = v[j]; }
    }
}

// Stage B[k0.., c0..] as (BK, TN) in bs, decoded to f32: run s of the BK·TN/4 runs of 4
// along B's storage rows: along N (4 columns at one k) or, when TRANS_B, along K.
fn stage_b_run(s: u32, k0: u32, c0: u32) {
    let vec_ok = (p.vec_ok & 2u) != 0u;
    if (TRANS_B) {
        let cc = s / 4u;
        let kq = (s % 4u) * 4u;
        let col = c0 + cc;
        let k = k0 + kq;
        var v: vec4<f32>;
        if (vec_ok && col < p.n && k < p.k) {
            v = load_b_run4(col * p.k + k);
        } else {
            v = vec4<f32>(b_at(k, col), b_at(k + 1u, col), b_at(k + 2u, col), b_at(k + 3u, col));
        }
        for (var j = 0u; j < 4u; j++) { bs[(kq + j) * WG_X + cc / 4u][cc % 4u] = v[j]; }
    } else {
        let kk = s / WG_X;
        let cq = (s % WG_X) * 4u;
        let col = c0 + cq;
        let k = k0 + kk;
        var v: vec4<f32>;
        if (vec_ok && col < p.n && k < p.k) {
            v = load_b_run4(k * p.n + col);
        } else {
            v = vec4<f32>(b_at(k, col), b_at(k, col + 1u), b_at(k, col + 2u), b_at(k, col + 3u));
        }
        bs[kk * WG_X + cq / 4u] = v;
    }
}

// This invocation's 4×4 block of op(A)·op(B): rows r0 + 4·lid.y + i, columns c0 + 4·lid.x ..+4
// of the workgroup's tile at (r0, c0). Every invocation must call it (barriers).
fn tile_product(r0: u32, c0: u32, lid: vec3<u32>, t: u32) -> array<vec4<f32>, 4> {
    var acc: array<vec4<f32>, 4>;
    let threads = WG_X * WG_Y;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // BK·TM/4 = 4·WG_Y runs of A and 4·WG_X of B (as many as invocations at 16×16).
        for (var s = t; s < BK * WG_Y; s += threads) { stage_a_run(s, r0, k0); }
        for (var s = t; s < BK * WG_X; s += threads) { stage_b_run(s, k0, c0); }
        workgroupBarrier();
        // Four k at a time: the 4×4 block of B (k rows × this invocation's 4 columns) is
        // prepared once (f16 under matmul_math_f16.wgsl) and shared by the 4 rows.
        for (var kq = 0u; kq < BK; kq += 4u) {
            let blk = prep_b(mat4x4<f32>(bs[kq * WG_X + lid.x], bs[(kq + 1u) * WG_X + lid.x],
                                         bs[(kq + 2u) * WG_X + lid.x], bs[(kq + 3u) * WG_X + lid.x]));
            let a0 = as_[kq * WG_Y + lid.y];
            let a1 = as_[(kq + 1u) * WG_Y + lid.y];
            let a2 = as_[(kq + 2u) * WG_Y + lid.y];
            let a3 = as_[(kq + 3u) * WG_Y + lid.y];
            acc[0] += block_times(blk, vec4<f32>(a0.x, a1.x, a2.x, a3.x));
            acc[1] += block_times(blk, vec4<f32>(a0.y, a1.y, a2.y, a3.y));
            acc[2] += block_times(blk, vec4<f32>(a0.z, a1.z, a2.z, a3.z));
            acc[3] += block_times(blk, vec4<f32>(a0.w, a1.w, a2.w, a3.w));
        }
        workgroupBarrier();
    }
    return acc;
}

// C = alpha · acc + beta · C + bias over the block's rows × cols.
fn store_block(row0: u32, col0: u32, rows: u32, cols: u32, acc: array<vec4<f32>, 4>,
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

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) t: u32) {
    let acc = tile_product(wid.y * 4u * WG_Y, wid.x * 4u * WG_X, lid, t);
    let row0 = (wid.y * WG_Y + lid.y) * 4u;
    let col0 = (wid.x * WG_X + lid.x) * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    store_block(row0, col0, min(4u, p.m - row0), min(4u, p.n - col0), acc, p.alpha);
}

// matmul_tiled plus lr_scale · U·Lᵀ (matmul_common.wgsl) in the epilogue, read straight from
// storage: r is small next to K (LoRA ranks 1..64 typically), so staging U and L through
// workgroup memory would cost two barriers per 16 steps of r for little reuse.
@compute @workgroup_size(WG_X, WG_Y)
fn matmul_tiled_low_rank(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(local_invocation_id) lid: vec3<u32>,
                         @builtin(local_invocation_index) t: u32) {
    var acc = tile_product(wid.y * 4u * WG_Y, wid.x * 4u * WG_X, lid, t);
    let row0 = (wid.y * WG_Y + lid.y) * 4u;
    let col0 = (wid.x * WG_X + lid.x) * 4u;
    if (row0 >= p.m || col0 >= p.n) { return; }
    let rows = min(4u, p.m - row0);
    let cols = min(4u, p.n - col0);
    for (var i = 0u; i < 4u; i++) { acc[i] *= p.alpha; }
    for (var j = 0u; j < p.rank; j++) {
        let l = low_rank_l4(col0, cols, j);
        for (var i = 0u; i < rows; i++) { acc[i] += low_rank_u(row0 + i, j) * l; }
    }
    store_block(row0, col0, rows, cols, acc, 1.0);
}
