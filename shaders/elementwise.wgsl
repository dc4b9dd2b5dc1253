// Elementwise layers: GELU (tanh approximation, HF `gelu_new`) forward/backward, SwiGLU
// (Llama's MLP: silu(gate) * up) forward/backward, and add.
// One invocation per element; 2-D grid for large tensors.

const WG: u32 = 256u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

struct Params {
    n: u32,
    accumulate: u32,   // backward: 1 = dx += result
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// tanh with the argument clamped: some drivers return NaN for tanh of large arguments.
fn safe_tanh(u: f32) -> f32 {
    return tanh(clamp(u, -15.0, 15.0));
}

// out = gelu(a)
@compute @workgroup_size(256)
fn gelu_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let x = a[i];
    let t = safe_tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
    out[i] = 0.5 * x * (1.0 + t);
}

// out (+)= dgelu(a) * b      (a = the GELU input, b = the output gradient)
@compute @workgroup_size(256)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let x = a[i];
    let u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    let t = safe_tanh(u);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
    var g = (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du) * b[i];
    if (p.accumulate != 0u) { g += out[i]; }
    out[i] = g;
}

// out = a + b   (residual connections)
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i] + b[i];
}

// silu(x) = x * sigmoid(x), as torch's F.silu; exp(-x) overflows to inf for x < -88, which
// gives sigmoid 0 (not NaN).
fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// out = silu(a) * b      (a = gate_proj output, b = up_proj output)
@compute @workgroup_size(256)
fn swiglu_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let x = a[i];
    out[i] = x * sigmoid(x) * b[i];
}

// backward: dgate = dout * up * silu'(gate), dup = dout * silu(gate); overwritten.
@group(0) @binding(1) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(2) var<storage, read_write> dup: array<f32>;
@group(0) @binding(3) var<storage, read> gate: array<f32>;
@group(0) @binding(4) var<storage, read> up: array<f32>;
@group(0) @binding(5) var<storage, read> sdout: array<f32>;

@compute @workgroup_size(256)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n) { return; }
    let x = gate[i];
    let s = sigmoid(x);
    let g = sdout[i];
    dgate[i] = g * up[i] * s * (1.0 + x * (1.0 - s));
    dup[i] = g * x * s;
}
