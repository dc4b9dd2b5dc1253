//! The singular values of a LoRA update `ΔW = s·B·A` without forming the dense `(out, in)`
//! matrix: with `B = Q_B·R_B` and `Aᵀ = Q_A·R_A` (thin QR), `ΔW = Q_B·(s·R_B·R_Aᵀ)·Q_Aᵀ`, and
//! since `Q_B` and `Q_A` have orthonormal columns, `ΔW` has the singular values of the small
//! `(r, r)` core `s·R_B·R_Aᵀ`. The cost is O((in + out)·r²), not O(in·out·r).
//!
//! Householder QR and one-sided (Hestenes) Jacobi SVD, in f64: a few dozen lines each, and
//! accurate for small singular values too (a Gram-matrix eigen-solve would square them).

/// The `R` factor of a thin QR of the row-major `(m, n)` matrix `a`: `(min(m, n), n)`,
/// upper triangular, row-major. Householder reflections, so it stays accurate however
/// badly conditioned `a` is.
pub fn qr_r(mut a: Vec<f64>, m: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * n);
    let p = m.min(n);
    let mut v = vec![0.0; m];
    for k in 0..p {
        // The reflection that zeroes column k below the diagonal.
        let norm = (k..m).map(|i| a[i * n + k].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if a[k * n + k] > 0.0 { -norm } else { norm };
        for i in k..m {
            v[i] = a[i * n + k];
        }
        v[k] -= alpha;
        let vv: f64 = (k..m).map(|i| v[i] * v[i]).sum();
        if vv == 0.0 {
            continue;
        }
        for j in k..n {
            let dot: f64 = (k..m).map(|i| v[i] * a[i * n + j]).sum();
            let f = 2.0 * dot / vv;
            for i in k..m {
                a[i * n + j] -= f * v[i];
            }
        }
    }
    let mut r = vec![0.0; p * n];
    for i in 0..p {
        for j in i..n {
            r[i * n + j] = a[i * n + j];
        }
    }
    r
}

/// The singular values of the row-major `(m, n)` matrix `a`, largest first (`min(m, n)` of
/// them). One-sided Jacobi: rotate pairs of columns until all are orthogonal; the column
/// norms are then the singular values.
pub fn singular_values(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * n);
    // Work on columns of the taller orientation, so there are min(m, n) of them.
    let (rows, cols, col) = if m >= n {
        (
            m,
            n,
            (0..n)
                .map(|j| (0..m).map(|i| a[i * n + j]).collect())
                .collect::<Vec<Vec<f64>>>(),
        )
    } else {
        (
            n,
            m,
            (0..m).map(|i| a[i * n..(i + 1) * n].to_vec()).collect(),
        )
    };
    let mut col = col;
    debug_assert!(col.iter().all(|c| c.len() == rows));
    const EPS: f64 = 1e-15;
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..cols {
            for q in p + 1..cols {
                let (alpha, beta, gamma) = col[p]
                    .iter()
                    .zip(&col[q])
                    .fold((0.0, 0.0, 0.0), |(a, b, g), (x, y)| {
                        (a + x * x, b + y * y, g + x * y)
                    });
                if gamma.abs() <= EPS * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let sign = if zeta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (lo, hi) = col.split_at_mut(q);
                for (x, y) in lo[p].iter_mut().zip(hi[0].iter_mut()) {
                    let (xp, yq) = (*x, *y);
                    *x = c * xp - s * yq;
                    *y = s * xp + c * yq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sv: Vec<f64> = col
        .iter()
        .map(|c| c.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    sv
}

/// The singular values of `scale·B·A` for `A (r, k_in)` and `B (n_out, r)` (row-major, as
/// PEFT stores lora_A and lora_B), largest first: `min(r, k_in, n_out)` of them.
pub fn low_rank_singular_values(
    a: &[f32],
    b: &[f32],
    r: usize,
    k_in: usize,
    n_out: usize,
    scale: f64,
) -> Vec<f64> {
    debug_assert_eq!(a.len(), r * k_in);
    debug_assert_eq!(b.len(), n_out * r);
    // Aᵀ (k_in, r) and B (n_out, r), each reduced to its R factor.
    let at: Vec<f64> = (0..k_in)
        .flat_map(|i| (0..r).map(move |j| a[j * k_in + i] as f64))
        .collect();
    let bb: Vec<f64> = b.iter().map(|&x| x as f64).collect();
    let (pa, pb) = (k_in.min(r), n_out.min(r));
    let ra = qr_r(at, k_in, r); // (pa, r)
    let rb = qr_r(bb, n_out, r); // (pb, r)
    // core (pb, pa) = scale · R_B · R_Aᵀ
    let mut core = vec![0.0; pb * pa];
    for i in 0..pb {
        for j in 0..pa {
            let dot: f64 = (0..r).map(|k| rb[i * r + k] * ra[j * r + k]).sum();
            core[i * pa + j] = scale * dot;
        }
    }
    singular_values(&core, pb, pa)
}

/// The entropy-based effective rank (Roy & Vetterli, 2007): `exp(H(p))` with
/// `p_i = σ_i / Σσ`. 1 for a rank-one update, r for r equal singular values, 0 for ΔW = 0.
pub fn effective_rank(sv: &[f64]) -> f64 {
    let total: f64 = sv.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let h: f64 = sv
        .iter()
        .map(|&s| s / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    h.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random f32 in [-1, 1).
    fn rand(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Dense ΔW = scale·B·A, then its singular values by the same Jacobi on the big matrix:
    /// the QR shortcut must not change them.
    fn dense(a: &[f32], b: &[f32], r: usize, k: usize, n: usize, scale: f64) -> Vec<f64> {
        let mut d = vec![0.0; n * k];
        for i in 0..n {
            for j in 0..k {
                d[i * k + j] = scale
                    * (0..r)
                        .map(|t| b[i * r + t] as f64 * a[t * k + j] as f64)
                        .sum::<f64>();
            }
        }
        singular_values(&d, n, k)
    }

    #[test]
    fn qr_shortcut_gives_the_dense_singular_values_on_odd_shapes() {
        let mut seed = 7;
        for &(r, k, n) in &[
            (1, 1, 1),
            (4, 5, 3),
            (3, 2, 7),
            (8, 17, 33),
            (5, 40, 4),
            (16, 24, 72),
        ] {
            let a: Vec<f32> = (0..r * k).map(|_| rand(&mut seed)).collect();
            let b: Vec<f32> = (0..n * r).map(|_| rand(&mut seed)).collect();
            let fast = low_rank_singular_values(&a, &b, r, k, n, 0.7);
            let slow = dense(&a, &b, r, k, n, 0.7);
            assert_eq!(fast.len(), r.min(k).min(n));
            for (i, f) in fast.iter().enumerate() {
                assert!(
                    (f - slow[i]).abs() <= 1e-10 * slow[0].max(1e-300),
                    "{r}x{k}x{n} σ{i}: {f} vs {}",
                    slow[i]
                );
            }
            // Beyond the rank the dense matrix has only rounding noise.
            assert!(slow[fast.len()..].iter().all(|s| *s <= 1e-10 * slow[0]));
        }
    }

    #[test]
    fn known_singular_values() {
        // diag(3, 2) rotated: singular values stay 3 and 2.
        let (c, s) = (0.6f64, 0.8f64);
        let m = [3.0 * c, -2.0 * s, 3.0 * s, 2.0 * c];
        let sv = singular_values(&m, 2, 2);
        assert!(
            (sv[0] - 3.0).abs() < 1e-12 && (sv[1] - 2.0).abs() < 1e-12,
            "{sv:?}"
        );
        // B = 0 (PEFT's initialisation): ΔW = 0.
        let sv = low_rank_singular_values(&[1.0; 8], &[0.0; 12], 2, 4, 6, 2.0);
        assert_eq!(sv, vec![0.0, 0.0]);
        assert_eq!(effective_rank(&sv), 0.0);
        assert!((effective_rank(&[2.0, 2.0, 2.0, 2.0]) - 4.0).abs() < 1e-12);
        assert!((effective_rank(&[5.0, 0.0]) - 1.0).abs() < 1e-12);
    }
}
