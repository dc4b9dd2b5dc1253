//! What the selftest found for one kernel: how many comparisons it made, the failures, the
//! largest error against its tolerance, and the throughput on GPT-2-sized work.

use crate::gpu::{Gpu, Tensor};

/// Failures kept per kernel (the count of all of them is [`KernelReport::failed_cases`]).
const KEPT_FAILURES: usize = 5;

/// One kernel (variant) checked against its CPU reference.
#[derive(Clone, Debug)]
pub struct KernelReport {
    /// e.g. "matmul tiled 64x64 f32 weights", "gemv nf4 weights low-rank", "layernorm subgroup".
    pub kernel: String,
    /// Comparisons made (one per output tensor of each case).
    pub cases: usize,
    /// The first few failed comparisons, each naming the case, the element, got, want, tol.
    pub failures: Vec<String>,
    /// How many comparisons failed.
    pub failed_cases: usize,
    /// The largest |got − want| over all elements, and the tolerance of that element.
    pub max_err: f32,
    pub tol_at_max: f32,
    /// The largest |got − want| / tol over all elements (1 is the bound; exact comparisons
    /// count 0 when equal).
    pub worst_ratio: f32,
    /// Throughput on the GPT-2-sized cases: (value, "GFLOP/s" or "GB/s").
    pub throughput: Option<(f64, &'static str)>,
    /// Why the kernel was not checked (a feature this adapter lacks); counts as passed.
    pub skipped: Option<String>,
}

impl KernelReport {
    pub fn new(kernel: impl Into<String>) -> Self {
        Self {
            kernel: kernel.into(),
            cases: 0,
            failures: Vec::new(),
            failed_cases: 0,
            max_err: 0.0,
            tol_at_max: 0.0,
            worst_ratio: 0.0,
            throughput: None,
            skipped: None,
        }
    }

    /// A variant this adapter cannot run, e.g. `why` = "this adapter lacks shader-f16".
    pub fn skipped(kernel: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            skipped: Some(why.into()),
            ..Self::new(kernel)
        }
    }

    /// No comparison failed (a skipped kernel passes).
    pub fn passed(&self) -> bool {
        self.failed_cases == 0
    }

    /// One line, e.g. `PASS  matmul tiled 64x64 f32 weights         204 cases  max err 3.1e-6
    /// (tol 2.0e-5, 16% of tol)  12.3 GFLOP/s`; a failure names the first failed comparison.
    pub fn line(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("SKIP  {}: {why}", self.kernel);
        }
        let tp = self
            .throughput
            .map_or(String::new(), |(v, unit)| format!("  {v:.1} {unit}"));
        if self.passed() {
            format!(
                "PASS  {:<50} {:>5} cases  max err {:.1e} (tol {:.1e}, {:.0}% of tol){tp}",
                self.kernel,
                self.cases,
                self.max_err,
                self.tol_at_max,
                100.0 * self.worst_ratio
            )
        } else {
            format!(
                "FAIL  {:<50} {} of {} cases failed, first: {}",
                self.kernel,
                self.failed_cases,
                self.cases,
                self.failures.first().map_or("", String::as_str)
            )
        }
    }

    /// Record a failed comparison.
    pub(super) fn fail(&mut self, why: String) {
        self.cases += 1;
        self.failed(why);
    }

    fn failed(&mut self, why: String) {
        self.failed_cases += 1;
        if self.failures.len() < KEPT_FAILURES {
            self.failures.push(why);
        }
    }

    /// Record a condition of a case that is not an elementwise comparison (a keep rate).
    pub(super) fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.cases += 1;
        if !ok {
            self.failed(why());
        }
    }

    /// Compare elementwise, `|got − want| ≤ tol[i]` (NaN matches NaN only).
    pub(super) fn within(&mut self, case: &str, got: &[f32], want: &[f32], tol: &[f32]) {
        let got = self.perturbed(got);
        self.compare(case, &got, want, |i| tol[i]);
    }

    /// Compare elementwise, `|got − want| ≤ atol + rtol·|want|` (NaN matches NaN only).
    pub(super) fn close(&mut self, case: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
        let got = self.perturbed(got);
        self.compare(case, &got, want, |i| atol + rtol * want[i].abs());
    }

    /// Compare 32-bit words exactly (bit-identical results).
    pub(super) fn bits(&mut self, case: &str, got: &[u32], want: &[u32]) {
        let mut got = got.to_vec();
        if self.broken()
            && let Some(w) = got.first_mut()
        {
            *w ^= 1;
        }
        self.cases += 1;
        if got.len() != want.len() {
            return self.failed(format!("{case}: {} words, want {}", got.len(), want.len()));
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            self.failed(format!(
                "{case}[{i}]: got {:#010x} want {:#010x} (bit-identical wanted)",
                got[i], want[i]
            ));
        }
    }

    fn compare(&mut self, case: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f32) {
        self.cases += 1;
        if got.len() != want.len() {
            return self.failed(format!("{case}: {} values, want {}", got.len(), want.len()));
        }
        // The worst element of this comparison, by err / tol.
        let mut worst: Option<(usize, f32, f32, f32)> = None;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            if g.is_nan() && w.is_nan() {
                continue;
            }
            let t = tol(i);
            let err = if g.is_nan() || w.is_nan() {
                f32::INFINITY
            } else {
                (g - w).abs()
            };
            let ratio = if err == 0.0 {
                0.0
            } else if t > 0.0 {
                err / t
            } else {
                f32::INFINITY
            };
            if err > self.max_err {
                (self.max_err, self.tol_at_max) = (err, t);
            }
            self.worst_ratio = self.worst_ratio.max(ratio);
            if ratio > worst.map_or(0.0, |w| w.1) {
                worst = Some((i, ratio, err, t));
            }
        }
        if let Some((i, ratio, err, t)) = worst
            && ratio > 1.0
        {
            self.failed(format!(
                "{case}[{i}]: got {} want {} (|diff| {err:.3e} > tol {t:.3e})",
                got[i], want[i]
            ));
        }
    }

    /// Test hook (feature `test-hooks`): `WGTUNE_TEST_SELFTEST_BREAK=<substring>` breaks the
    /// kernels whose name holds it, as if the GPU had returned a wrong first element.
    fn broken(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if let Some(s) = crate::hooks::var("SELFTEST_BREAK")
            && !s.is_empty()
            && self.kernel.contains(&s)
        {
            return true;
        }
        false
    }

    /// `got` as the comparison sees it: with 1.0 added to element 0 where [`Self::broken`].
    fn perturbed(&self, got: &[f32]) -> Vec<f32> {
        let mut got = got.to_vec();
        if self.broken()
            && let Some(v) = got.first_mut()
        {
            *v += 1.0;
        }
        got
    }

    /// A tensor's contents; a failed read-back is recorded and reads as NaN.
    pub(super) async fn read(&mut self, gpu: &Gpu, t: &Tensor) -> Vec<f32> {
        match gpu.read_f32(t).await {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!("read-back: {e}"));
                vec![f32::NAN; t.len()]
            }
        }
    }

    /// A tensor's raw words; a failed read-back is recorded and reads as all ones.
    pub(super) async fn read_words(&mut self, gpu: &Gpu, t: &Tensor) -> Vec<u32> {
        match gpu.read_words(t).await {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!("read-back: {e}"));
                vec![u32::MAX; t.len()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_pass_fail_and_skip() {
        let mut r = KernelReport::new("matmul tiled 64x64 f32 weights");
        r.within("2x2", &[1.0, 2.0], &[1.0, 2.5], &[0.1, 1.0]);
        r.close("exact", &[3.0, f32::NAN], &[3.0, f32::NAN], 0.0, 0.0);
        r.throughput = Some((12.34, "GFLOP/s"));
        assert!(r.passed(), "{}", r.line());
        assert_eq!(
            (r.cases, r.max_err, r.tol_at_max, r.worst_ratio),
            (2, 0.5, 1.0, 0.5)
        );
        let line = r.line();
        assert!(
            line.starts_with("PASS  matmul tiled 64x64 f32 weights "),
            "{line}"
        );
        assert!(
            line.contains("2 cases  max err 5.0e-1 (tol 1.0e0, 50% of tol)  12.3 GFLOP/s"),
            "{line}"
        );

        r.close("3", &[1.0, 2.0, f32::NAN], &[1.0, 2.0, 3.0], 1e-6, 0.0);
        r.bits("words", &[1, 2], &[1, 3]);
        assert!(!r.passed());
        assert_eq!((r.cases, r.failed_cases), (4, 2));
        let line = r.line();
        assert!(line.starts_with("FAIL  matmul tiled"), "{line}");
        assert!(line.contains("2 of 4 cases failed, first: "), "{line}");
        assert!(line.contains("3[2]: got NaN want 3"), "{line}");
        assert!(r.failures[1].contains("words[1]"), "{:?}", r.failures);

        let s = KernelReport::skipped("layernorm subgroup", "this adapter lacks subgroups");
        assert!(s.passed());
        assert_eq!(
            s.line(),
            "SKIP  layernorm subgroup: this adapter lacks subgroups"
        );
    }
}
