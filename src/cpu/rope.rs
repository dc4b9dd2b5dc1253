//! Rotary position embedding (transformers' `rotate_half` convention) with q/k/v packing,
//! and the (cos, sin) table the GPU kernel reads.

/// `(positions, hd/2, 2)`: cos and sin of `pos · inv_freq[i]`, the angle rounded to f32 first
/// as transformers computes it (`inv_freq @ position_ids` in f32), then cos / sin rounded
/// from f64.
pub fn cos_sin_table(inv_freq: &[f32], positions: usize) -> Vec<f32> {
    let mut table = Vec::with_capacity(positions * inv_freq.len() * 2);
    for pos in 0..positions {
        for &f in inv_freq {
            let angle = (pos as f32 * f) as f64;
            table.push(angle.cos() as f32);
            table.push(angle.sin() as f32);
        }
    }
    table
}

/// qkv (R, C+2KV) = [rope(q) | rope(k) | v], row r at position pos0 + r % t.
pub fn rope_pack(
    qkv: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    table: &[f32],
    (rows, t, pos0): (usize, usize, usize),
    (nh, nkv, hd): (usize, usize, usize),
) {
    let (c, kv) = (nh * hd, nkv * hd);
    let w = c + 2 * kv;
    for r in 0..rows {
        let pos = pos0 + r % t;
        let out = &mut qkv[r * w..(r + 1) * w];
        rotate(&mut out[..c], &q[r * c..(r + 1) * c], table, pos, hd, 1.0);
        rotate(
            &mut out[c..c + kv],
            &k[r * kv..(r + 1) * kv],
            table,
            pos,
            hd,
            1.0,
        );
        out[c + kv..].copy_from_slice(&v[r * kv..(r + 1) * kv]);
    }
}

/// The backward of [`rope_pack`]: dq, dk rotated back by -angle, dv copied.
pub fn rope_unpack(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dqkv: &[f32],
    table: &[f32],
    (rows, t, pos0): (usize, usize, usize),
    (nh, nkv, hd): (usize, usize, usize),
) {
    let (c, kv) = (nh * hd, nkv * hd);
    let w = c + 2 * kv;
    for r in 0..rows {
        let pos = pos0 + r % t;
        let g = &dqkv[r * w..(r + 1) * w];
        rotate(&mut dq[r * c..(r + 1) * c], &g[..c], table, pos, hd, -1.0);
        rotate(
            &mut dk[r * kv..(r + 1) * kv],
            &g[c..c + kv],
            table,
            pos,
            hd,
            -1.0,
        );
        dv[r * kv..(r + 1) * kv].copy_from_slice(&g[c + kv..]);
    }
}

/// `out = x·cos + rotate_half(x)·sin·dir` for every head of one row (dir -1: the inverse).
fn rotate(out: &mut [f32], x: &[f32], table: &[f32], pos: usize, hd: usize, dir: f64) {
    let half = hd / 2;
    for h in 0..x.len() / hd {
        for i in 0..half {
            let at = (pos * half + i) * 2;
            let (cos, sin) = (table[at] as f64, table[at + 1] as f64 * dir);
            let (a, b) = (x[h * hd + i] as f64, x[h * hd + i + half] as f64);
            out[h * hd + i] = (a * cos - b * sin) as f32;
            out[h * hd + i + half] = (b * cos + a * sin) as f32;
        }
    }
}
