//! Softmax cross-entropy with ignore_index = -100 over full logits.

use crate::data::IGNORE_INDEX;

/// loss (N) = logsumexp(logits[n]) - logits[n, target[n]]; 0 for ignored rows.
pub fn cross_entropy_forward(
    loss: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    n: usize,
    v: usize,
) {
    for r in 0..n {
        if targets[r] == IGNORE_INDEX {
            loss[r] = 0.0;
            continue;
        }
        let row = &logits[r * v..(r + 1) * v];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        loss[r] = (lse - row[targets[r] as usize] as f64) as f32;
    }
}

/// dlogits (N,V) = (softmax - onehot) · grad_scale; 0 for ignored rows.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[i32],
    n: usize,
    v: usize,
    grad_scale: f32,
) {
    for r in 0..n {
        let row = &logits[r * v..(r + 1) * v];
        let out = &mut dlogits[r * v..(r + 1) * v];
        if targets[r] == IGNORE_INDEX {
            out.fill(0.0);
            continue;
        }
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        for j in 0..v {
            let p = (row[j] as f64 - max).exp() / sum;
            let hit = if j as i32 == targets[r] { 1.0 } else { 0.0 };
            out[j] = ((p - hit) * grad_scale as f64) as f32;
        }
    }
}
