//! The error users see: one line that names the file, line or tensor and says what is wrong.

use std::fmt;

#[derive(Debug)]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<crate::gpu::GpuError> for Error {
    fn from(e: crate::gpu::GpuError) -> Self {
        Error(e.to_string())
    }
}

/// `bail!("...")`: return early with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error(format!($($arg)*)))
    };
}

/// Build an [`Error`] from a format string (for `map_err` / `ok_or_else`).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::Error(format!($($arg)*))
    };
}
