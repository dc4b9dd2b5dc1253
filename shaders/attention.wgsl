// Causal multi-head self-attention, forward and backward, flash-style: one invocation per
// (batch, head, query row) streams over the keys with an online softmax, so the [T,T] score
// matrix is never stored. The forward pass keeps only the per-row log-sum-exp (lse); the
// backward pass recomputes the probabilities from it.
//
// qkv holds each row's queries, keys and values side by side, (B, T, W) with W = C + 2*KV,
// C = nh*hd and KV = nkv*hd: q in [0,C), k in [C,C+KV), v in [C+KV,W). GPT-2's c_attn output
// is the case nkv = nh (W = 3C). Query head h reads key/value head h / (nh/nkv) (grouped-query
// attention); within q, k and v a head owns hd consecutive columns. Keys whose mask is 0 (padding) are skipped; a query with no
// visible key outputs zeros and gets lse = BIG so that its recomputed probabilities are 0.
// For KV-cache generation the queries are positions q0 .. q0+nq-1 of the same buffer, and
// each attends to keys 0 ..= its position.

const MAX_HD: u32 = 128u;
const BIG: f32 = 3.0e38;

struct Params {
    b: u32,
    t: u32,        // rows per sequence in qkv (and in mask)
    c: u32,
    nh: u32,
    hd: u32,
    q0: u32,       // first query position
    nq: u32,       // queries per sequence (rows per sequence of out / dout)
    scale: f32,    // 1/sqrt(hd)
    nkv: u32,      // key/value heads; nh is a multiple of it
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Row width of qkv, and the column of key head g's first key and value.
fn width() -> u32 { return p.c + 2u * p.nkv * p.hd; }
fn k_col(g: u32) -> u32 { return p.c + g * p.hd; }
fn v_col(g: u32) -> u32 { return p.c + (p.nkv + g) * p.hd; }
// The key/value head that query head h reads.
fn kv_head(h: u32) -> u32 { return h / (p.nh / p.nkv); }

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read_write> out: array<f32>;    // (B,nq,C)
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;    // (B,nh,nq)
@group(0) @binding(3) var<storage, read> qkv: array<f32>;          // (B,T,W)
@group(0) @binding(4) var<storage, read> mask: array<u32>;         // (B,T) 1 = token, 0 = pad

// backward, dq pass
@group(0) @binding(1) var<storage, read_write> dqkv: array<f32>;   // (B,T,W)
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;  // (B,nh,T) rowsum(dout*out)
@group(0) @binding(3) var<storage, read> dout: array<f32>;         // (B,T,C)
@group(0) @binding(4) var<storage, read> fout: array<f32>;         // (B,T,C) forward output
@group(0) @binding(5) var<storage, read> bqkv: array<f32>;         // (B,T,W)
@group(0) @binding(6) var<storage, read> blse: array<f32>;         // (B,nh,T)
@group(0) @binding(7) var<storage, read> bmask: array<u32>;        // (B,T)

// backward, dk/dv pass
@group(0) @binding(1) var<storage, read_write> dkv: array<f32>;    // (B,T,W)
@group(0) @binding(2) var<storage, read> kdout: array<f32>;        // (B,T,C)
@group(0) @binding(3) var<storage, read> kqkv: array<f32>;         // (B,T,W)
@group(0) @binding(4) var<storage, read> klse: array<f32>;         // (B,nh,T)
@group(0) @binding(5) var<storage, read> kdelta: array<f32>;       // (B,nh,T)
@group(0) @binding(6) var<storage, read> kmask: array<u32>;        // (B,T)

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);             // ((b*nh + h)*nq + i)
    if (idx >= p.b * p.nh * p.nq) { return; }
    let i = idx % p.nq;
    let h = (idx / p.nq) % p.nh;
    let bb = idx / (p.nq * p.nh);
    let pos = p.q0 + i;
    let w = width();
    let qoff = (bb * p.t + pos) * w + h * p.hd;
    let g = kv_head(h);

    var q: array<f32, MAX_HD>;
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < p.hd; d++) { q[d] = qkv[qoff + d] * p.scale; acc[d] = 0.0; }

    var m = -BIG;
    var l = 0.0;
    for (var j = 0u; j <= pos; j++) {
        if (mask[bb * p.t + j] == 0u) { continue; }
        let koff = (bb * p.t + j) * w + k_col(g);
        var s = 0.0;
        for (var d = 0u; d < p.hd; d++) { s += q[d] * qkv[koff + d]; }
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let e = exp(s - m_new);
        l = l * corr + e;
        let voff = (bb * p.t + j) * w + v_col(g);
        for (var d = 0u; d < p.hd; d++) { acc[d] = acc[d] * corr + e * qkv[voff + d]; }
        m = m_new;
    }

    let ooff = (bb * p.nq + i) * p.c + h * p.hd;
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var d = 0u; d < p.hd; d++) { out[ooff + d] = acc[d] * inv; }
    lse[idx] = select(BIG, m + log(l), l > 0.0);
}

// dq_i = scale * Σ_j p_ij (dp_ij - D_i) k_j,  p_ij = exp(s_ij - lse_i), dp_ij = dout_i·v_j,
// D_i = dout_i·out_i (stored for the dk/dv pass).
@compute @workgroup_size(64)
fn attention_backward_dq(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);             // ((b*nh + h)*T + i)
    if (idx >= p.b * p.nh * p.t) { return; }
    let i = idx % p.t;
    let h = (idx / p.t) % p.nh;
    let bb = idx / (p.t * p.nh);
    let w = width();
    let g_kv = kv_head(h);
    let qoff = (bb * p.t + i) * w + h * p.hd;
    let ooff = (bb * p.t + i) * p.c + h * p.hd;

    var q: array<f32, MAX_HD>;
    var g: array<f32, MAX_HD>;
    var dq: array<f32, MAX_HD>;
    var dd = 0.0;
    for (var d = 0u; d < p.hd; d++) {
        q[d] = bqkv[qoff + d] * p.scale;
        g[d] = dout[ooff + d];
        dq[d] = 0.0;
        dd += g[d] * fout[ooff + d];
    }
    delta[idx] = dd;
    let row_lse = blse[idx];

    for (var j = 0u; j <= i; j++) {
        if (bmask[bb * p.t + j] == 0u) { continue; }
        let koff = (bb * p.t + j) * w + k_col(g_kv);
        let voff = (bb * p.t + j) * w + v_col(g_kv);
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < p.hd; d++) {
            s += q[d] * bqkv[koff + d];
            dp += g[d] * bqkv[voff + d];
        }
        let ds = exp(s - row_lse) * (dp - dd);
        for (var d = 0u; d < p.hd; d++) { dq[d] += ds * bqkv[koff + d]; }
    }
    for (var d = 0u; d < p.hd; d++) { dqkv[qoff + d] = dq[d] * p.scale; }
}

// dv_j = Σ_h Σ_{i>=j} p_ij dout_i,   dk_j = scale * Σ_h Σ_{i>=j} p_ij (dp_ij - D_i) q_i,
// summed over the query heads h of key/value head g (one head when nkv = nh).
@compute @workgroup_size(64)
fn attention_backward_dkv(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);             // ((b*nkv + g)*T + j)
    if (idx >= p.b * p.nkv * p.t) { return; }
    let j = idx % p.t;
    let g = (idx / p.t) % p.nkv;
    let bb = idx / (p.t * p.nkv);
    let w = width();
    let koff = (bb * p.t + j) * w + k_col(g);
    let voff = (bb * p.t + j) * w + v_col(g);
    let group = p.nh / p.nkv;

    var k: array<f32, MAX_HD>;
    var v: array<f32, MAX_HD>;
    var dk: array<f32, MAX_HD>;
    var dv: array<f32, MAX_HD>;
    for (var d = 0u; d < p.hd; d++) {
        k[d] = kqkv[koff + d];
        v[d] = kqkv[voff + d];
        dk[d] = 0.0;
        dv[d] = 0.0;
    }
    if (kmask[bb * p.t + j] != 0u) {
        for (var h = g * group; h < (g + 1u) * group; h++) {
            let row0 = (bb * p.nh + h) * p.t;
            for (var i = j; i < p.t; i++) {
                let qoff = (bb * p.t + i) * w + h * p.hd;
                let ooff = (bb * p.t + i) * p.c + h * p.hd;
                var s = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < p.hd; d++) {
                    s += kqkv[qoff + d] * p.scale * k[d];
                    dp += kdout[ooff + d] * v[d];
                }
                let pr = exp(s - klse[row0 + i]);
                let ds = pr * (dp - kdelta[row0 + i]);
                for (var d = 0u; d < p.hd; d++) {
                    dv[d] += pr * kdout[ooff + d];
                    dk[d] += ds * kqkv[qoff + d];
                }
            }
        }
    }
    for (var d = 0u; d < p.hd; d++) {
        dkv[koff + d] = dk[d] * p.scale;
        dkv[voff + d] = dv[d];
    }
}
