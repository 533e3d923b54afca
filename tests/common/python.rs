//! /usr/bin/python3.11 (built with USDT probes, non-PIE) running a script.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn python311() -> Option<PathBuf> {
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

/// The u16 USDT semaphore at `vaddr` in process `pid` (python3.11 is non-PIE: vaddr is absolute).
pub fn semaphore_value(pid: u32, vaddr: u64) -> u16 {
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut b = [0u8; 2];
    mem.read_exact_at(&mut b, vaddr).expect("read semaphore");
    u16::from_le_bytes(b)
}
