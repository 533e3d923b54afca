//! `usdtop trace` as a user runs it: real probes, real output, clean stops, named errors.

mod common;

use common::fixture::FixtureBin;
use common::parse_json_lines;
use common::python::{python311, PythonLoop};
use common::semaphore::{semaphore_value, wait_semaphore};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use usdtop::probes::read_probes;

const USDTOP: &str = env!("CARGO_BIN_EXE_usdtop");

/// Starts `usdtop ARGS` with piped output; returns it once its first stderr line says it has
/// attached its one probe, with the rest of its stderr still to read.
fn start_attached(args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut usdtop = Command::new(USDTOP)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(usdtop.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("tracing 1 probe(s)"), "{line}");
    (usdtop, stderr)
}

#[test]
fn json_output_has_one_object_per_event_and_count_stops_it() {
    let bin = FixtureBin::build();
    let mut fixture = bin.start("count", 20);
    let probe = format!("{}:fixture:tick", bin.path.display());
    let pid = fixture.pid().to_string();
    // Wait until it is attached, then fire.
    let (usdtop, mut stderr) = start_attached(&[
        "trace", "--json", "--str", "1", "--count", "5", "-p", &pid, &probe,
    ]);
    fixture.go();
    let out = usdtop.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    let lines = parse_json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(lines.len(), 5, "--count 5");
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["provider"], "fixture");
        assert_eq!(v["name"], "tick");
        assert_eq!(v["pid"], fixture.pid());
        assert_eq!(v["args"]["arg0"], i as u64);
        assert_eq!(v["args"]["arg1"], "tick", "--str 1 reads a string");
        assert!(v["ts_ns"].as_u64().unwrap() > 0);
    }
    assert!(
        rest.contains("5 events printed"),
        "summary on stderr: {rest}"
    );
    assert!(rest.contains("dropped"), "{rest}");
}

#[test]
fn sigterm_stops_it_cleanly_and_detaches() {
    let python = python311();
    let object = read_probes(&python).unwrap();
    let sem = object
        .probes
        .iter()
        .find(|p| p.name == "gc__start")
        .unwrap()
        .semaphore
        .unwrap();
    let proc = PythonLoop::start(
        &python,
        "import gc, time\nwhile True:\n    gc.collect()\n    time.sleep(0.02)\n",
    );
    let mut usdtop = Command::new(USDTOP)
        .args(["trace", "-p", &proc.pid().to_string(), "python:gc__start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(usdtop.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.contains("python:gc__start generation="),
        "text line: {line}"
    );
    assert!(line.contains(&format!(" {} ", proc.pid())));
    assert!(semaphore_value(proc.pid(), &python, false, sem) > 0);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(usdtop.id() as i32, libc::SIGTERM) };
    let out = usdtop.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "SIGTERM ends with 128 + 15");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hits  python:gc__start"),
        "per-probe hits: {stderr}"
    );
    assert_eq!(
        wait_semaphore(proc.pid(), &python, false, sem, |v| v == 0),
        0
    );
}

#[test]
fn a_misspelled_probe_names_the_nearest_ones() {
    let python = python311();
    let out = Command::new(USDTOP)
        .args(["trace", "/usr/bin/python3.11:python:gc_start"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no probe matches `/usr/bin/python3.11:python:gc_start`"),
        "{err}"
    );
    assert!(err.contains("nearest: python:gc__start"), "{err}");
    drop(python);
}

#[test]
fn a_process_that_is_gone_is_a_named_error() {
    let out = Command::new(USDTOP)
        .args(["trace", "-p", "2147483646", "python:gc__start"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("process 2147483646") && err.contains("exited"),
        "{err}"
    );
}

#[test]
fn duration_stops_it() {
    let python = python311();
    let out = Command::new(USDTOP)
        .args(["trace", "--duration", "0.3"])
        .arg(format!("{}:python:gc__done", python.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("events printed"));
}

#[test]
fn it_ends_by_itself_with_every_event_once_the_traced_process_exits() {
    let bin = FixtureBin::build();
    let mut fixture = bin.start("count", 300);
    let probe = format!("{}:fixture:tick", bin.path.display());
    let (usdtop, _stderr) = start_attached(&["trace", "-p", &fixture.pid().to_string(), &probe]);
    fixture.go(); // fires 300 times and exits
    let out = usdtop.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        300,
        "every event, none lost at the end"
    );
    assert!(text
        .lines()
        .last()
        .unwrap()
        .contains("fixture:tick arg0=299 "));
}

#[test]
fn without_privileges_it_says_what_to_do() {
    let _python = python311();
    common::require("/usr/sbin/runuser");
    // An unprivileged user must be able to run the binary: copy it somewhere world-readable.
    let dir = common::build::TempDir::new("nobody");
    let bin = dir.path().join("usdtop");
    common::build::copy_executable(std::path::Path::new(USDTOP), &bin);
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .args([
            "trace",
            "/usr/bin/python3.11:python:gc__start",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not permitted"), "{err}");
    assert!(
        err.contains("tracing needs root, or CAP_BPF and CAP_PERFMON"),
        "{err}"
    );
    assert!(err.contains("lacks CAP_BPF and CAP_PERFMON"), "{err}");
}
