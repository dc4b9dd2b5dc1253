//! Stopping on a non-finite loss or gradient: the message that says where and how to go on.

use std::path::PathBuf;

use wgtune::train::session::StepReport;

use super::TrainArgs;

/// Why training stopped on a non-finite loss or gradient, and how to go on.
pub(super) fn diverged_message(
    r: &StepReport,
    loss: f32,
    grad_norm: f32,
    a: &TrainArgs,
    last_checkpoint: &Option<PathBuf>,
) -> String {
    let what = if loss.is_finite() {
        format!("the gradient norm became {grad_norm}")
    } else {
        format!("the loss became {loss}")
    };
    let next = match last_checkpoint {
        Some(ck) => format!(
            "the last good checkpoint is {}: resume from it with --resume {} and a lower --lr (now {})",
            ck.display(),
            ck.display(),
            a.lr
        ),
        None => format!(
            "nothing was saved (--save-every N keeps checkpoints): retry with a lower --lr (now {})",
            a.lr
        ),
    };
    format!(
        "step {}: {what}, training diverged and stopped; {next}",
        r.step
    )
}

/// Test hook: `WGTUNE_TEST_NAN_AT_STEP=N` reports step N's loss as NaN, so that the tests can
/// check the divergence handling at a chosen step (a real overflow cannot be placed there).
pub(super) fn nan_fault_step() -> Option<u32> {
    std::env::var("WGTUNE_TEST_NAN_AT_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
}
