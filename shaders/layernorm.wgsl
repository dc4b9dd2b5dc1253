// LayerNorm over the last dimension, forward and backward to the input (the LayerNorm weights
// are frozen in LoRA training, so their gradients are not computed).
// One workgroup of 64 invocations per row; two-pass mean/variance like torch. The row sums
// go through wg_sum2 from the prepended reduce_wg.wgsl or reduce_subgroup.wgsl.

const WG: u32 = 64u;

struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    accumulate: u32,   // backward: 1 = dx += result, 0 = dx = result
}

@group(0) @binding(0) var<uniform> p: Params;

// forward bindings
@group(0) @binding(1) var<storage, read_write> out: array<f32>;    // (N,C)
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;   // (N)
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;   // (N)
@group(0) @binding(4) var<storage, read> x: array<f32>;            // (N,C)
@group(0) @binding(5) var<storage, read> weight: array<f32>;       // (C)
@group(0) @binding(6) var<storage, read> bias: array<f32>;         // (C)

// backward bindings
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;     // (N,C)
@group(0) @binding(2) var<storage, read> dout: array<f32>;         // (N,C)
@group(0) @binding(3) var<storage, read> bx: array<f32>;           // (N,C)
@group(0) @binding(4) var<storage, read> bweight: array<f32>;      // (C)
@group(0) @binding(5) var<storage, read> bmean: array<f32>;        // (N)
@group(0) @binding(6) var<storage, read> brstd: array<f32>;        // (N)

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(64)
fn layernorm_forward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     ids: Ids) {
    let lid = ids.lid;
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }   // uniform per workgroup
    let base = row * p.c;
    var s = 0.0;
    for (var i = lid; i < p.c; i += WG) { s += x[base + i]; }
    let m = wg_sum2(ids, vec2<f32>(s, 0.0)).x / f32(p.c);
    var v = 0.0;
    for (var i = lid; i < p.c; i += WG) { let d = x[base + i] - m; v += d * d; }
    let r = inverseSqrt(wg_sum2(ids, vec2<f32>(v, 0.0)).x / f32(p.c) + p.eps);
    for (var i = lid; i < p.c; i += WG) {
        out[base + i] = (x[base + i] - m) * r * weight[i] + bias[i];
    }
    if (lid == 0u) { mean[row] = m; rstd[row] = r; }
}

// dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)),  dnorm = dout * weight
@compute @workgroup_size(64)
fn layernorm_backward(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      ids: Ids) {
    let lid = ids.lid;
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.c;
    let m = bmean[row];
    let r = brstd[row];
    var s1 = 0.0;
    var s2 = 0.0;
    for (var i = lid; i < p.c; i += WG) {
        let norm = (bx[base + i] - m) * r;
        let dnorm = dout[base + i] * bweight[i];
        s1 += dnorm;
        s2 += dnorm * norm;
    }
    let sums = wg_sum2(ids, vec2<f32>(s1, s2)) / f32(p.c);
    for (var i = lid; i < p.c; i += WG) {
        let norm = (bx[base + i] - m) * r;
        let dnorm = dout[base + i] * bweight[i];
        var g = r * (dnorm - sums.x - norm * sums.y);
        if (p.accumulate != 0u) { g += dx[base + i]; }
        dx[base + i] = g;
    }
}

// RMSNorm (Llama, Qwen2): out = x * rstd * weight, rstd = 1/sqrt(mean(x²) + eps), as
// transformers' LlamaRMSNorm in f32. It reuses LayerNorm's bindings: out 1, rstd 3, x 4,
// weight 5 (no mean, no bias).
@compute @workgroup_size(64)
fn rmsnorm_forward(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   ids: Ids) {
    let lid = ids.lid;
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.c;
    var s = 0.0;
    for (var i = lid; i < p.c; i += WG) { let v = x[base + i]; s += v * v; }
    let r = inverseSqrt(wg_sum2(ids, vec2<f32>(s, 0.0)).x / f32(p.c) + p.eps);
    for (var i = lid; i < p.c; i += WG) {
        out[base + i] = x[base + i] * r * weight[i];
    }
    if (lid == 0u) { rstd[row] = r; }
}

// dx = rstd * (dnorm - norm * mean(dnorm * norm)),  norm = x * rstd, dnorm = dout * weight.
// Bindings as layernorm_backward's: dx 1, dout 2, x 3, weight 4, rstd 6.
@compute @workgroup_size(64)
fn rmsnorm_backward(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    ids: Ids) {
    let lid = ids.lid;
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.c;
    let r = brstd[row];
    var s = 0.0;
    for (var i = lid; i < p.c; i += WG) {
        s += dout[base + i] * bweight[i] * bx[base + i] * r;
    }
    let mean_dn = wg_sum2(ids, vec2<f32>(s, 0.0)).x / f32(p.c);
    for (var i = lid; i < p.c; i += WG) {
        let norm = bx[base + i] * r;
        var g = r * (dout[base + i] * bweight[i] - norm * mean_dn);
        if (p.accumulate != 0u) { g += dx[base + i]; }
        dx[base + i] = g;
    }
}
