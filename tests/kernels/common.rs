//! Shared test helpers: the GPU, the selftest families, random data, tolerance checks.
//! (Included by several test crates, each using a subset.)
#![allow(dead_code)]

use wgtune::gpu::{Gpu, Tensor};

/// Whether the tests run in CI: `CI` set to anything but empty, `0` or `false` (in any case),
/// as CI services set it (`true`, `1`, `yes`, ...). In CI a missing GPU adapter or test hook
/// fails the test instead of skipping it. The one rule for Rust tests (the shell scripts have
/// theirs in scripts/ci.sh).
pub fn ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

/// [`ci`]'s rule for a value of `CI` (`None`: not set).
pub fn ci_value(v: Option<&str>) -> bool {
    v.is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// The process-wide GPU, or `None` (after printing why) when there is none and CI is not set.
/// It runs f32 matmul arithmetic whatever the device (see [`pin_f32_math`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> Option<&'static Gpu> {
    use std::sync::OnceLock;
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new_blocking() {
        Ok(mut g) => {
            pin_f32_math(&mut g);
            eprintln!(
                "GPU tests on: {} ({:?})",
                g.adapter_info.name, g.adapter_info.backend
            );
            Some(g)
        }
        Err(e) => {
            if ci() {
                panic!("CI is set but there is no GPU adapter: {e}");
            }
            note(&format!("SKIPPING GPU tests: {e}"));
            None
        }
    })
    .as_ref()
}

/// The shared test GPU keeps f32 arithmetic in the matmul even where the device would pick f16
/// (real GPUs with shader-f16): the comparisons against CPU and PyTorch references use f32
/// bounds. The f16-math variant is tested by calling it explicitly (`Gemm::variant`,
/// tests/kernels/matmul_f16.rs) and, for training, on a GPU of its own (tests/train/run.rs).
fn pin_f32_math(g: &mut Gpu) {
    wgtune::kernels::tuning_mut(g).f16_math = false;
}

/// The page's GPU (WebGPU), opened by the first test and kept for the others. A browser
/// without a WebGPU adapter fails the test: the browser run exists to exercise WebGPU.
#[cfg(target_arch = "wasm32")]
pub async fn gpu() -> &'static Gpu {
    use std::cell::OnceCell;
    // wgpu's web types are neither Send nor Sync: one GPU per (single-threaded) page.
    thread_local! {
        static GPU: OnceCell<&'static Gpu> = const { OnceCell::new() };
    }
    if let Some(g) = GPU.with(|c| c.get().copied()) {
        return g;
    }
    let mut g = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU adapter in this browser: {e}"),
    };
    pin_f32_math(&mut g);
    // wgpu's web backend leaves the adapter's name and driver empty: ask the browser.
    let info = browser_adapter_info().await.as_string().unwrap_or_default();
    wasm_bindgen_test::console_log!(
        "GPU tests on: {info} ({:?})\n{}",
        g.adapter_info.backend,
        wgtune::gpu::describe(&g)
    );
    let g: &'static Gpu = Box::leak(Box::new(g));
    GPU.with(|c| *c.get_or_init(|| g))
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export async function browser_adapter_info() {
    const a = await navigator.gpu?.requestAdapter();
    if (!a) return "no adapter";
    const i = a.info ?? {};
    return `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.trim();
}"#)]
extern "C" {
    /// The browser's own description of its WebGPU adapter (vendor, architecture, ...).
    async fn browser_adapter_info() -> wasm_bindgen::JsValue;
}

/// Get the GPU or return from the (native) test (see [`gpu`]).
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match $crate::common::gpu() {
            Some(g) => g,
            None => {
                $crate::common::note(&format!(
                    "SKIPPED {}: no GPU adapter",
                    $crate::common::test_name()
                ));
                return;
            }
        }
    };
}

/// One GPU test for both targets from one body, `async fn body(gpu: &Gpu)`:
/// `gpu_test!(test_name, body);` emits `test_name` as a native `#[test]` (blocking on the
/// body with pollster, skipped or failed without an adapter as [`gpu_or_skip`] says) and as
/// a `#[wasm_bindgen_test]` for the browser (failed without a WebGPU adapter). The body must
/// be named differently from the test; read results with [`read_f32`] / [`read_words`].
#[macro_export]
macro_rules! gpu_test {
    ($name:ident, $body:path) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            let gpu = $crate::gpu_or_skip!();
            pollster::block_on($body(gpu));
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            $body($crate::common::gpu().await).await;
        }
    };
}

/// Print a line on either target. Natively it goes straight to the process's stderr, past
/// the test harness's capture (which takes only `print!` / `eprint!`), so that a skip shows in
/// every `cargo test` log, not only with `--nocapture`; on wasm32 to the browser console and
/// wasm-bindgen-test's output.
pub fn note(msg: &str) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{msg}");
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// Whether the device has `feature`; when not, says that `what` is skipped and why. For test
/// paths that need an optional feature (e.g. `wgpu::Features::SHADER_F16`, which SwiftShader's
/// WebGPU lacks): `if has_feature(gpu, SHADER_F16, "f16 matmul") { ... }`.
pub fn has_feature(gpu: &Gpu, feature: wgpu::Features, what: &str) -> bool {
    let has = gpu.features.contains(feature);
    if !has {
        let name = match feature {
            wgpu::Features::SHADER_F16 => "shader-f16".to_string(),
            wgpu::Features::SUBGROUP => "subgroups".to_string(),
            wgpu::Features::TIMESTAMP_QUERY => "timestamp-query".to_string(),
            f => format!("{f:?}"),
        };
        // The browser's runner has no test threads, but prints "Invoking test: <name>" first.
        let place = std::thread::current()
            .name()
            .map_or(String::new(), |n| format!(" in {n}"));
        note(&format!(
            "SKIPPED {what}{place}: this {:?} adapter lacks the {name} feature",
            gpu.adapter_info.backend
        ));
    }
    has
}

/// A tensor's contents as f32, on either target.
pub async fn read_f32(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.read_f32(t).await.expect("GPU read-back")
}

/// A tensor's contents as raw 32-bit words, on either target.
pub async fn read_words(gpu: &Gpu, t: &Tensor) -> Vec<u32> {
    gpu.read_words(t).await.expect("GPU read-back")
}

/// The selftest's generator (SplitMix64), for the tests that draw data of their own.
#[allow(unused_imports)]
pub use wgtune::kernels::selftest::Rng;

/// Run one selftest family on `gpu` (odd shapes only, no timing) and assert that every
/// kernel report passed, printing every report's line and each failure.
pub async fn assert_family(gpu: &Gpu, family: wgtune::kernels::selftest::Family) {
    use wgtune::kernels::selftest::{Options, run_family};
    let reports = run_family(gpu, family, &Options::default()).await;
    assert!(!reports.is_empty(), "{family:?}: no kernel ran");
    let mut failed = Vec::new();
    for r in &reports {
        log_line(&r.line());
        if let Some(why) = &r.skipped {
            // As `has_feature` says a skip: past the harness's capture, in every log.
            let place = std::thread::current()
                .name()
                .map_or(String::new(), |n| format!(" in {n}"));
            note(&format!("SKIPPED {}{place}: {why}", r.kernel));
        }
        if !r.passed() {
            failed.push(r.line());
            failed.extend(r.failures.iter().map(|f| format!("    {f}")));
        }
    }
    let n_failed = reports.iter().filter(|r| !r.passed()).count();
    assert!(
        failed.is_empty(),
        "{family:?}: {n_failed} of {} kernels failed:\n{}",
        reports.len(),
        failed.join("\n")
    );
}

/// A line of test output: captured by the harness natively (shown on failure or with
/// `--nocapture`), the browser console on wasm32.
fn log_line(msg: &str) {
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{msg}");
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{msg}");
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
