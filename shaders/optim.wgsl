// Global gradient norm, clipping and AdamW over the flat LoRA parameter buffer.
// grad_norm_partial + grad_norm_finalize leave (norm, clip coefficient) on the GPU; adamw reads
// the coefficient from there, so clipping needs no CPU round trip.

const WG: u32 = 256u;
const NPART: u32 = 256u;   // workgroups of the partial pass (fixed so that one group finalizes)

struct Params {
    n: u32,
    max_norm: f32,     // <= 0: no clipping
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,          // lr / (1 - beta1^step), computed in f64 on the host
    bc2_sqrt: f32,           // sqrt(1 - beta2^step)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// partial
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;  // (NPART)
@group(0) @binding(2) var<storage, read> grad: array<f32>;           // (n)

// finalize
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;     // (2): norm, clip coef
@group(0) @binding(2) var<storage, read> fpartial: array<f32>;       // (NPART)

// adamw
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg_sq: array<f32>;
@group(0) @binding(4) var<storage, read> agrad: array<f32>;
@group(0) @binding(5) var<storage, read> anorm: array<f32>;          // (2)

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn grad_norm_partial(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = wid.x * WG + lid; i < p.n; i += NPART * WG) { s += grad[i] * grad[i]; }
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) { red[lid] += red[lid + k]; }
        workgroupBarrier();
    }
    if (lid == 0u) { partial[wid.x] = red[0]; }
}

// torch.nn.utils.clip_grad_norm_: coef = min(1, max_norm / (norm + 1e-6)).
@compute @workgroup_size(256)
fn grad_norm_finalize(@builtin(local_invocation_index) lid: u32) {
    red[lid] = fpartial[lid];
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) { red[lid] += red[lid + k]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let total = sqrt(red[0]);
        norm[0] = total;
        norm[1] = select(1.0, min(1.0, p.max_norm / (total + 1e-6)), p.max_norm > 0.0);
    }
}

// torch.optim.AdamW (single-tensor semantics):
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g;
//   p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) { return; }
    let g = agrad[i] * anorm[1];
    let w = param[i] * (1.0 - p.lr * p.weight_decay);
    let m = exp_avg[i] + (1.0 - p.beta1) * (g - exp_avg[i]);
    let v = p.beta2 * exp_avg_sq[i] + (1.0 - p.beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    param[i] = w - p.step_size * (m / denom);
}
