//! Targets that change under usdtop are reported, once: a traced process that execs another
//! program, and a traced file replaced on disk (a deploy renames a new build over it). With
//! `trace --follow`, the new file is traced too.

mod common;

use common::aggfix::aggfix;
use common::build::copy_executable;
use common::python::python311;
use common::{line_reader, parse_json_lines, RUN_PATIENCE};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// usdtop with its stderr read line by line, once it says it is tracing.
struct Usdtop {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Usdtop {
    fn start(args: &[&str]) -> Usdtop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("usdtop starts");
        let stderr = line_reader(child.stderr.take().unwrap());
        let mut u = Usdtop {
            child,
            stderr,
            seen: Vec::new(),
        };
        u.wait_line("usdtop: tracing");
        u
    }

    /// Waits for a stderr line containing `text`.
    fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + RUN_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => panic!("usdtop never said {text:?}; it said {:?}", self.seen),
            }
        }
    }

    /// SIGINT, then stdout and every stderr line.
    fn stop(mut self) -> (String, Vec<String>) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child.wait().unwrap();
        self.seen.extend(self.stderr.try_iter());
        (out, std::mem::take(&mut self.seen))
    }
}

impl Drop for Usdtop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_exec_of_the_traced_process_is_reported_once() {
    let python = python311().unwrap();
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
    let mut usdtop = Usdtop::start(&["trace", "-p", &pid, "python:gc__start"]);
    target.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let line = usdtop.wait_line("exec'd");
    assert!(
        line.contains(&format!("process {pid} now runs /usr/bin/sleep")),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, stderr) = usdtop.stop();
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
    let mut usdtop = Usdtop::start(&["trace", "--json", "--follow", &probe]);
    let before = run_five_ticks(&app);
    deploy_over(&app);
    usdtop.wait_line("was replaced on disk");
    usdtop.wait_line("following");
    let after = run_five_ticks(&app);
    std::thread::sleep(Duration::from_millis(300));
    let (out, stderr) = usdtop.stop();
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
    let mut usdtop = Usdtop::start(&["trace", "--json", &probe]);
    deploy_over(&app);
    let line = usdtop.wait_line("was replaced on disk");
    assert!(line.contains(&app.display().to_string()), "{line}");
    let after = run_five_ticks(&app);
    std::thread::sleep(Duration::from_millis(300));
    let (out, stderr) = usdtop.stop();
    assert_eq!(events_of(&out, after), 0, "{stderr:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn latency_reports_a_replaced_file_too() {
    let (dir, app) = deployed("latency");
    let start = format!("{}:aggfix:req__start", app.display());
    let done = format!("{}:aggfix:req__done", app.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(["latency", &start, &done])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = line_reader(child.stderr.take().unwrap());
    common::wait_line(&stderr, "Tracing", "usdtop");
    deploy_over(&app);
    let deadline = Instant::now() + RUN_PATIENCE;
    let mut said = Vec::new();
    while !said
        .iter()
        .any(|l: &String| l.contains("was replaced on disk"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        said.push(
            stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no report of the replacement: {said:?}")),
        );
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    std::fs::remove_dir_all(dir).unwrap();
}
