// Rotary position embedding (RoPE, Llama and Qwen2) fused with packing q, k and v into one
// attention input, and its backward (the inverse rotation) fused with unpacking.
//
// q (R, C), k (R, KV), v (R, KV) are the q_proj/k_proj/v_proj outputs, C = nh*hd,
// KV = nkv*hd; qkv (R, W) with W = C + 2*KV is what attention.wgsl reads. Row r sits at
// position pos0 + r % t. As transformers' rotate_half, each head's columns pair d with
// d + hd/2:  y_d = x_d cos - x_{d+h} sin,  y_{d+h} = x_{d+h} cos + x_d sin  (h = hd/2),
// with (cos, sin) of angle pos * inv_freq[d] from the table, (positions, hd/2) pairs.

const WG: u32 = 256u;

struct Params {
    rows: u32,
    t: u32,        // rows per sequence
    pos0: u32,     // position of each sequence's first row
    nh: u32,
    nkv: u32,
    hd: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;   // (R,W)
@group(0) @binding(2) var<storage, read> q: array<f32>;           // (R,C)
@group(0) @binding(3) var<storage, read> k: array<f32>;           // (R,KV)
@group(0) @binding(4) var<storage, read> v: array<f32>;           // (R,KV)
@group(0) @binding(5) var<storage, read> table: array<f32>;       // (P,hd/2,2) cos, sin

// backward
@group(0) @binding(1) var<storage, read_write> dq: array<f32>;    // (R,C)
@group(0) @binding(2) var<storage, read_write> dk: array<f32>;    // (R,KV)
@group(0) @binding(3) var<storage, read_write> dv: array<f32>;    // (R,KV)
@group(0) @binding(4) var<storage, read> dqkv: array<f32>;        // (R,W)
@group(0) @binding(5) var<storage, read> btable: array<f32>;      // (P,hd/2,2)

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// One element of a rotated row: `x` at column d of its head, `partner` the value it pairs with
// (column d ± hd/2), `sign` -1 when sin multiplies the partner negatively (rotation by +angle
// for the forward; the backward passes the opposite sign: rotation by -angle).
fn rotate(x: f32, partner: f32, cs: vec2<f32>, first_half: bool, dir: f32) -> f32 {
    let s = select(cs.y, -cs.y, first_half) * dir;
    return x * cs.x + partner * s;
}

@compute @workgroup_size(256)
fn rope_pack(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = p.nh * p.hd;
    let kv = p.nkv * p.hd;
    let w = c + 2u * kv;
    let idx = flat(gid, nwg);
    if (idx >= p.rows * w) { return; }
    let r = idx / w;
    let col = idx % w;
    if (col >= c + kv) {                       // v: copied
        qkv[idx] = v[r * kv + col - c - kv];
        return;
    }
    let half = p.hd / 2u;
    let d = col % p.hd;
    let first = d < half;
    let pair = select(col - half, col + half, first);
    let pos = p.pos0 + r % p.t;
    let ti = (pos * half + d % half) * 2u;
    let cs = vec2<f32>(table[ti], table[ti + 1u]);
    if (col < c) {
        qkv[idx] = rotate(q[r * c + col], q[r * c + pair], cs, first, 1.0);
    } else {
        let kc = col - c;
        let kp = pair - c;
        qkv[idx] = rotate(k[r * kv + kc], k[r * kv + kp], cs, first, 1.0);
    }
}

@compute @workgroup_size(256)
fn rope_unpack(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = p.nh * p.hd;
    let kv = p.nkv * p.hd;
    let w = c + 2u * kv;
    let idx = flat(gid, nwg);
    if (idx >= p.rows * w) { return; }
    let r = idx / w;
    let col = idx % w;
    if (col >= c + kv) {
        dv[r * kv + col - c - kv] = dqkv[idx];
        return;
    }
    let half = p.hd / 2u;
    let d = col % p.hd;
    let first = d < half;
    let pair = select(col - half, col + half, first);
    let pos = p.pos0 + r % p.t;
    let ti = (pos * half + d % half) * 2u;
    let cs = vec2<f32>(btable[ti], btable[ti + 1u]);
    let g = rotate(dqkv[idx], dqkv[r * w + pair], cs, first, -1.0);
    if (col < c) {
        dq[r * c + col] = g;
    } else {
        dk[r * kv + col - c] = g;
    }
}
