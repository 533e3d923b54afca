//! Targets that change under usdtop are reported, once: a traced process that execs another
//! program, and a traced file replaced on disk (a deploy renames a new build over it). With
//! `trace --follow`, the new file is traced too.

mod common;

use common::aggfix::aggfix;
use common::build::copy_executable;
use common::parse_json_lines;
use common::python::python311;
use common::running::Running;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn an_exec_of_the_traced_process_is_reported_once() {
    let python = python311();
    // python3.11 has USDT probes; once told to, it becomes /bin/sleep, which has none.
    let mut target = Command::new(&python)
        .args([
            "-c",
            "import os, sys; sys.stdin.readline(); os.execv('/bin/sleep', ['sleep', '60'])",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.id().to_string();
    let mut usdtop = Running::start(&["trace", "-p", &pid, "python:gc__start"], Stdio::null());
    target.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let line = usdtop.wait_for("exec'd");
    assert!(
        line.contains(&format!("process {pid} now runs /usr/bin/sleep")),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = usdtop.interrupt();
    let reports = stderr.iter().filter(|l| l.contains("exec'd")).count();
    assert_eq!(reports, 1, "reported once: {stderr:?}");
    let _ = target.kill();
    let _ = target.wait();
}

/// A directory with a copy of the aggfix fixture at `app`.
fn deployed(tag: &str) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("deploy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app");
    copy_executable(aggfix(), &app);
    (dir, app)
}

/// A deploy: a new build is written next to `app` and renamed over it.
fn deploy_over(app: &Path) {
    let new = app.with_extension("new");
    copy_executable(aggfix(), &new);
    std::fs::rename(&new, app).unwrap();
}

/// Runs `app` firing `aggfix:tick` five times without waiting for a tracer; its pid.
fn run_five_ticks(app: &Path) -> u32 {
    let out = Command::new(app)
        .args(["loop", "5", "--no-wait"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("ready "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("aggfix printed its pid: {text}"))
}

fn events_of(stdout: &str, pid: u32) -> usize {
    parse_json_lines(stdout)
        .iter()
        .filter(|e| e["pid"].as_u64() == Some(pid as u64))
        .count()
}

#[test]
fn a_traced_file_replaced_on_disk_is_reported_and_with_follow_the_new_file_is_traced() {
    let (dir, app) = deployed("follow");
    let probe = format!("{}:aggfix:tick", app.display());
    let mut usdtop = Running::start(&["trace", "--json", "--follow", &probe], Stdio::piped());
    let before = run_five_ticks(&app);
    deploy_over(&app);
    usdtop.wait_for("was replaced on disk");
    usdtop.wait_for("following");
    let after = run_five_ticks(&app);
    std::thread::sleep(Duration::from_millis(300));
    let (out, stderr) = usdtop.interrupt();
    assert_eq!(events_of(&out, before), 5, "the old file was traced");
    assert_eq!(
        events_of(&out, after),
        5,
        "the new file is traced: {stderr:?}"
    );
    let reports = stderr
        .iter()
        .filter(|l| l.contains("replaced on disk"))
        .count();
    assert_eq!(reports, 1, "reported once: {stderr:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn without_follow_a_replaced_file_is_reported_and_its_new_processes_are_not_traced() {
    let (dir, app) = deployed("report");
    let probe = format!("{}:aggfix:tick", app.display());
    let mut usdtop = Running::start(&["trace", "--json", &probe], Stdio::piped());
    deploy_over(&app);
    let line = usdtop.wait_for("was replaced on disk");
    assert!(line.contains(&app.display().to_string()), "{line}");
    let after = run_five_ticks(&app);
    std::thread::sleep(Duration::from_millis(300));
    let (out, stderr) = usdtop.interrupt();
    assert_eq!(events_of(&out, after), 0, "{stderr:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn latency_reports_a_replaced_file_too() {
    let (dir, app) = deployed("latency");
    let start = format!("{}:aggfix:req__start", app.display());
    let done = format!("{}:aggfix:req__done", app.display());
    let mut usdtop = Running::start(&["latency", &start, &done], Stdio::null());
    deploy_over(&app);
    usdtop.wait_for("was replaced on disk");
    usdtop.signal(libc::SIGINT);
    let (status, _) = usdtop.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    std::fs::remove_dir_all(dir).unwrap();
}
