//! GPU faults as one-line errors. wgpu's default reaction to an error nobody captured is a
//! panic, and a lost device fails every later call: instead the first fault (out of memory,
//! validation, device lost) is recorded here and returned by the next read-back or check.

use std::sync::{Arc, Mutex};

use super::GpuError;

/// The first GPU fault of a device, shared with wgpu's callbacks.
#[derive(Default)]
pub struct FaultLog(Mutex<Option<GpuError>>);

impl FaultLog {
    /// Route `device`'s uncaptured errors and loss into a new log.
    pub fn install(device: &wgpu::Device) -> Arc<Self> {
        let log = Arc::new(Self::default());
        let on_error = log.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| on_error.on_error(&e)));
        let on_lost = log.clone();
        device.set_device_lost_callback(move |reason, message| on_lost.on_lost(reason, &message));
        log
    }

    /// What wgpu's uncaptured-error callback does: out of memory keeps its kind, anything
    /// else is a fault.
    fn on_error(&self, e: &wgpu::Error) {
        self.record(match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(one_line(e)),
            _ => GpuError::Fault(one_line(e)),
        });
    }

    /// What wgpu's device-lost callback does.
    fn on_lost(&self, reason: wgpu::DeviceLostReason, message: &str) {
        // Destroyed: our own drop of the device at exit, not a fault.
        if reason != wgpu::DeviceLostReason::Destroyed {
            self.record(GpuError::Lost(message.lines().next().unwrap_or("").into()));
        }
    }

    /// Test hook (feature `test-hooks`): a fault of `kind` (`oom`, `lost`) as the driver would
    /// report it, through the same callbacks as a real one, so that what the user reads is
    /// what a real out-of-memory or device loss gives.
    #[cfg(feature = "test-hooks")]
    pub fn inject(&self, kind: &str) {
        const WHY: &str = "injected by WGTUNE_TEST_GPU_FAULT";
        match kind {
            "oom" => self.on_error(&wgpu::Error::OutOfMemory { source: WHY.into() }),
            "lost" => self.on_lost(
                wgpu::DeviceLostReason::Unknown,
                &format!("{WHY}\nsecond line of the driver's message"),
            ),
            other => panic!("WGTUNE_TEST_GPU_FAULT: unknown fault {other:?} (oom or lost)"),
        }
    }

    /// Keep the first fault: later ones are usually its consequences.
    pub fn record(&self, fault: GpuError) {
        log::debug!("{fault}");
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(fault);
        }
    }

    /// The first fault so far, if any (it stays recorded: the device is not usable after it).
    pub fn first(&self) -> Option<GpuError> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(GpuError::clone)
    }
}

/// wgpu's messages span several lines (a header, then "Caused by:" and the error chain);
/// the user gets them joined into one.
fn one_line(e: &wgpu::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect();
    if parts.is_empty() {
        "unknown error".into()
    } else {
        parts.join(": ")
    }
}
