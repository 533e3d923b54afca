//! Ruby 3.1 (Debian's `ruby3.1`, probes in libruby-3.1.so): the catalog's string arguments come
//! out as text — class, method and file of every C method call — `require` pairs give latencies
//! per required file, and `method__entry` fires for Ruby methods only under a TracePoint.

mod common;

use common::build::TempDir;
use common::fixture::Fixture;
use common::tracer::Tracer;
use common::{require, row, u, MS};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// A Ruby script: prints `ready`, waits for a line on stdin, does what its argument says (in
/// the script's own file, so that the probes' `file` is known), prints `done`.
const SCRIPT: &str = r#"
$stdout.sync = true
def usdtop_known(i) = i + 1
TracePoint.new(:call, :return) {}.enable if ARGV[0] == "tracepoint"
$LOAD_PATH.unshift(__dir__)
puts "ready"
$stdin.gets
case ARGV[0]
when "gcd"
  123.times { 84.gcd(36) }
when "require"
  require "usdtop_slow_a"
  require "usdtop_slow_b"
else
  50.times { |i| usdtop_known(i) }
end
puts "done"
"#;

/// The line of SCRIPT that calls `gcd`.
const GCD_LINE: u64 = 10;

/// One test at a time: while a probe's semaphore is raised in every process mapping libruby
/// (usdtop attaches for all processes and filters by pid in BPF), a ruby3.1 that starts may
/// crash — Ruby 3.1.2 sometimes segfaults in rb_dtrace_setup while `cmethod__entry` is on during
/// its start (loading rubygems); seen with bpftrace too. So no test starts a ruby while another
/// test traces one.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

struct Script {
    dir: TempDir,
    path: PathBuf,
}

impl Script {
    /// The script, in a directory whose name is not plain ASCII, with two files to require
    /// that take 200 ms and 50 ms to load.
    fn write() -> Script {
        let dir = TempDir::new("ruby ü");
        let path = dir.path().join("drive.rb");
        std::fs::write(&path, SCRIPT).unwrap();
        std::fs::write(dir.path().join("usdtop_slow_a.rb"), "sleep 0.2\n").unwrap();
        std::fs::write(dir.path().join("usdtop_slow_b.rb"), "sleep 0.05\n").unwrap();
        Script { dir, path }
    }

    fn start(&self, mode: &str) -> Fixture {
        let mut cmd = Command::new(require("ruby3.1"));
        cmd.arg(&self.path).arg(mode).current_dir(self.dir.path());
        Fixture::spawn(cmd)
    }

    /// `usdtop ARGS -p PID`, run while the script does `mode`; what it printed (JSON lines).
    fn under_usdtop(&self, mode: &str, args: &[&str], ready: &str) -> Vec<Value> {
        let mut ruby = self.start(mode);
        let pid = ruby.pid().to_string();
        let mut all = args.to_vec();
        all.extend(["-p", &pid]);
        let tracer = Tracer::start_until(&all, ready);
        ruby.go();
        // The script has exited: usdtop ends by itself.
        tracer.json()
    }

    /// `usdtop trace --json PROBE -p PID` while the script does `mode`: every event.
    fn trace(&self, mode: &str, probe: &str) -> Vec<Value> {
        self.under_usdtop(mode, &["trace", "--json", probe], "usdtop: tracing")
    }
}

fn events_of<'a>(events: &'a [Value], method: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["args"]["method"] == method)
        .collect()
}

fn path_text(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cmethod_entry_gives_class_method_and_file_of_each_c_call() {
    let _one = one_at_a_time();
    let script = Script::write();
    let events = script.trace("gcd", "ruby:cmethod__entry");
    let gcd = events_of(&events, "gcd");
    assert_eq!(gcd.len(), 123, "one event per call");
    for e in gcd {
        let a = &e["args"];
        assert_eq!(a["class"], "Integer", "{e}");
        assert_eq!(a["file"], path_text(&script.path), "{e}");
        assert_eq!(u(a, "line"), GCD_LINE, "{e}");
    }
    // The other C methods the script called after the go, with their classes.
    for (class, method) in [("Integer", "times"), ("Kernel", "puts")] {
        assert!(
            events_of(&events, method)
                .iter()
                .any(|e| e["args"]["class"] == class),
            "{class}#{method} missing"
        );
    }
}

#[test]
fn method_entry_fires_for_ruby_methods_only_while_a_tracepoint_is_on() {
    let _one = one_at_a_time();
    let script = Script::write();
    let mut counts = Vec::new();
    for mode in ["plain", "tracepoint"] {
        let events = script.trace(mode, "ruby:method__entry");
        let known = events_of(&events, "usdtop_known");
        if let Some(e) = known.first() {
            assert_eq!(e["args"]["class"], "Object", "{e}");
            assert_eq!(e["args"]["file"], path_text(&script.path), "{e}");
        }
        counts.push(known.len());
    }
    // Ruby fires it from the trace instructions a TracePoint switches on; the probe's semaphore
    // alone does not (the catalog's comment says so, and the hints repeat it).
    assert_eq!(counts, [0, 50]);
}

#[test]
fn require_latency_is_paired_per_required_file() {
    let _one = one_at_a_time();
    let script = Script::write();
    let reports = script.under_usdtop(
        "require",
        &[
            "latency",
            "--json",
            "--by",
            "required",
            "ruby:require__entry",
        ],
        "Tracing",
    );
    let last = reports.last().expect("a report");
    assert_eq!(last["done"], "ruby:require__return");
    assert_eq!(u(last, "count"), 2);
    for (file, at_least_ms) in [("usdtop_slow_a", 200), ("usdtop_slow_b", 50)] {
        let r = row(&last["by"], file);
        assert_eq!(u(r, "count"), 1, "{r}");
        // The kernel's buckets are 1/8 of a power of two wide; a p50 is its bucket's low edge.
        let p50 = u(r, "p50_ns");
        assert!(
            p50 >= at_least_ms * MS * 7 / 8 && p50 < 10_000 * MS,
            "{file}: {p50} ns"
        );
    }
}
