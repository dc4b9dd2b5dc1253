// Softmax cross-entropy over the vocabulary, in vocabulary chunks so that the (B*T, V) logits
// are never all resident. The LM-head matmul writes one chunk of logits (rows, vc) for
// vocabulary ids [v0, v0+vc); then
//   cross_entropy_stats  folds the chunk into a running (max, sum of exp, target logit) per row,
//   cross_entropy_loss   turns the running state into the per-row loss,
//   cross_entropy_grad   (second sweep, chunk recomputed) overwrites the chunk with dlogits.
// Targets equal to -100 (ignore_index, stored as u32 0xFFFFFF9C) give loss 0 and gradient 0.

const WG: u32 = 64u;
const BIG: f32 = 3.0e38;
const IGNORE: u32 = 0xFFFFFF9Cu;   // -100i as u32

struct Params {
    rows: u32,
    vc: u32,          // chunk width (columns of the logits chunk)
    v0: u32,          // vocabulary id of the chunk's first column
    first: u32,       // 1 = this is the first chunk: start the running state afresh
    grad_scale: f32,  // d(loss)/d(row loss), e.g. 1 / number of trained tokens
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// stats
@group(0) @binding(1) var<storage, read_write> state: array<f32>;  // (rows, 3): max, sumexp, target logit
@group(0) @binding(2) var<storage, read> logits: array<f32>;       // (rows, vc)
@group(0) @binding(3) var<storage, read> targets: array<u32>;      // (rows)

// loss
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;   // (rows)
@group(0) @binding(2) var<storage, read> lstate: array<f32>;       // (rows, 3)
@group(0) @binding(3) var<storage, read> ltargets: array<u32>;     // (rows)

// grad
@group(0) @binding(1) var<storage, read_write> glogits: array<f32>; // (rows, vc), in place
@group(0) @binding(2) var<storage, read> gstate: array<f32>;        // (rows, 3)
@group(0) @binding(3) var<storage, read> gtargets: array<u32>;      // (rows)

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

@compute @workgroup_size(64)
fn cross_entropy_stats(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.vc;
    // Local max, then local sum of exp relative to it.
    var m = -BIG;
    for (var j = lid; j < p.vc; j += WG) { m = max(m, logits[base + j]); }
    var s = 0.0;
    for (var j = lid; j < p.vc; j += WG) { s += exp(logits[base + j] - m); }
    red_m[lid] = m;
    red_s[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            let m1 = red_m[lid];
            let m2 = red_m[lid + k];
            let mm = max(m1, m2);
            red_s[lid] = red_s[lid] * exp(m1 - mm) + red_s[lid + k] * exp(m2 - mm);
            red_m[lid] = mm;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let mc = red_m[0];
        let sc = red_s[0];
        var m_old = -BIG;
        var s_old = 0.0;
        var t_old = 0.0;
        if (p.first == 0u) {
            m_old = state[row * 3u];
            s_old = state[row * 3u + 1u];
            t_old = state[row * 3u + 2u];
        }
        let mm = max(m_old, mc);
        state[row * 3u] = mm;
        state[row * 3u + 1u] = s_old * exp(m_old - mm) + sc * exp(mc - mm);
        let tgt = targets[row];
        if (tgt != IGNORE && tgt >= p.v0 && tgt < p.v0 + p.vc) {
            t_old = logits[base + tgt - p.v0];
        }
        state[row * 3u + 2u] = t_old;
    }
}

@compute @workgroup_size(64)
fn cross_entropy_loss(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if (row >= p.rows) { return; }
    if (ltargets[row] == IGNORE) {
        loss[row] = 0.0;
    } else {
        loss[row] = lstate[row * 3u] + log(lstate[row * 3u + 1u]) - lstate[row * 3u + 2u];
    }
}

// dlogits = (softmax - onehot(target)) * grad_scale, or 0 for ignored rows.
@compute @workgroup_size(64)
fn cross_entropy_grad(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.vc) { return; }
    let row = i / p.vc;
    let col = i % p.vc;
    let tgt = gtargets[row];
    if (tgt == IGNORE) {
        glogits[i] = 0.0;
        return;
    }
    let prob = exp(glogits[i] - gstate[row * 3u]) / gstate[row * 3u + 1u];
    let hit = select(0.0, 1.0, tgt == p.v0 + col);
    glogits[i] = (prob - hit) * p.grad_scale;
}
