//! What can go wrong on the GPU side, as one-line messages. They say what happened, never
//! what to change: the front ends add advice in their own terms (flags, settings) from
//! [`crate::error::Kind`].

use crate::error::{Error, Kind};

/// What can go wrong on the GPU side, as one-line messages for the user.
#[derive(Clone, Debug)]
pub enum GpuError {
    NoAdapter(String),
    Device(String),
    Readback(String),
    TooLarge(String),
    /// The driver could not allocate memory.
    OutOfMemory(String),
    /// The device stopped working (driver reset, GPU removed, a step that ran too long).
    Lost(String),
    /// Any other error wgpu reported on the device (a bug in wgtune if it happens).
    Fault(String),
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::NoAdapter(s) => write!(f, "no GPU: {s}"),
            GpuError::Device(s) => write!(f, "could not open the GPU device: {s}"),
            GpuError::Readback(s) => write!(f, "reading back from the GPU failed: {s}"),
            GpuError::TooLarge(s) => write!(f, "tensor too large for this GPU: {s}"),
            GpuError::OutOfMemory(s) => write!(f, "the GPU ran out of memory ({s})"),
            GpuError::Lost(s) => write!(
                f,
                "the GPU device was lost ({s}); the driver may have reset it: close other GPU programs and retry"
            ),
            GpuError::Fault(s) => write!(
                f,
                "the GPU reported an error: {s} (please report this as a wgtune bug)"
            ),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<GpuError> for Error {
    fn from(e: GpuError) -> Self {
        let kind = match e {
            GpuError::OutOfMemory(_) => Kind::OutOfMemory,
            GpuError::Lost(_) => Kind::DeviceLost,
            _ => Kind::Other,
        };
        Error::new(e.to_string()).with_kind(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_keep_their_kind_and_name_no_flag() {
        for (fault, kind) in [
            (GpuError::OutOfMemory("x".into()), Kind::OutOfMemory),
            (GpuError::Lost("x".into()), Kind::DeviceLost),
            (GpuError::Fault("x".into()), Kind::Other),
        ] {
            let e = Error::from(fault);
            assert_eq!(e.kind(), kind);
            assert!(!e.0.contains("--"), "the gpu layer names no flag: {}", e.0);
        }
    }
}
