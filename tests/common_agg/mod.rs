//! Helpers for the latency/top tests: the `aggfix` USDT fixture, running the usdtop binary as a
//! tracer, a PHP built-in server with a `/slow?ms=N` route, and a throwaway PostgreSQL cluster.
#![allow(dead_code)]

pub mod php;
pub mod postgres;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a test waits for a process to get ready (a bound on hangs, not a speed check).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Skips a test (prints why) when a program it needs is absent.
pub fn require(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {path} is not installed");
        None
    }
}

/// The fixture, compiled once per test binary.
pub fn fixture() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aggfix");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common_agg/fixture.c");
        let status = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("cc runs (systemtap-sdt-dev provides <sys/sdt.h>)");
        assert!(status.success(), "fixture.c compiles");
        out
    })
}

/// A running fixture: `ready PID` is printed once a tracer has attached.
pub struct Fixture {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    copy: PathBuf,
}

impl Fixture {
    /// Runs a private copy of the fixture: a tracer attached to one file raises the semaphores
    /// of every process running that file, so tests running side by side would otherwise see
    /// each other's tracers as their own.
    pub fn start(args: &[&str]) -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let copy = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "aggfix-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        crate::common::build::copy_executable(fixture(), &copy);
        let mut child = Command::new(&copy)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("fixture starts");
        let lines = line_reader(child.stdout.take().unwrap());
        Fixture { child, lines, copy }
    }

    /// The file this fixture runs (name probes in it as `PATH:aggfix:...`).
    pub fn path(&self) -> &Path {
        &self.copy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line starting with `prefix` on the fixture's stdout.
    pub fn wait_for(&self, prefix: &str) -> String {
        wait_line(&self.lines, prefix, "fixture")
    }

    pub fn wait(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "fixture exited with {status}");
    }

    /// Kills the fixture mid-request.
    pub fn kill(self) {}
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.copy);
    }
}

fn line_reader(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(lines: &mpsc::Receiver<String>, prefix: &str, who: &str) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => continue,
            Err(e) => panic!("{who} never printed `{prefix}`: {e}"),
        }
    }
}

/// usdtop running as a tracer; `start` returns once it says it is tracing.
pub struct Tracer {
    child: Child,
    stdout: Option<ChildStdout>,
}

impl Tracer {
    pub fn start(args: &[&str]) -> Tracer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("usdtop starts");
        let stderr = line_reader(child.stderr.take().unwrap());
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match stderr.recv_timeout(left) {
                Ok(l) if l.starts_with("Tracing") => break,
                Ok(l) => eprintln!("usdtop: {l}"),
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
        Tracer { child, stdout }
    }

    /// Ends tracing with SIGINT (as Ctrl-C would) and returns what usdtop printed.
    pub fn interrupt(self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.output()
    }

    /// Waits for usdtop to end by itself (--duration, or the -p process exited).
    pub fn output(mut self) -> String {
        let mut out = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
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

pub fn parse_json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn u(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer `{field}` in {v}"))
}

/// The row for `key` in a report's `rows` or `by` list.
pub fn row<'a>(list: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key} in {list}"))
}

pub const MS: u64 = 1_000_000;
