// Block arithmetic for matmul.wgsl: f32 throughout.
alias BlockB = mat4x4<f32>;

fn prep_b(m: mat4x4<f32>) -> BlockB {
    return m;
}

// Σ_r m[r] · v[r]: four K steps of one A row against a 4×4 block of B.
fn block_times(m: BlockB, v: vec4<f32>) -> vec4<f32> {
    return m * v;
}
