// B loader for matmul.wgsl: f32 weights.
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn load_b(i: u32) -> f32 {
    return b[i];
}
