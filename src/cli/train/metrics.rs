//! The `--metrics` file: one JSON object per optimizer step. A resumed run continues the
//! file of the run it resumes, so that "the same command plus --resume" leaves one complete
//! history: lines after the checkpoint's step (from a run that went on past it and was killed
//! or diverged) are dropped first.

use std::fs::{File, OpenOptions};
use std::path::Path;

use wgtune::adapter::write_atomic;
use wgtune::err;
use wgtune::error::Result;

/// Open `path` for appending the steps after `resumed_step`, or create it afresh.
pub(super) fn open(path: &Path, resumed_step: Option<u32>) -> Result<File> {
    let p = path.display();
    if let Some(step) = resumed_step
        && path.exists()
    {
        let text = std::fs::read_to_string(path).map_err(|e| err!("{p}: cannot read: {e}"))?;
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step as u64)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(path, kept.as_bytes())?;
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| err!("{p}: cannot open: {e}"));
    }
    File::create(path).map_err(|e| err!("{p}: cannot create: {e}"))
}
