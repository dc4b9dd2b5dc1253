// Workgroup reductions for row kernels (one workgroup of WG invocations per row), through
// workgroup memory: the fallback for devices without subgroups, and the only one on the web.
// The registry prepends this file or reduce_subgroup.wgsl (same functions, same Ids) to
// layernorm.wgsl and cross_entropy.wgsl, which define WG. Entry points take `ids: Ids` (the
// per-invocation builtins only: Tint's uniformity analysis treats a struct parameter as one
// value, so workgroup_id and num_workgroups stay separate parameters and rows stay uniform).
// Every invocation gets the result; each call ends with a barrier so that the next may reuse
// the scratch array.

struct Ids {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> red: array<vec2<f32>, WG>;

// Tree over red; `op` 0 adds, 1 takes the max of .x, 2 merges (max, sum of exp relative to it).
fn tree(ids: Ids, v: vec2<f32>, op: u32) -> vec2<f32> {
    red[ids.lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (ids.lid < s) {
            let x = red[ids.lid];
            let y = red[ids.lid + s];
            if (op == 0u) {
                red[ids.lid] = x + y;
            } else if (op == 1u) {
                red[ids.lid] = vec2<f32>(max(x.x, y.x), 0.0);
            } else {
                let m = max(x.x, y.x);
                red[ids.lid] = vec2<f32>(m, x.y * exp(x.x - m) + y.y * exp(y.x - m));
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Σ v over the workgroup.
fn wg_sum2(ids: Ids, v: vec2<f32>) -> vec2<f32> {
    return tree(ids, v, 0u);
}

// max v over the workgroup.
fn wg_max(ids: Ids, v: f32) -> f32 {
    return tree(ids, vec2<f32>(v, 0.0), 1u).x;
}

// Merge of (max m, Σ exp(· - m)) pairs: (M, Σ s·exp(m - M)) with M the overall max.
fn wg_max_sumexp(ids: Ids, v: vec2<f32>) -> vec2<f32> {
    return tree(ids, v, 2u);
}
