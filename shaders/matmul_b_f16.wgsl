// B loader for matmul.wgsl: f16 weights packed two per u32 word, element 2j in the low half
// (little-endian, as the bytes of a safetensors F16 tensor). Needs no shader-f16 feature.
@group(0) @binding(3) var<storage, read> b: array<u32>;

fn load_b(i: u32) -> f32 {
    let pair = unpack2x16float(b[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Elements i..i+3, i a multiple of 4: two whole words.
fn load_b_run4(i: u32) -> vec4<f32> {
    let w = i >> 1u;
    return vec4<f32>(unpack2x16float(b[w]), unpack2x16float(b[w + 1u]));
}
