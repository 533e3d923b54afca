//! Hints where probes are missing or silent, with real processes: a Python built without
//! `--with-dtrace` (an ELF with no probes, named python3.11, as pyenv's is) is explained by
//! `list`, Debian's python3.11 (which has probes) is not; PHP's function probes without
//! `USE_ZEND_DTRACE=1` get the switch named by `trace` after a few silent seconds, and with it
//! they fire and nothing is said.

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

fn trace_function_entry(pid: &str) -> std::process::Output {
    usdtop(&["trace", "-p", pid, "php:function__entry", "--duration", "7"])
}

#[test]
fn trace_names_use_zend_dtrace_when_php_function_probes_stay_silent() {
    let dir = TempDir::new("hint-php-off");
    let php = php_calling_functions(&dir, None);
    let out = trace_function_entry(&php.pid().to_string());
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
    let err = stderr(&trace_function_entry(&php.pid().to_string()));
    assert!(err.contains("hint: php:function__entry"), "{err}");
}

#[test]
fn latency_names_the_switch_once_for_the_silent_entry_and_return() {
    let dir = TempDir::new("hint-php-latency");
    let php = php_calling_functions(&dir, None);
    let out = usdtop(&[
        "latency",
        "-p",
        &php.pid().to_string(),
        "php:function__entry",
        "--duration",
        "7",
    ]);
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
    let out = trace_function_entry(&php.pid().to_string());
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
    // A CLI script serves no request: request__startup fires once at start, then never.
    let out = usdtop(&[
        "trace",
        "-p",
        &php.pid().to_string(),
        "php:request__shutdown",
        "--duration",
        "7",
    ]);
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}
