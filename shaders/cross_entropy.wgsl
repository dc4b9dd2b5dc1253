// Softmax cross-entropy over the vocabulary, in vocabulary chunks so that the (B*T, V) logits
// are never all resident. The LM-head matmul writes one chunk of logits (rows, vc) for
// vocabulary ids [v0, v0+vc); then
//   cross_entropy_stats  folds the chunk into a running (max, sum of exp, target logit) per row,
//   cross_entropy_loss   turns the running state into the per-row loss.
// With the input gradient wanted, the same single sweep also yields it (flash-attention style:
// the LM head is attention with queries x and keys = values = wte; no second sweep recomputes
// the logits):
//   cross_entropy_online folds the chunk into the running state like _stats, overwrites the
//                        chunk with exp(logit - running max), rescales the running
//                        dx accumulator acc (rows, C) to the new max and copies the target's
//                        wte row into wt; the caller then adds chunk · wte_chunk into acc;
//   cross_entropy_dx     dx = grad_scale · (acc / sum of exp - wt) once every chunk is in.
// Row reductions go through wg_* from the prepended reduce_wg.wgsl or reduce_subgroup.wgsl.
// Targets equal to -100 (ignore_index, stored as u32 0xFFFFFF9C) give loss 0 and gradient 0.
// wte may be stored in f16 (two per word, element 2j in the low half): WTE_F16 (online only).

override WTE_F16: bool = false;

const WG: u32 = 64u;
const BIG: f32 = 3.0e38;
const IGNORE: u32 = 0xFFFFFF9Cu;   // -100i as u32

struct Params {
    rows: u32,
    vc: u32,          // chunk width (columns of the logits chunk)
    v0: u32,          // vocabulary id of the chunk's first column
    first: u32,       // 1 = this is the first chunk: start the running state afresh
    grad_scale: f32,  // d(loss)/d(row loss), e.g. 1 / number of trained tokens
    c: u32,           // hidden width (online / dx)
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

// online
@group(0) @binding(1) var<storage, read_write> ostate: array<f32>;  // (rows, 3)
@group(0) @binding(2) var<storage, read_write> ochunk: array<f32>;  // (rows, vc): logits in, exp out
@group(0) @binding(3) var<storage, read> otargets: array<u32>;      // (rows)
@group(0) @binding(4) var<storage, read_write> oacc: array<f32>;    // (rows, C)
@group(0) @binding(5) var<storage, read_write> owt: array<f32>;     // (rows, C): wte[target]
@group(0) @binding(6) var<storage, read> owte: array<u32>;          // (vc, C): this chunk of wte, f32 bits or f16 pairs

// dx
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;     // (rows, C)
@group(0) @binding(2) var<storage, read> dacc: array<f32>;         // (rows, C)
@group(0) @binding(3) var<storage, read> dwt: array<f32>;          // (rows, C)
@group(0) @binding(4) var<storage, read> dstate: array<f32>;       // (rows, 3)
@group(0) @binding(5) var<storage, read> dtargets: array<u32>;     // (rows)

fn owte_at(i: u32) -> f32 {
    if (WTE_F16) {
        let pair = unpack2x16float(owte[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(owte[i]);
}

@compute @workgroup_size(64)
fn cross_entropy_stats(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       ids: Ids) {
    let lid = ids.lid;
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.vc;
    // Local max, then local sum of exp relative to it.
    var m = -BIG;
    for (var j = lid; j < p.vc; j += WG) { m = max(m, logits[base + j]); }
    var s = 0.0;
    for (var j = lid; j < p.vc; j += WG) { s += exp(logits[base + j] - m); }
    let red = wg_max_sumexp(ids, vec2<f32>(m, s));
    if (lid == 0u) {
        let mc = red.x;
        let sc = red.y;
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

// One workgroup per row. The running state and acc are relative to the running max m, so
// that at the end acc = Σ_v exp(logit_v - m) · wte_v and sum = Σ_v exp(logit_v - m).
@compute @workgroup_size(64)
fn cross_entropy_online(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        ids: Ids) {
    let lid = ids.lid;
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }   // uniform per workgroup
    let base = row * p.vc;
    var m_old = -BIG;
    var s_old = 0.0;
    var t_old = 0.0;
    if (p.first == 0u) {
        m_old = ostate[row * 3u];
        s_old = ostate[row * 3u + 1u];
        t_old = ostate[row * 3u + 2u];
    }
    var m = -BIG;
    for (var j = lid; j < p.vc; j += WG) { m = max(m, ochunk[base + j]); }
    let mm = max(m_old, wg_max(ids, m));
    let tgt = otargets[row];
    let hit = tgt != IGNORE && tgt >= p.v0 && tgt < p.v0 + p.vc;
    if (hit) {
        t_old = ochunk[base + tgt - p.v0];
        for (var j = lid; j < p.c; j += WG) { owt[row * p.c + j] = owte_at((tgt - p.v0) * p.c + j); }
    }
    // Every invocation has read the target logit before any overwrites the chunk below.
    workgroupBarrier();
    var s = 0.0;
    for (var j = lid; j < p.vc; j += WG) {
        let e = exp(ochunk[base + j] - mm);
        ochunk[base + j] = e;
        s += e;
    }
    if (p.first == 0u) {
        let rescale = exp(m_old - mm);
        for (var j = lid; j < p.c; j += WG) { oacc[row * p.c + j] *= rescale; }
    }
    let total = wg_sum2(ids, vec2<f32>(s, 0.0)).x;
    if (lid == 0u) {
        ostate[row * 3u] = mm;
        ostate[row * 3u + 1u] = s_old * exp(m_old - mm) + total;
        ostate[row * 3u + 2u] = t_old;
    }
}

// dx = (softmax · wte - wte[target]) · grad_scale, or 0 for ignored rows.
@compute @workgroup_size(64)
fn cross_entropy_dx(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.c) { return; }
    let row = i / p.c;
    if (dtargets[row] == IGNORE) {
        dx[i] = 0.0;
        return;
    }
    dx[i] = (dacc[i] / dstate[row * 3u + 1u] - dwt[i]) * p.grad_scale;
}
