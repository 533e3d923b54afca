//! Call-shaped pairs (function entry/return probes that nest) paired in the kernel on a stack per
//! thread: `usdtop latency -p PID php:function__entry --by function` and the same for CPython,
//! run as the real binary against real PHP 8.2 and python3.11 scripts whose functions sleep
//! known times. Each script waits for a line on stdin, so every call it makes is traced; its
//! `main` was entered before tracing began, so its return finds no open call. Latency bounds
//! are generous (behaviour, not timing precision): the kernel's buckets are 1/8 of a power of
//! two wide, and a sleep lasts at least what was asked.

mod common;

use common::build::TempDir;
use common::php::php_binary;
use common::python::python311;
use common::tracer::Tracer;
use common::{line_reader, require, row, u, wait_line, MS};
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Command, Stdio};

/// Calls of each function per run.
const N: u64 = 30;

const JAVA: &str = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java";

/// A runtime process running a script that waits for a line on stdin before its calls.
struct Script {
    child: Child,
}

impl Script {
    fn php(code: &str) -> Script {
        let mut cmd = Command::new(php_binary());
        // PHP fires its function probes only with this set (it routes calls through dtrace).
        cmd.env("USE_ZEND_DTRACE", "1").args(["-r", code]);
        Script::spawn(cmd)
    }

    fn python(code: &str) -> Script {
        let mut cmd = Command::new(python311());
        cmd.args(["-c", code]);
        Script::spawn(cmd)
    }

    fn ruby(code: &str) -> Script {
        let mut cmd = Command::new(require("ruby3.1"));
        cmd.args(["-e", code]);
        Script::spawn(cmd)
    }

    /// A Java program run from source with the JVM's method probes on; returns once its
    /// `main` waits for the go (the source launcher compiles it first, which takes a while).
    fn java(dir: &TempDir, source: &str) -> Script {
        let file = dir.path().join("Calls.java");
        std::fs::write(&file, source).unwrap();
        let mut cmd = Command::new(require(JAVA));
        // hotspot:method__* fire only with this flag (or -XX:+ExtendedDTraceProbes).
        cmd.arg("-XX:+DTraceMethodProbes").arg(&file);
        let mut script = Script::spawn_with(cmd, Stdio::piped());
        let lines = line_reader(script.child.stdout.take().unwrap());
        wait_line(&lines, "ready", "java");
        script
    }

    fn spawn(cmd: Command) -> Script {
        Script::spawn_with(cmd, Stdio::null())
    }

    fn spawn_with(mut cmd: Command, stdout: Stdio) -> Script {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(stdout)
            .spawn()
            .expect("start the runtime");
        Script { child }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Lets the script make its calls.
    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` under `usdtop latency -p PID START --by BY --json` (plus `options`) until the
/// script exits; returns usdtop's last report and what it said before tracing.
fn latency(mut script: Script, start: &str, by: &str, options: &[&str]) -> (Value, Vec<String>) {
    // Let the runtime map its libraries and reach the line it waits on.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = script.pid();
    let mut args = vec!["latency", "-p", &pid, start, "--by", by, "--json"];
    args.extend_from_slice(options);
    let tracer = Tracer::start(&args);
    let preamble = tracer.preamble.clone();
    script.go();
    let _ = script.child.wait();
    let reports = tracer.json();
    (reports.last().cloned().expect("a final report"), preamble)
}

/// The row of `function` in the report's --by table.
fn function<'a>(r: &'a Value, name: &str) -> &'a Value {
    row(&r["by"], name)
}

fn has_row(r: &Value, name: &str) -> bool {
    r["by"]
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["key"] == name)
}

/// A p50 of calls that slept `ms` (and did little else): at least the sleep, less the half
/// bucket a kernel bucket's midpoint may lie below it, and not much more.
fn assert_p50_near(r: &Value, name: &str, ms: u64) {
    let p50 = u(function(r, name), "p50_ns");
    assert!(
        p50 >= ms * MS - ms * MS / 16 && p50 <= ms * MS + 4 * MS,
        "{name} slept {ms} ms a call; p50 {p50} ns: {r}"
    );
}

const PHP_NESTED: &str = r#"
function inner() { usleep(5000); }
function outer() { usleep(10000); inner(); }
function main($n) { fgets(STDIN); for ($i = 0; $i < $n; $i++) outer(); }
main(30);
"#;

const PYTHON_NESTED: &str = r#"
import sys, time
def inner():
    time.sleep(0.005)
def outer():
    time.sleep(0.010)
    inner()
def main(n):
    sys.stdin.readline()
    for i in range(n):
        outer()
main(30)
"#;

/// Checks the figures both runtimes must give for the nested script: every call of inner and
/// outer counted, each with its own latency, in the kernel, nothing mismatched but main.
fn assert_nested_figures(r: &Value) {
    assert_eq!(r["mode"], "kernel", "{r}");
    assert_eq!(u(function(r, "inner"), "count"), N, "{r}");
    assert_eq!(u(function(r, "outer"), "count"), N, "{r}");
    assert_p50_near(r, "inner", 5);
    // outer sleeps 10 ms, then calls inner (5 ms): its latency includes inner's.
    assert_p50_near(r, "outer", 15);
    let calls = &r["calls"];
    assert_eq!(u(calls, "unwound"), 0, "{calls}");
    assert_eq!(u(calls, "not_on_stack"), 0, "{calls}");
    assert_eq!(u(calls, "too_deep"), 0, "{calls}");
    // main (and Python's <module>) were entered before tracing began: their returns, if seen
    // before usdtop ends, have no call to pair with.
    assert!(u(calls, "no_open_call") <= 2, "{calls}");
    assert!(!has_row(r, "main"), "main's entry was never seen: {r}");
    assert_eq!(u(r, "events"), 0, "nothing is streamed on this path: {r}");
}

#[test]
fn php_functions_nested_two_deep_each_get_their_own_latency_in_the_kernel() {
    let (r, _) = latency(
        Script::php(PHP_NESTED),
        "php:function__entry",
        "function",
        &[],
    );
    assert_nested_figures(&r);
}

#[test]
fn python_functions_nested_two_deep_each_get_their_own_latency_in_the_kernel() {
    let (r, said) = latency(
        Script::python(PYTHON_NESTED),
        "python:function__entry",
        "function",
        &[],
    );
    assert_nested_figures(&r);
    // CPython 3.11 fires function probes only while python:line is attached: usdtop says so.
    assert!(
        said.iter()
            .any(|l| l.contains("also attaching python:line") && l.contains("gh-98894")),
        "{said:?}"
    );
}

#[test]
fn ruby_methods_nested_two_deep_each_get_their_own_latency_in_the_kernel() {
    // Ruby fires method__entry/return for Ruby-defined methods only while a TracePoint is on.
    let code = r#"
TracePoint.new(:call, :return) {}.enable
def inner; sleep 0.005; end
def outer; sleep 0.010; inner; end
def main(n); $stdin.gets; n.times { outer }; end
main(30)
"#;
    let (r, _) = latency(Script::ruby(code), "ruby:method__entry", "method", &[]);
    assert_nested_figures(&r);
}

#[test]
fn ruby_c_methods_get_their_latency_with_the_entry_probe_alone() {
    // cmethod__entry pairs with cmethod__return (catalog, or the entry/return names alone).
    let code = r#"
def main(n); $stdin.gets; n.times { sleep 0.005 }; end
main(30)
"#;
    let (r, _) = latency(Script::ruby(code), "ruby:cmethod__entry", "method", &[]);
    assert_eq!(u(function(&r, "sleep"), "count"), N, "{r}");
    assert_p50_near(&r, "sleep", 5);
    assert_eq!(u(&r["calls"], "unwound"), 0, "{r}");
}

#[test]
fn jvm_methods_nested_two_deep_each_get_their_own_latency_in_the_kernel() {
    // Method names are pointer + length strings (not NUL-terminated): read with their length.
    let source = r#"
import java.io.*;
public class Calls {
    static void inner() throws Exception { Thread.sleep(5); }
    static void outer() throws Exception { Thread.sleep(10); inner(); }
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready");
        System.out.flush();
        in.readLine();
        for (int i = 0; i < 30; i++) outer();
    }
}
"#;
    let dir = TempDir::new("calls-jvm");
    let (r, _) = latency(
        Script::java(&dir, source),
        "hotspot:method__entry",
        "method",
        &[],
    );
    assert_eq!(r["mode"], "kernel", "{r}");
    assert_eq!(u(function(&r, "inner"), "count"), N, "{r}");
    assert_eq!(u(function(&r, "outer"), "count"), N, "{r}");
    assert_p50_near(&r, "inner", 5);
    assert_p50_near(&r, "outer", 15);
    let calls = &r["calls"];
    assert_eq!(u(calls, "unwound") + u(calls, "not_on_stack"), 0, "{calls}");
}

#[test]
fn kernel_and_streamed_pairing_of_nested_calls_agree() {
    let (r, _) = latency(
        Script::php(PHP_NESTED),
        "php:function__entry",
        "function",
        &["--mode", "stream"],
    );
    assert_eq!(r["mode"], "stream", "{r}");
    assert_eq!(u(function(&r, "inner"), "count"), N, "{r}");
    assert_eq!(u(function(&r, "outer"), "count"), N, "{r}");
    assert_p50_near(&r, "inner", 5);
    assert_p50_near(&r, "outer", 15);
}

#[test]
fn an_exception_thrown_through_php_functions_pairs_each_call_with_its_own_return() {
    // PHP reports the return of a function an exception leaves (measured with bpftrace too):
    // nothing is mismatched, and the functions the exception went through keep their times.
    let code = r#"
function thrower() { usleep(2000); throw new Exception("x"); }
function middle() { usleep(3000); thrower(); }
function catcher() { try { middle(); } catch (Exception $e) {} }
function main($n) { fgets(STDIN); for ($i = 0; $i < $n; $i++) catcher(); }
main(30);
"#;
    let (r, _) = latency(Script::php(code), "php:function__entry", "function", &[]);
    for f in ["thrower", "middle", "catcher"] {
        assert_eq!(u(function(&r, f), "count"), N, "{f}: {r}");
    }
    assert_p50_near(&r, "thrower", 2);
    assert_p50_near(&r, "middle", 5);
    assert_p50_near(&r, "catcher", 5);
    let calls = &r["calls"];
    assert_eq!(u(calls, "unwound") + u(calls, "not_on_stack"), 0, "{calls}");
}

#[test]
fn a_call_left_by_a_fiber_switch_is_counted_as_mismatched_never_paired_wrongly() {
    // suspender() is entered on a fiber and suspended; starter() returns on the main stack
    // while suspender's call is still open on the thread (the kernel sees one stack per
    // thread), so starter's return unwinds the fiber's frames; when the fiber resumes,
    // suspender's return finds no call of its own. Each such call is counted, none is timed
    // under a wrong entry, and starter keeps its own latency (2 ms + 3 ms).
    let code = r#"
function suspender() { Fiber::suspend(1); usleep(1000); }
function starter($f) { usleep(2000); $f->start(); usleep(3000); }
function main($n) {
    fgets(STDIN);
    for ($i = 0; $i < $n; $i++) {
        $f = new Fiber(function () { suspender(); });
        starter($f);
        $f->resume();
    }
}
main(30);
"#;
    let (r, _) = latency(Script::php(code), "php:function__entry", "function", &[]);
    assert_eq!(u(function(&r, "starter"), "count"), N, "{r}");
    assert_p50_near(&r, "starter", 5);
    assert!(!has_row(&r, "suspender"), "suspender never paired: {r}");
    let calls = &r["calls"];
    // The fiber's closure and suspender, unwound by each starter return...
    assert_eq!(u(calls, "unwound"), 2 * N, "{calls}");
    // ...and their returns, each on a stack without their call (and main's, entered before
    // tracing began).
    let stray = u(calls, "no_open_call") + u(calls, "not_on_stack");
    assert!((2 * N..=2 * N + 2).contains(&stray), "{calls}");
    assert_eq!(u(calls, "mismatches"), 2 * N + stray, "{calls}");
    assert!(!has_row(&r, "main"), "{r}");
}

#[test]
fn calls_deeper_than_the_stack_bound_are_counted_and_the_outer_ones_still_pair() {
    // deep(40) opens 41 calls; the kernel keeps 32 per thread and counts the 9 beyond.
    let code = r#"
function deep($n) { if ($n > 0) deep($n - 1); else usleep(2000); }
function main() { fgets(STDIN); deep(40); }
main();
"#;
    let (r, _) = latency(Script::php(code), "php:function__entry", "function", &[]);
    let calls = &r["calls"];
    assert_eq!(u(calls, "depth"), 32, "{calls}");
    assert_eq!(u(calls, "too_deep"), 9, "{calls}");
    assert_eq!(u(calls, "unwound") + u(calls, "not_on_stack"), 0, "{calls}");
    let deep = function(&r, "deep");
    assert_eq!(u(deep, "count"), 32, "{r}");
    // Each kept call contains the innermost sleep.
    assert!(u(deep, "p50_ns") >= 2 * MS - MS / 8, "{deep}");
}

#[test]
fn top_shows_a_row_per_function_of_a_call_shaped_pair() {
    let mut script = Script::php(PHP_NESTED);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = script.pid();
    let tracer = Tracer::start(&["top", "-p", &pid, "php:function__entry", "--json"]);
    script.go();
    let _ = script.child.wait();
    let r = tracer.json().pop().expect("a final report");
    assert_eq!(r["mode"], "kernel", "{r}");
    let rows = &r["rows"];
    assert_eq!(u(row(rows, "inner"), "count"), N, "{r}");
    assert_eq!(u(row(rows, "outer"), "count"), N, "{r}");
    assert!(u(row(rows, "outer"), "p50_ns") >= 14 * MS, "{r}");
    assert!(r["calls"].is_object(), "{r}");
}

#[test]
fn under_a_duty_cycle_no_call_is_paired_across_a_gap() {
    // 150 outer calls of 15 ms (about 2.3 s), attached 300 ms of each second: a return paired
    // with an entry from before a 700 ms gap would be far longer than any call.
    let code = PHP_NESTED.replace("main(30)", "main(150)");
    let (r, _) = latency(
        Script::php(&code),
        "php:function__entry",
        "function",
        &["--max-overhead", "1", "--duty", "0.3"],
    );
    let fraction = r["sampled"]["fraction"].as_f64().unwrap();
    assert!(fraction < 0.6, "attached {fraction} of the time: {r}");
    assert_p50_near(&r, "inner", 5);
    assert_p50_near(&r, "outer", 15);
    let max = u(&r, "max_ns");
    assert!(max < 100 * MS, "a {max} ns call spans a gap: {r}");
}
