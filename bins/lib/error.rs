//! One small error type: a message for the operator and an exit code.
//! Exit 0 success, 1 failure, 2 usage error (DESIGN.md, "Output and exit codes").

use std::fmt;
use std::path::Path;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug)]
pub struct Error {
    pub message: String,
    pub code: u8,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failure: the work could not be done.
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into(), code: EXIT_FAILURE }
    }

    /// The command line was wrong: nothing was attempted.
    pub fn usage(message: impl Into<String>) -> Self {
        Error { message: message.into(), code: EXIT_USAGE }
    }

    /// An I/O error on a file, naming the file and what we were doing.
    pub fn io(doing: &str, path: &Path, err: std::io::Error) -> Self {
        Error::new(format!("could not {doing} {}: {err}", path.display()))
    }

    /// Prefix the message with more context (e.g. the app).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Attach a file path to an io::Result.
pub trait IoContext<T> {
    fn at(self, doing: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, doing: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(doing, path, e))
    }
}
