//! One small error type: a message for the operator and an exit code.
//! Exit 0 success, 1 failure, 2 usage error (DESIGN.md, "Output and exit codes").

use std::fmt;

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

/// File I/O goes through fs-err (`use fs_err as fs;`), whose errors already
/// name the operation and the path ("failed to create directory `…`: …"), so
/// `?` on them is enough; the caller adds the app and what to do.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_error_names_the_operation_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ENV");
        let err: Error = fs_err::read_to_string(&missing).unwrap_err().into();
        assert_eq!(err.code, EXIT_FAILURE);
        assert!(err.message.contains("failed to open file") && err.message.contains(&missing.display().to_string()), "{err}");
        // A file where a directory should be: the error still names it.
        fs_err::write(&missing, "").unwrap();
        let err = crate::atomic::write_file(&missing.join("x"), b"", 0o600).unwrap_err();
        assert!(err.message.contains(&missing.display().to_string()), "{err}");
    }
}
