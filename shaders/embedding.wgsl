// Token + position embedding, forward:  out[b,t,:] = wte[ids[b,t],:] + wpe[pos0 + t,:]
// One invocation per output element; (B*T, C) flattened. `wte` may be bound one slice of
// rows [v0, v0+vn) at a time (the table can exceed one binding): each dispatch writes only
// the rows whose token falls in its slice. wte is f32, or f16 packed two per word (element 2j
// in the low half) when WTE_F16: unpacked with unpack2x16float, so no shader-f16 is needed.

override WTE_F16: bool = false;
// Llama and Qwen2 have no position table (RoPE rotates q and k instead): wpe is then bound
// to any buffer and never read.
override HAS_WPE: bool = true;

struct Params {
    rows: u32,     // B*T
    t: u32,        // tokens per sequence in this call
    c: u32,        // n_embd
    pos0: u32,     // position of the first token (KV-cache generation)
    v0: u32,       // first vocabulary row of the bound wte slice
    vn: u32,       // rows in the slice
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;   // (B,T,C)
@group(0) @binding(2) var<storage, read> ids: array<u32>;         // (B,T)
@group(0) @binding(3) var<storage, read> wte: array<u32>;         // (V,C) f32 bits or f16 pairs
@group(0) @binding(4) var<storage, read> wpe: array<f32>;         // (P,C)

fn wte_at(i: u32) -> f32 {
    if (WTE_F16) {
        let pair = unpack2x16float(wte[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(wte[i]);
}

@compute @workgroup_size(256)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.c) { return; }
    let row = i / p.c;
    let col = i % p.c;
    let tok = ids[row];
    if (tok < p.v0 || tok >= p.v0 + p.vn) { return; }
    let pos = p.pos0 + row % p.t;
    var v = wte_at((tok - p.v0) * p.c + col);
    if (HAS_WPE) { v += wpe[pos * p.c + col]; }
    out[i] = v;
}
