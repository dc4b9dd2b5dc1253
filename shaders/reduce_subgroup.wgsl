// Workgroup reductions for row kernels through subgroup operations: subgroupAdd/subgroupMax
// within each subgroup, then one step through workgroup memory across subgroups (one slot
// per subgroup, read by every invocation). Same functions and Ids as reduce_wg.wgsl.
// Native only: naga rejects `enable subgroups;`, which browsers require, and wgpu's web
// backend exposes no subgroups, so the registry never builds this for wasm32.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
}

var<workgroup> red: array<vec2<f32>, WG>;   // (number of subgroups ≤ WG)

// Publish each subgroup's partial in red[subgroup id]; every invocation then reads all.
fn publish(ids: Ids, part: vec2<f32>) {
    if (ids.sg_lane == 0u) { red[ids.sg_id] = part; }
    workgroupBarrier();
}

// Σ v over the workgroup.
fn wg_sum2(ids: Ids, v: vec2<f32>) -> vec2<f32> {
    publish(ids, subgroupAdd(v));
    var t = vec2<f32>(0.0);
    for (var i = 0u; i < ids.n_sg; i++) { t += red[i]; }
    workgroupBarrier();
    return t;
}

// max v over the workgroup.
fn wg_max(ids: Ids, v: f32) -> f32 {
    publish(ids, vec2<f32>(subgroupMax(v), 0.0));
    var t = red[0].x;
    for (var i = 1u; i < ids.n_sg; i++) { t = max(t, red[i].x); }
    workgroupBarrier();
    return t;
}

// Merge of (max m, Σ exp(· - m)) pairs: (M, Σ s·exp(m - M)) with M the overall max.
fn wg_max_sumexp(ids: Ids, v: vec2<f32>) -> vec2<f32> {
    let m = subgroupMax(v.x);
    publish(ids, vec2<f32>(m, subgroupAdd(v.y * exp(v.x - m))));
    var mm = red[0].x;
    for (var i = 1u; i < ids.n_sg; i++) { mm = max(mm, red[i].x); }
    var s = 0.0;
    for (var i = 0u; i < ids.n_sg; i++) { s += red[i].y * exp(red[i].x - mm); }
    workgroupBarrier();
    return vec2<f32>(mm, s);
}
