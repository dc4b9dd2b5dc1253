//! Shared test helpers: the GPU, random data, tolerance checks.
//! (Included by several test crates, each using a subset.)
#![allow(dead_code)]

use std::sync::OnceLock;

use wgtune::gpu::Gpu;

/// The process-wide GPU, or `None` (after printing why) when there is none and CI is not set.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new_blocking() {
        Ok(g) => {
            eprintln!(
                "GPU tests on: {} ({:?})",
                g.adapter_info.name, g.adapter_info.backend
            );
            Some(g)
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("SKIPPING GPU test, {e}");
            None
        }
    })
    .as_ref()
}

/// Get the GPU or return from the test (see [`gpu`]).
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match $crate::common::gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// Small deterministic generator (SplitMix64): tests need no `rand` dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Assert |got - want| <= atol + rtol·|want| elementwise, reporting the worst element.
#[track_caller]
pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        assert!(!g.is_nan() || w.is_nan(), "{name}[{i}]: got NaN, want {w}");
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(
        worst.1 <= 0.0,
        "{name}[{i}]: got {} want {} (|diff| {} > atol {atol} + rtol {rtol})",
        got[i],
        want[i],
        (got[i] - want[i]).abs()
    );
}

/// Assert elementwise |got - want| <= tol[i].
#[track_caller]
pub fn assert_within(name: &str, got: &[f32], want: &[f32], tol: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for i in 0..got.len() {
        assert!(
            (got[i] - want[i]).abs() <= tol[i],
            "{name}[{i}]: got {} want {} (|diff| {} > {})",
            got[i],
            want[i],
            (got[i] - want[i]).abs(),
            tol[i]
        );
    }
}
