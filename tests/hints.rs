//! Hints where probes are missing or silent, with real processes: a Python built without
//! `--with-dtrace` (an ELF with no probes, named python3.11, as pyenv's is) is explained by
//! `list`, Debian's python3.11 (which has probes) is not; PHP's function probes without
//! `USE_ZEND_DTRACE=1` get the switch named by `trace` after a few silent seconds, and with it
//! they fire and nothing is said; the same for the JVM's -XX:+DTraceMethodProbes (on the command
//! line or in JAVA_TOOL_OPTIONS) and for CPython 3.11's function__entry, which needs python:line.

mod common;

use common::build::{copy_executable, TempDir};
use common::php::calling_functions;
use common::{require, stderr, stdout, usdtop, KillOnDrop};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts a workload, killed when the test ends; returns once it runs what it was given.
fn spawn(cmd: &mut Command) -> KillOnDrop {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the workload");
    // `spawn` returns after the exec; a moment more for the dynamic loader's mappings.
    std::thread::sleep(Duration::from_millis(300));
    KillOnDrop(child)
}

/// A program without probes named python3.11, as pyenv builds one (no `--with-dtrace`).
fn pyenv_style_python(dir: &TempDir) -> std::path::PathBuf {
    let python = dir.path().join("python3.11");
    copy_executable(&require("/usr/bin/sleep"), &python);
    let listed = usdtop(&["list", python.to_str().unwrap()]);
    assert!(
        stdout(&listed).contains("(no USDT probes)"),
        "the stand-in must have no probes: {}",
        stdout(&listed)
    );
    python
}

#[test]
fn list_says_why_a_python_built_without_dtrace_has_no_probes_and_what_has_them() {
    let dir = TempDir::new("hint-python");
    let python = pyenv_style_python(&dir);
    let proc = spawn(Command::new(&python).arg("60"));
    let out = usdtop(&["list", "-p", &proc.pid().to_string()]);
    let err = stderr(&out);
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("hint:")).collect();
    assert_eq!(hints.len(), 1, "one line: {err}");
    let want = format!(
        "usdtop: hint: pid {} (python3.11): Python without USDT probes: built without --with-dtrace",
        proc.pid()
    );
    assert!(hints[0].starts_with(&want), "{err}");
    assert!(hints[0].contains("Debian's /usr/bin/python3.11"), "{err}");
    assert_eq!(out.status.code(), Some(0), "a hint is not an error: {err}");
    // The whole-machine listing says it too, naming the process.
    let all = stderr(&usdtop(&["list"]));
    assert!(
        all.lines().any(
            |l| l.contains("Python without USDT probes") && l.contains(&proc.pid().to_string())
        ),
        "{all}"
    );
}

#[test]
fn list_gives_no_hint_for_a_python_that_has_its_probes() {
    let python = require("/usr/bin/python3.11");
    let proc = spawn(Command::new(python).args(["-c", "import time; time.sleep(60)"]));
    let out = usdtop(&["list", "-p", &proc.pid().to_string()]);
    assert!(
        stdout(&out).contains("python:function__entry"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

/// PHP calling a function about 500 times a second (see [`calling_functions`]).
fn php_calling_functions(dir: &TempDir, zend_dtrace: Option<&str>) -> KillOnDrop {
    spawn(&mut calling_functions(dir.path(), zend_dtrace))
}

#[test]
fn trace_names_use_zend_dtrace_when_php_function_probes_stay_silent() {
    let dir = TempDir::new("hint-php-off");
    let php = php_calling_functions(&dir, None);
    let out = trace_for_7s(php.pid(), &["php:function__entry"]);
    let err = stderr(&out);
    assert_eq!(stdout(&out), "", "no event without the switch");
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("hint:")).collect();
    assert_eq!(hints.len(), 1, "said once: {err}");
    assert!(
        hints[0].starts_with("usdtop: hint: php:function__entry: no hits in 5 s: PHP fires"),
        "{err}"
    );
    assert!(hints[0].contains("USE_ZEND_DTRACE=1"), "{err}");
    assert!(
        hints[0].ends_with(&format!("(pid {} runs without it)", php.pid())),
        "{err}"
    );
    // Set to something else than 1 is off too.
    let other = TempDir::new("hint-php-zero");
    let php = php_calling_functions(&other, Some("0"));
    let err = stderr(&trace_for_7s(php.pid(), &["php:function__entry"]));
    assert!(err.contains("hint: php:function__entry"), "{err}");
}

#[test]
fn latency_names_the_switch_once_for_the_silent_entry_and_return() {
    let dir = TempDir::new("hint-php-latency");
    let php = php_calling_functions(&dir, None);
    let out = for_7s("latency", php.pid(), &["php:function__entry"]);
    let err = stderr(&out);
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("hint:")).collect();
    assert_eq!(hints.len(), 1, "{err}");
    assert!(
        hints[0]
            .starts_with("usdtop: hint: php:function__entry, php:function__return: no hits in 5 s"),
        "{err}"
    );
}

#[test]
fn with_use_zend_dtrace_php_function_probes_fire_and_no_hint_is_given() {
    let dir = TempDir::new("hint-php-on");
    let php = php_calling_functions(&dir, Some("1"));
    let out = trace_for_7s(php.pid(), &["php:function__entry"]);
    let events = stdout(&out);
    assert!(
        events.lines().count() > 100 && events.contains("function=\"tick\""),
        "{}",
        &events[..events.len().min(500)]
    );
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

/// Where a probe has no known switch the watch says nothing, however silent it is.
#[test]
fn a_silent_probe_without_a_catalog_hint_gets_no_hint() {
    let dir = TempDir::new("hint-php-plain");
    let php = php_calling_functions(&dir, None);
    // A CLI script is one request: request__shutdown fires only when it ends.
    let out = trace_for_7s(php.pid(), &["php:request__shutdown"]);
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

/// Waits (bounded) until process `pid` maps a file whose path ends with `name`.
fn wait_until_mapped(pid: u32, name: &str) {
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.lines().any(|l| l.ends_with(name)))
    {
        assert!(
            start.elapsed() < common::PATIENCE,
            "pid {pid} never mapped {name}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `java Loop.java` (the source launcher: no javac needed) calling a method about 500 times a
/// second, with `flags` before the source file and `JAVA_TOOL_OPTIONS` set to `tool_options`.
fn java_calling_methods(dir: &TempDir, flags: &[&str], tool_options: Option<&str>) -> KillOnDrop {
    let java = require("java");
    let source = dir.path().join("Loop.java");
    std::fs::write(
        &source,
        "public class Loop { static int f(int i) { return i + 1; }\n\
         public static void main(String[] a) throws Exception { int n = 0;\n\
         long t = System.currentTimeMillis();\n\
         while (System.currentTimeMillis() - t < 120000) { n = f(n); Thread.sleep(2); } } }\n",
    )
    .unwrap();
    let mut cmd = Command::new(java);
    cmd.args(flags).arg(&source).env_remove("JAVA_TOOL_OPTIONS");
    if let Some(o) = tool_options {
        cmd.env("JAVA_TOOL_OPTIONS", o);
    }
    let jvm = spawn(&mut cmd);
    wait_until_mapped(jvm.pid(), "/libjvm.so");
    jvm
}

/// `usdtop COMMAND -p PID --duration 7 PROBES...`: past the 5 s a silent probe is given.
fn for_7s(command: &str, pid: u32, probes: &[&str]) -> std::process::Output {
    let pid = pid.to_string();
    let mut args = vec![command, "-p", &pid, "--duration", "7"];
    args.extend(probes);
    usdtop(&args)
}

fn trace_for_7s(pid: u32, probes: &[&str]) -> std::process::Output {
    for_7s("trace", pid, probes)
}

#[test]
fn the_jvm_is_told_to_start_with_dtrace_method_probes_unless_it_has() {
    let dir = TempDir::new("hint-jvm-off");
    let jvm = java_calling_methods(&dir, &[], None);
    let out = trace_for_7s(jvm.pid(), &["hotspot:method__entry"]);
    let err = stderr(&out);
    let hint = err
        .lines()
        .find(|l| l.starts_with("usdtop: hint: hotspot:method__entry: no hits in 5 s"))
        .unwrap_or_else(|| panic!("no hint: {err}"));
    assert!(hint.contains("-XX:+DTraceMethodProbes"), "{hint}");
    // With the flag in JAVA_TOOL_OPTIONS (not on the command line): it fires, nothing is said.
    let on = TempDir::new("hint-jvm-on");
    let jvm = java_calling_methods(&on, &[], Some("-XX:+DTraceMethodProbes"));
    let out = trace_for_7s(jvm.pid(), &["hotspot:method__entry"]);
    assert!(stdout(&out).lines().count() > 100, "{}", stderr(&out));
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

#[test]
fn cpython_3_11_function_entry_alone_is_told_to_attach_python_line_too() {
    let python = require("/usr/bin/python3.11");
    let script = "import time\ndef f(i): return i + 1\nn = 0\n\
                  for _ in range(60000): n = f(n); time.sleep(0.002)\n";
    let proc = spawn(Command::new(python).args(["-c", script]));
    let alone = trace_for_7s(proc.pid(), &["python:function__entry"]);
    let err = stderr(&alone);
    assert_eq!(stdout(&alone), "", "silent alone (gh-98894)");
    assert!(
        err.contains("hint: python:function__entry: no hits in 5 s: CPython 3.11")
            && err.contains("attach python:line as well"),
        "{err}"
    );
    let both = trace_for_7s(proc.pid(), &["python:function__entry", "python:line"]);
    assert!(
        stdout(&both).contains("python:function__entry"),
        "{}",
        stderr(&both)
    );
    assert!(!stderr(&both).contains("hint"), "{}", stderr(&both));
}
