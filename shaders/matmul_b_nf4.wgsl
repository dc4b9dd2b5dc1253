// B loader for matmul.wgsl: NF4 weights in bitsandbytes layout, dequantized in registers.
// Storage is the nn.Linear weight [out,in] flattened, two 4-bit codes per byte with the first
// element in the high nibble, four bytes per u32 word (little-endian), one f32 absmax per 64
// consecutive elements. The full dequantized matrix is never materialised.
@group(0) @binding(3) var<storage, read> b: array<u32>;
@group(0) @binding(5) var<storage, read> absmax: array<f32>;

var<private> NF4_CODE: array<f32, 16> = array<f32, 16>(
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0);

fn load_b(i: u32) -> f32 {
    let byte = (b[i >> 3u] >> (((i >> 1u) & 3u) * 8u)) & 0xffu;
    let code = select(byte & 0xfu, byte >> 4u, (i & 1u) == 0u);
    return NF4_CODE[code] * absmax[i >> 6u];
}

// Elements i..i+3, i a multiple of 4: one half-word (two bytes, high nibble first) and one
// absmax, since a run of 4 never straddles a 64-block.
fn load_b_run4(i: u32) -> vec4<f32> {
    let half_word = (b[i >> 3u] >> ((i & 4u) * 4u)) & 0xffffu;
    let scale = absmax[i >> 6u];
    return scale * vec4<f32>(
        NF4_CODE[(half_word >> 4u) & 0xfu],
        NF4_CODE[half_word & 0xfu],
        NF4_CODE[half_word >> 12u],
        NF4_CODE[(half_word >> 8u) & 0xfu]);
}
