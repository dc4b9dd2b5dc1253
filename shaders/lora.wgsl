// LoRA dropout, reproducible from a seed: out (+)= x * keep(seed, i) / (1 - p_drop).
// The same call with the same seed gives the same mask, so the backward pass applies it to
// the LoRA input gradient without storing it. The hash is shared with the CPU reference
// (`cpu::lora::dropout_keep`).

struct Params {
    n: u32,
    seed: u32,
    p_drop: f32,
    accumulate: u32,   // 1 = out += result (backward into dx), 0 = out = result
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

// PCG-style integer hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn keep(i: u32) -> bool {
    let h = pcg_hash(i ^ pcg_hash(p.seed));
    // Top 24 bits as a uniform in [0,1): exact in f32, identical on the CPU.
    return f32(h >> 8u) * (1.0 / 16777216.0) >= p.p_drop;
}

@compute @workgroup_size(256)
fn lora_dropout(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    var v = select(0.0, x[i] / (1.0 - p.p_drop), keep(i));
    if (p.accumulate != 0u) { v += out[i]; }
    out[i] = v;
}
