enable f16;
// Block arithmetic for matmul.wgsl in f16 (compiled only where the device has shader-f16).
// The decoded 4×4 block of B is converted to f16 once per K step and shared by up to eight A
// rows; each row's four A values are divided by their largest magnitude s before conversion,
// so they lie in [-1, 1]: activations beyond f16's range (65504) and gradients below its
// normal range (6e-5) keep 11 significant bits instead of overflowing or flushing. The four
// products are summed in f16 and the sum, times s, joins the f32 accumulator: rounding error
// stays per K step (a few units of 2^-11 relative to Σ|a·b| over 4 terms) and never grows
// with K, as it would if the whole sum were kept in f16.
alias BlockB = mat4x4<f16>;

fn prep_b(m: mat4x4<f32>) -> BlockB {
    return mat4x4<f16>(m);
}

fn block_times(m: BlockB, v: vec4<f32>) -> vec4<f32> {
    let a = abs(v);
    let s = max(max(a.x, a.y), max(a.z, a.w));
    if (s == 0.0) { return vec4<f32>(0.0); }
    return vec4<f32>(m * vec4<f16>(v * (1.0 / s))) * s;
}
