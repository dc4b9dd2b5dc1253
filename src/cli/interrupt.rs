//! SIGINT / SIGTERM / SIGHUP during training. The first signal asks the training loop to stop
//! after the step in flight and write a resumable checkpoint; a second one exits at once,
//! which is safe because every file is written atomically (the previous adapter and
//! checkpoint stay intact). ctrlc does not say which signal arrived, so both exit with 130.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status after an interruption (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_CODE: i32 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Route the signals to [`requested`]; before this call they end the process as usual.
pub fn install() -> wgtune::error::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without saving (the last checkpoint is intact)");
            std::process::exit(EXIT_CODE);
        }
        eprintln!(
            "interrupted: finishing the current step and saving a checkpoint (interrupt again to quit at once)"
        );
    })
    .map_err(|e| wgtune::err!("cannot install the interrupt handler: {e}"))
}

/// Whether a signal asked training to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
