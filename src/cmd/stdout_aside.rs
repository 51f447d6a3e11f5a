//! `--output json` keeps stdout for the JSON alone, but Goose prints progress lines there
//! with `println!` ("8 users launched.", in test-plan runs) and has no switch for it. While
//! a guard lives, file descriptor 1 points at stderr, so whatever a library prints goes
//! to the terminal or log beside the progress line; dropping it points stdout back.

use std::io::Write;

pub struct StdoutAside {
    /// The real stdout, duplicated; None when nothing was moved.
    saved: Option<libc::c_int>,
}

impl StdoutAside {
    /// Move stdout aside when `on`; a failure to do so leaves it as it is.
    pub fn new(on: bool) -> StdoutAside {
        if !on {
            return StdoutAside { saved: None };
        }
        let _ = std::io::stdout().flush();
        // SAFETY: dup and dup2 on the process's own standard descriptors; `saved` is
        // closed exactly once, in drop.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return StdoutAside { saved: None };
        }
        if unsafe { libc::dup2(2, 1) } < 0 {
            unsafe { libc::close(saved) };
            return StdoutAside { saved: None };
        }
        StdoutAside { saved: Some(saved) }
    }
}

impl Drop for StdoutAside {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = std::io::stdout().flush();
            // SAFETY: as in `new`.
            unsafe {
                libc::dup2(saved, 1);
                libc::close(saved);
            }
        }
    }
}
