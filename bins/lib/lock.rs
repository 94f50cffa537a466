//! One deploy at a time per app: an exclusive `flock` on `locks/<app>`, the
//! same lock `hooks/post-receive` takes with flock(1), held until dropped.

use crate::app::AppName;
use crate::error::{Error, Result};
use crate::output;
use crate::paths::Root;
use fs_err::File;
use fs_err as fs;
use std::fs::TryLockError;
use std::time::{Duration, Instant};

pub struct AppLock {
    _file: File,
}

/// Seconds to wait for another deploy of the same app (`PIKU_LOCK_TIMEOUT`, default 600).
pub fn lock_timeout() -> Duration {
    let secs = std::env::var("PIKU_LOCK_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(secs)
}

impl AppLock {
    /// Take the app's lock, waiting (and saying so) while another deploy holds it.
    pub fn acquire(root: &Root, app: &AppName) -> Result<AppLock> {
        let path = root.lock_file(app);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).truncate(false).write(true).open(&path)?;
        let deadline = Instant::now() + lock_timeout();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(AppLock { _file: file }),
                Err(TryLockError::WouldBlock) => {
                    if !said {
                        output::step(format!("Waiting for another deploy of '{app}' to finish"));
                        said = true;
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::new(format!(
                            "another deploy of '{app}' is still running after {}s; try again when it has finished (lock: {})",
                            lock_timeout().as_secs(),
                            path.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => return Err(Error::new(format!("failed to lock `{}`: {e}", path.display()))),
            }
        }
    }
}
