//! The usdtop binary running as a tracer (`latency`, `top`): started, waited on until it says it
//! is tracing, then stopped (Ctrl-C or by itself) and its stdout read.

use super::{line_reader, parse_json_lines, RUN_PATIENCE};
use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};

/// usdtop running as a tracer; `start` returns once it says it is tracing.
pub struct Tracer {
    child: Child,
    stdout: Option<ChildStdout>,
    /// What usdtop said on stderr before it was tracing (e.g. `-v` lines).
    pub preamble: Vec<String>,
}

impl Tracer {
    /// The usdtop process's pid.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(args: &[&str]) -> Tracer {
        Tracer::start_until(args, "Tracing")
    }

    /// Starts usdtop; returns once it prints a stderr line starting with `ready` (`trace` says
    /// `usdtop: tracing N probe(s)`).
    pub fn start_until(args: &[&str], ready: &str) -> Tracer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("usdtop starts");
        let stderr = line_reader(child.stderr.take().unwrap());
        let deadline = std::time::Instant::now() + RUN_PATIENCE;
        let mut preamble = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match stderr.recv_timeout(left) {
                Ok(l) if l.starts_with(ready) => break,
                Ok(l) => {
                    eprintln!("usdtop: {l}");
                    preamble.push(l);
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("usdtop {args:?} never started tracing ({e})");
                }
            }
        }
        // Keep echoing stderr so a failing test shows it.
        std::thread::spawn(move || {
            while let Ok(l) = stderr.recv() {
                eprintln!("usdtop: {l}");
            }
        });
        let stdout = child.stdout.take();
        Tracer {
            child,
            stdout,
            preamble,
        }
    }

    /// Ends tracing with SIGINT (as Ctrl-C would) and returns what usdtop printed; usdtop
    /// exits with 130 (128 + SIGINT), as a shell command stopped by Ctrl-C does.
    pub fn interrupt(self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.output_with(Some(130))
    }

    /// Waits for usdtop to end by itself (--duration, or the -p process exited).
    pub fn output(self) -> String {
        self.output_with(Some(0))
    }

    fn output_with(mut self, code: Option<i32>) -> String {
        let mut out = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.code(),
            code,
            "usdtop exited with {status}; printed:\n{out}"
        );
        out
    }

    /// The JSON reports usdtop printed, one per line.
    pub fn json(self) -> Vec<serde_json::Value> {
        parse_json_lines(&self.output())
    }

    pub fn interrupt_json(self) -> Vec<serde_json::Value> {
        parse_json_lines(&self.interrupt())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
