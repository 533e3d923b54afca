//! Helpers shared by the tests that trace real programs. Each workload lives in its own file.
#![allow(dead_code)]

pub mod aggfix;
pub mod build;
pub mod fired;
pub mod fixture;
pub mod php;
pub mod postgres;
pub mod prometheus;
pub mod python;
pub mod readelf;
pub mod running;
pub mod semaphore;
pub mod tracer;

// The listing tests call these as `common::usdtop`, `common::fixtures`, ...
#[allow(unused_imports)]
pub use readelf::*;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use usdtop::probes::tracing::engine::{Engine, EngineOptions};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::Event;

/// How long a test waits for events before it fails (a bound on hangs, not a speed check).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a test waits for a fixture run to finish or for usdtop to start tracing (also a
/// bound on hangs: a run of a million requests on a busy 2-core machine takes a while).
pub const RUN_PATIENCE: Duration = Duration::from_secs(60);

/// One millisecond in nanoseconds (the unit of usdtop's latency figures).
pub const MS: u64 = 1_000_000;

/// A new engine (default options) and the channel its events arrive on.
pub fn engine_and_events() -> (Engine, EventStream) {
    let mut engine = Engine::new(EngineOptions::default()).expect("tests run as root with BPF");
    let events = engine.take_events().unwrap();
    (engine, events)
}

/// Receives batches until `done(all events so far)` or PATIENCE runs out.
pub fn collect_until(rx: &mut EventStream, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let start = Instant::now();
    let mut all = Vec::new();
    while !done(&all) && start.elapsed() < PATIENCE {
        match rx.try_recv() {
            Some(batch) => all.extend(batch),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    all
}

/// Receives batches for `quiet` after the last one arrived (draining what is in flight).
pub fn drain(rx: &mut EventStream, quiet: Duration) -> Vec<Event> {
    let mut all = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match rx.try_recv() {
            Some(batch) => {
                all.extend(batch);
                last = Instant::now();
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    all
}

/// A child process (a workload) killed and reaped when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where a program a test needs is: `program` is a path, or a name looked up on PATH. A missing
/// program fails the test, naming the package that provides it — a test that skips cannot fail.
pub fn require(program: &str) -> PathBuf {
    let found = if program.contains('/') {
        Some(PathBuf::from(program)).filter(|p| p.exists())
    } else {
        which(program)
    };
    found.unwrap_or_else(|| {
        panic!(
            "{program} is not installed: it comes with {}; `bash .ci/install-deps` installs \
             everything the tests need",
            package_of(program)
        )
    })
}

/// The libstdc++ that g++ links against (what the C++ fixtures use), symlinks resolved.
pub fn libstdcxx() -> PathBuf {
    let out = std::process::Command::new(require("g++"))
        .arg("-print-file-name=libstdc++.so.6")
        .output()
        .expect("run g++");
    // g++ prints the bare name when it has no such library: `require` then fails naming it.
    let path = require(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::canonicalize(path).unwrap()
}

/// The Debian package (or install step) that provides a program the tests use.
fn package_of(program: &str) -> &'static str {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "postgres" | "pgbench" => "postgresql-15 and postgresql-contrib",
        "python3.11" => "python3.11",
        "php8.2" => "php8.2-cli",
        "bpftrace" => "bpftrace",
        "cargo-nextest" => "`cargo install cargo-nextest` (see .ci/install-deps)",
        "libjvm.so" | "java" => "openjdk-17-jdk-headless",
        "ruby3.1" | "libruby-3.1.so.3.1" => "ruby3.1",
        "libstdc++.so.6" => "libstdc++6",
        "tmux" => "tmux",
        "prometheus" => "prometheus",
        "setpriv" | "unshare" | "pivot_root" | "runuser" => "util-linux",
        "chroot" => "coreutils",
        "readelf" => "binutils",
        "cc" | "g++" => "build-essential",
        _ => "the package that provides it (see .ci/install-deps)",
    }
}

/// The full path of a program on PATH, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Parses JSON-lines output (`--json`): every line must be one JSON value.
pub fn parse_json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The integer `field` of a JSON object.
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

/// The lines `r` produces, on a channel (so waits on them can time out).
pub fn line_reader(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
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

/// Waits (bounded by RUN_PATIENCE) for a line starting with `prefix`; `who` names the writer.
pub fn wait_line(lines: &mpsc::Receiver<String>, prefix: &str, who: &str) -> String {
    let deadline = Instant::now() + RUN_PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => continue,
            Err(e) => panic!("{who} never printed `{prefix}`: {e}"),
        }
    }
}
