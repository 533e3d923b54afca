//! /usr/bin/python3.11 (built with USDT probes, non-PIE) running a script.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn python311() -> PathBuf {
    super::require("/usr/bin/python3.11")
}

/// A python process running `script` until dropped.
pub struct PythonLoop {
    child: Child,
}

impl PythonLoop {
    pub fn start(python: &Path, script: &str) -> PythonLoop {
        let child = Command::new(python)
            .args(["-c", script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3.11");
        // Let it map libpython and reach its loop.
        std::thread::sleep(std::time::Duration::from_millis(300));
        PythonLoop { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PythonLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
