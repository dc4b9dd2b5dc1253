// NF4 quantization on the GPU (fast model loading in the browser), bit-identical to the CPU
// quantizer in src/nf4.rs: one invocation per block of 64 values. Reads a Conv1D weight
// [in,out] (or an already-transposed nn.Linear weight) and writes bitsandbytes' layout:
// codes of the flattened [out,in] matrix, 8 per u32 word (two per byte, first element in
// the high nibble), and one f32 absmax per block.

const BLOCK: u32 = 64u;
const ABSMAX_FLOOR_BITS: u32 = 0x006CE3EEu;   // f32 1e-38, bitsandbytes' absmax floor

struct Params {
    numel: u32,
    k_in: u32,       // rows of the Conv1D weight
    n_out: u32,      // columns of the Conv1D weight
    transpose: u32,  // 1: input is Conv1D [in,out]; 0: input is already [out,in]
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> packed: array<u32>;
@group(0) @binding(2) var<storage, read_write> absmax: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;

// Element i of the flattened [out,in] matrix.
fn value(i: u32) -> f32 {
    if (p.transpose == 0u) { return w[i]; }
    let o = i / p.k_in;
    let k = i % p.k_in;
    return w[k * p.n_out + o];
}

// bitsandbytes' decision tree over midpoints between neighbouring codes (see nf4::encode).
fn encode(x: f32) -> u32 {
    if (x > 0.03979015) {
        if (x > 0.38931254) {
            if (x > 0.6427869) { return select(14u, 15u, x > 0.86147845); }
            return select(12u, 13u, x > 0.50166345);
        }
        if (x > 0.20352125) { return select(10u, 11u, x > 0.29201376); }
        return select(8u, 9u, x > 0.12025525);
    }
    if (x > -0.33967942) {
        if (x > -0.13791174) { return select(6u, 7u, x > -0.045525018); }
        return select(4u, 5u, x > -0.2346074);
    }
    if (x > -0.6106329) { return select(2u, 3u, x > -0.45999527); }
    return select(0u, 1u, x > -0.8480964);
}

@compute @workgroup_size(64)
fn nf4_quantize(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let block = gid.x + gid.y * nwg.x * 64u;
    let start = block * BLOCK;
    if (start >= p.numel) { return; }
    let end = min(start + BLOCK, p.numel);
    var amax = 0.0;
    for (var i = start; i < end; i++) { amax = max(amax, abs(value(i))); }
    // bitsandbytes: full blocks multiply by 1/max(absmax, 1e-38) and store absmax; a partial
    // last block divides by max(absmax, 1e-38) and stores that. An all-zero block is coded 7
    // (zero) explicitly, since GPUs may flush the subnormal 1e-38 to 0. (WGSL lets division be
    // off by 2.5 ulp; lavapipe and desktop drivers round correctly, which the tests check.)
    let full = end - start == BLOCK;
    let zero = amax == 0.0;
    absmax[block] = select(amax, bitcast<f32>(ABSMAX_FLOOR_BITS), zero && !full);
    let inv = 1.0 / amax;
    // A block is 8 whole words; the last block may end inside a word (zero-padded).
    for (var wi = start / 8u; wi < (end + 7u) / 8u; wi++) {
        var word = 0u;
        for (var j = 0u; j < 8u; j++) {
            let i = wi * 8u + j;
            var code = 7u;   // the zero code pads an odd element count, as in bitsandbytes
            if (i < end) {
                let v = value(i);
                if (!zero) { code = encode(clamp(select(v / amax, v * inv, full), -1.0, 1.0)); }
            }
            if (i < end || (i == end && (end & 1u) == 1u)) {
                // byte j/2 of the word; high nibble for even elements
                word |= code << ((j / 2u) * 8u + select(0u, 4u, (j & 1u) == 0u));
            }
        }
        packed[wi] = word;
    }
}
