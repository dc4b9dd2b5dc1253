//! The error users see: one line that names the file, line or tensor and says what is wrong.

use std::fmt;

/// The message, and what kind of failure it reports (for front ends that add advice).
#[derive(Debug)]
pub struct Error(pub String, Kind);

/// What kind of failure an [`Error`] reports, where a front end may add advice of its own:
/// the library's messages say what happened; the CLI names its flags, the page its settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Other,
    /// The GPU could not allocate memory: a smaller batch or sequence would fit.
    OutOfMemory,
    /// The GPU device stopped working (a driver reset, a step that ran too long).
    DeviceLost,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into(), Kind::Other)
    }

    pub fn with_kind(self, kind: Kind) -> Self {
        Error(self.0, kind)
    }

    pub fn kind(&self) -> Kind {
        self.1
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `bail!("...")`: return early with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}

/// Build an [`Error`] from a format string (for `map_err` / `ok_or_else`).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::Error::new(format!($($arg)*))
    };
}
