//! The GPU's own checks in the page: "Check this GPU" (the selftest: every kernel against its
//! CPU reference on this GPU, as `wgtune selftest --quick` does natively), and the
//! autotuner's choices kept in browser storage, so that a reload or a resumed run takes them
//! instead of timing afresh.

use wgtune::gpu::Gpu;
use wgtune::kernels::autotune;
use wgtune::kernels::selftest::{self, Family, Options};

use super::browser::{now_ms, yield_now};
use super::engine;
use super::port::{Event, emit};
use super::store;

/// The kernel choices in use, for the GPU line.
fn kernels_line(gpu: &Gpu) -> String {
    wgtune::kernels::state(gpu).tuned.lock().unwrap().summary()
}

/// Take the choices an earlier visit kept (refused when they were made on another adapter,
/// driver or wgtune), and show the choices in use.
pub async fn restore_kernels(gpu: &Gpu) {
    if autotune::enabled(gpu)
        && let Some(text) = store::kept_kernels().await
    {
        let loaded = wgtune::kernels::state(gpu)
            .tuned
            .lock()
            .unwrap()
            .load_json(gpu, &text);
        if let Err(e) = loaded {
            super::port::console_error(&format!("kept kernel choices ignored: {e}"));
        }
    }
    emit(Event::Kernels(kernels_line(gpu)));
}

/// Keep the choices in use (after the autotuner made some) and show them.
pub async fn keep_kernels(gpu: &Gpu) {
    let json = wgtune::kernels::state(gpu)
        .tuned
        .lock()
        .unwrap()
        .to_json(gpu);
    // A full browser storage only costs timing again next visit.
    if let Err(e) = store::keep_kernels(&json).await {
        super::port::console_error(&format!("kernel choices not kept: {e}"));
    }
    emit(Event::Kernels(kernels_line(gpu)));
}

/// "Check this GPU": each kernel family in turn (the page shows the lines as they come). Its
/// odd shapes are not tuned (`autotune::forget_pending`): the next run tunes its own.
pub async fn check_gpu() {
    let gpu = match engine::gpu().await {
        Ok(g) => g,
        Err(e) => return finish(format!("no GPU to check: {e}"), Vec::new(), false),
    };
    let opts = Options::default();
    let (mut lines, mut failed) = (Vec::new(), 0);
    let t0 = now_ms();
    for family in Family::ALL {
        emit(Event::SelfTest {
            summary: format!("checking {family:?}…"),
            lines: lines.clone(),
            done: false,
            passed: false,
        });
        for r in selftest::run_family(&gpu, family, &opts).await {
            failed += usize::from(!r.passed());
            lines.push(r.line());
        }
        yield_now(0).await;
    }
    if let Err(e) = gpu.check_healthy() {
        return finish(
            format!("the GPU failed during the check: {e}"),
            lines,
            false,
        );
    }
    let total = lines.len();
    let summary = if failed > 0 {
        format!("{failed} of {total} kernels FAILED on this GPU")
    } else {
        format!(
            "{total} kernels passed on this GPU ({:.1} s)",
            (now_ms() - t0) / 1e3
        )
    };
    autotune::forget_pending(&gpu);
    finish(summary, lines, failed == 0);
}

fn finish(summary: String, lines: Vec<String>, passed: bool) {
    emit(Event::SelfTest {
        summary,
        lines,
        done: true,
        passed,
    });
}
