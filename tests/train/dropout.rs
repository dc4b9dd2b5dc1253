//! LoRA dropout as a distribution. wgtune does not draw torch's masks (its mask is a hash of
//! a seed and the element's index, recomputed in the backward pass), so the masks are checked
//! here statistically: the kernel keeps each element with probability 1 - p and scales a
//! kept one by exactly 1/(1-p), positions are independent, and the seeds of steps,
//! micro-batches and modules give independent masks (never the same one twice). The math
//! around the mask is checked against PEFT with wgtune's own masks supplied to PEFT
//! (`tests/train/parity.rs`, fixtures `tests/fixtures/parity/default_nf4*`).

use std::collections::HashMap;

use crate::common::Rng;
use crate::gpu_or_skip;
use wgtune::cpu::lora::dropout_keep;
use wgtune::kernels::lora::dropout;
use wgtune::model::Module;
use wgtune::model::adapter_ref::dropout_seed;
use wgtune::train::session::step_seed;

/// |observed - expected| of a Bernoulli(q) frequency over `n` draws, in standard deviations.
fn sigmas(count: usize, n: usize, q: f64) -> f64 {
    let f = count as f64 / n as f64;
    (f - q).abs() / (q * (1.0 - q) / n as f64).sqrt()
}

/// On the GPU, over 2^18 elements and several seeds: every output is 0 or x/(1-p) (f32
/// division, 1 ulp), the keep rate is 1-p, and whether element i is kept is independent of
/// element i+lag (lags 1, 2, 3, 64 and 768: neighbours, and the next row of a 64- or
/// 768-wide input), each within 5 standard deviations.
#[test]
fn dropout_kernel_keeps_1_minus_p_and_scales_by_1_over_1_minus_p() {
    let gpu = gpu_or_skip!();
    let n = 1 << 18;
    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..n).map(|_| 1.0 + 0.5 * rng.uniform()).collect();
    let xt = gpu.upload_f32(&x);
    for p in [0.05f32, 0.1, 0.5] {
        for step in [0u32, 1, 977] {
            let seed = dropout_seed(step_seed(42, step), 3, Module::CFc);
            let out = gpu.tensor(n);
            let mut cmd = gpu.commands();
            dropout(&mut cmd, &out, &xt, n, p, seed, false);
            cmd.submit();
            let got = pollster::block_on(gpu.read_f32(&out)).unwrap();
            let keep: Vec<bool> = got.iter().map(|&v| v != 0.0).collect();
            for (i, (&g, &xi)) in got.iter().zip(&x).enumerate() {
                let want = xi / (1.0 - p);
                assert!(
                    g == 0.0 || (g - want).abs() <= want * f32::EPSILON,
                    "p {p}, element {i}: got {g}, want 0 or x/(1-p) = {want} (x = {xi})"
                );
            }
            let kept = keep.iter().filter(|&&k| k).count();
            let q = 1.0 - p as f64;
            let s = sigmas(kept, n, q);
            assert!(
                s < 5.0,
                "p {p}: keep rate {} is {s:.1} sigma from {q}",
                kept as f64 / n as f64
            );
            for lag in [1usize, 2, 3, 64, 768] {
                let both = (0..n - lag).filter(|&i| keep[i] && keep[i + lag]).count();
                let s = sigmas(both, n - lag, q * q);
                assert!(
                    s < 5.0,
                    "p {p}, lag {lag}: both kept in {} of pairs, {s:.1} sigma from (1-p)^2 = {}",
                    both as f64 / (n - lag) as f64,
                    q * q
                );
            }
        }
    }
}

/// The masks a run draws (default seed 42, GPT-2 small's 12 blocks, every module adapted,
/// two micro-batches a step, 300 steps): (step, micro-batch, layer, module) seeds coincide
/// no more often than 32-bit random seeds would (at most 2, about 0.1 expected), and masks of the same module in consecutive steps, of different modules in the
/// same step and of the two micro-batches of a step agree no more than independent masks
/// do (both-kept rate (1-p)^2 within 5 sigma over all such pairs). The kernel draws the
/// CPU reference's masks (`tests/kernels/lora.rs`).
#[test]
fn dropout_masks_are_independent_across_steps_micro_batches_and_modules() {
    let (steps, micro, layers) = (300u32, 2u32, 12usize);
    let mut owner: HashMap<u32, (u32, u32, usize, Module)> = HashMap::new();
    let seed_of =
        |s: u32, i: u32, l: usize, m: Module| dropout_seed(step_seed(42, s).wrapping_add(i), l, m);
    let mut shared = Vec::new();
    for s in 0..steps {
        for i in 0..micro {
            for l in 0..layers {
                for m in Module::GPT2 {
                    let seed = seed_of(s, i, l, m);
                    if let Some(first) = owner.insert(seed, (s, i, l, m)) {
                        shared.push(((s, i, l, m), first));
                    }
                }
            }
        }
    }
    // 28,800 seeds of 32 bits: about 0.1 coincidences expected by chance.
    assert!(
        shared.len() <= 2,
        "{} of {} (step, micro-batch, layer, module) masks are copies of another's, e.g. {:?} = {:?}",
        shared.len(),
        owner.len() + shared.len(),
        shared[0].0,
        shared[0].1
    );
    let (p, n) = (0.05f32, 4096u32);
    let q = 1.0 - p as f64;
    let mask = |seed: u32| -> Vec<bool> { (0..n).map(|i| dropout_keep(i, seed, p)).collect() };
    let mut kinds: [(&str, usize, usize); 3] = [
        ("consecutive steps", 0, 0),
        ("modules of a step", 0, 0),
        ("micro-batches", 0, 0),
    ];
    for s in 0..40 {
        for l in [0, 5, 11] {
            for m in Module::GPT2 {
                let here = mask(seed_of(s, 0, l, m));
                let next_m = Module::GPT2[(m as usize + 1) % 4];
                let others = [
                    mask(seed_of(s + 1, 0, l, m)),
                    mask(seed_of(s, 0, (l + 1) % layers, next_m)),
                    mask(seed_of(s, 1, l, m)),
                ];
                for (k, other) in others.iter().enumerate() {
                    kinds[k].1 += here.iter().zip(other).filter(|(a, b)| **a && **b).count();
                    kinds[k].2 += n as usize;
                }
            }
        }
    }
    for (what, both, total) in kinds {
        let s = sigmas(both, total, q * q);
        assert!(
            s < 5.0,
            "{what}: both kept in {} of positions, {s:.1} sigma from (1-p)^2 = {}",
            both as f64 / total as f64,
            q * q
        );
    }
}
