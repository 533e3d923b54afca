//! Hints where probes are missing or silent, with real processes: a Python built without
//! `--with-dtrace` (an ELF with no probes, named python3.11, as pyenv's is) is explained by
//! `list`, Debian's python3.11 (which has probes) is not; PHP's function probes without
//! `USE_ZEND_DTRACE=1` get the switch named by `trace` after a few silent seconds, and with it
//! they fire and nothing is said.

mod common;

use common::build::{copy_executable, TempDir};
use common::{require, stderr, stdout, usdtop};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when the test ends.
struct Killed(Child);

impl Killed {
    fn spawn(cmd: &mut Command) -> Killed {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the workload");
        // Long enough for its exec to be done and its maps to show what it runs.
        std::thread::sleep(Duration::from_millis(300));
        Killed(child)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let proc = Killed::spawn(Command::new(&python).arg("60"));
    let out = usdtop(&["list", "-p", &proc.pid()]);
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
        all.lines()
            .any(|l| l.contains("Python without USDT probes") && l.contains(&proc.pid())),
        "{all}"
    );
}

#[test]
fn list_gives_no_hint_for_a_python_that_has_its_probes() {
    let python = require("/usr/bin/python3.11");
    let proc = Killed::spawn(Command::new(python).args(["-c", "import time; time.sleep(60)"]));
    let out = usdtop(&["list", "-p", &proc.pid()]);
    assert!(
        stdout(&out).contains("python:function__entry"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

/// `php8.2 SCRIPT` calling a function about 500 times a second, with `USE_ZEND_DTRACE` set to
/// `zend_dtrace` (or unset).
fn php_calling_functions(dir: &TempDir, zend_dtrace: Option<&str>) -> Killed {
    let php = require("/usr/bin/php8.2");
    let script = dir.path().join("calls.php");
    std::fs::write(
        &script,
        "<?php\nfunction tick($i) { return $i + 1; }\n$n = 0;\n\
         for ($t = time(); time() - $t < 120;) { $n = tick($n); usleep(2000); }\n",
    )
    .unwrap();
    let mut cmd = Command::new(php);
    cmd.arg(&script).env_remove("USE_ZEND_DTRACE");
    if let Some(v) = zend_dtrace {
        cmd.env("USE_ZEND_DTRACE", v);
    }
    Killed::spawn(&mut cmd)
}

fn trace_function_entry(pid: &str) -> std::process::Output {
    usdtop(&["trace", "-p", pid, "php:function__entry", "--duration", "7"])
}

#[test]
fn trace_names_use_zend_dtrace_when_php_function_probes_stay_silent() {
    let dir = TempDir::new("hint-php-off");
    let php = php_calling_functions(&dir, None);
    let out = trace_function_entry(&php.pid());
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
    let err = stderr(&trace_function_entry(&php.pid()));
    assert!(err.contains("hint: php:function__entry"), "{err}");
}

#[test]
fn latency_names_the_switch_once_for_the_silent_entry_and_return() {
    let dir = TempDir::new("hint-php-latency");
    let php = php_calling_functions(&dir, None);
    let out = usdtop(&[
        "latency",
        "-p",
        &php.pid(),
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
    let out = trace_function_entry(&php.pid());
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
        &php.pid(),
        "php:request__shutdown",
        "--duration",
        "7",
    ]);
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}
