//! Token + position embedding.

/// out (B,T,C) = wte[ids[b,t]] + wpe[pos0 + t]
pub fn embedding_forward(
    out: &mut [f32],
    ids: &[u32],
    wte: &[f32],
    wpe: &[f32],
    b: usize,
    t: usize,
    c: usize,
    pos0: usize,
) {
    for bt in 0..b * t {
        let tok = ids[bt] as usize;
        let pos = pos0 + bt % t;
        for i in 0..c {
            out[bt * c + i] = wte[tok * c + i] + wpe[pos * c + i];
        }
    }
}

/// `x` rounded to f16 and back: what an f16-stored table (wte when the base weights are NF4 or
/// f16) holds, so that the f32 references above also serve the f16-table kernels.
pub fn f16_rounded(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}
