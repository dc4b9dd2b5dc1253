// B loader for matmul.wgsl: f16 weights packed two per u32 word, element 2j in the low half
// (little-endian, as the bytes of a safetensors F16 tensor). Needs no shader-f16 feature.
@group(0) @binding(3) var<storage, read> b: array<u32>;

fn load_b(i: u32) -> f32 {
    let pair = unpack2x16float(b[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}
