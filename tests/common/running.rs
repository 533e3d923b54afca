//! The usdtop binary running as a tracer (`trace`, `latency`, `top`), for tests that talk to it
//! while it runs: started and waited on until it says it traces, sent signals, its stderr read
//! line by line, and its exit awaited with a bound that catches hangs.

use super::{line_reader, RUN_PATIENCE};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub said: Vec<String>,
}

impl Running {
    /// Starts `usdtop ARGS` with stdout to `stdout` and returns once it says it traces
    /// (`usdtop: tracing …` from trace, `Tracing …` from latency and top).
    pub fn start(args: &[&str], stdout: Stdio) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("usdtop starts");
        let stderr = line_reader(child.stderr.take().unwrap());
        let mut running = Running {
            child,
            stderr,
            said: Vec::new(),
        };
        running.wait_line(|l| l.starts_with("Tracing") || l.starts_with("usdtop: tracing"));
        running
    }

    /// Waits for a stderr line that `ok` accepts, and returns it.
    pub fn wait_line(&mut self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + RUN_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    self.said.push(l.clone());
                    if ok(&l) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "usdtop never said what was awaited; it said {:?}",
                        self.said
                    )
                }
            }
        }
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_for(&mut self, text: &str) -> String {
        self.wait_line(|l| l.contains(text))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the exit, failing the test if it takes longer than `patience`; returns the
    /// status and every stderr line.
    pub fn exit_within(mut self, patience: Duration) -> (ExitStatus, Vec<String>) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.said.extend(self.stderr.try_iter());
                return (status, std::mem::take(&mut self.said));
            }
            if start.elapsed() > patience {
                let _ = self.child.kill();
                panic!(
                    "usdtop did not end within {patience:?}; it said {:?}",
                    self.said
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT, then (with stdout piped) what it printed and every stderr line.
    pub fn interrupt(mut self) -> (String, Vec<String>) {
        self.signal(libc::SIGINT);
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        self.child.wait().unwrap();
        self.said.extend(self.stderr.try_iter());
        (out, std::mem::take(&mut self.said))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
