// B loader for matmul.wgsl: f32 weights.
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn load_b(i: u32) -> f32 {
    return b[i];
}

fn load_b_run4(i: u32) -> vec4<f32> {
    return vec4<f32>(b[i], b[i + 1u], b[i + 2u], b[i + 3u]);
}
