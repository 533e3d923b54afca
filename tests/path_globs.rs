//! A glob in the PATH of a probe (`'/srv/app/bin/worker*:app:req__*'`) names every file it
//! matches, as bpftrace takes it: `trace`, `latency`, `top` and `list` expand it, `-v` says which
//! files matched, and a glob that matches nothing is an error naming it. The workload is two
//! copies of the aggfix fixture in one directory, traced for real.

mod common;

use common::aggfix::AggFix;
use common::build::TempDir;
use common::tracer::Tracer;
use common::{line_reader, parse_json_lines, row, u, RUN_PATIENCE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const USDTOP: &str = env!("CARGO_BIN_EXE_usdtop");

/// Two copies of the fixture, `worker-a` and `worker-b`, running `pairs 5 0`: five requests
/// each, fired once a tracer has attached and the test says go.
struct Workers {
    dir: TempDir,
    a: AggFix,
    b: AggFix,
}

impl Workers {
    fn start() -> Workers {
        let dir = TempDir::new("glob");
        let a = AggFix::start_copy(dir.path().join("worker-a"), &["pairs", "5", "0"]);
        let b = AggFix::start_copy(dir.path().join("worker-b"), &["pairs", "5", "0"]);
        Workers { dir, a, b }
    }

    /// `DIR/worker-*`
    fn glob(&self) -> String {
        format!("{}/worker-*", self.dir.path().display())
    }

    fn files(&self) -> [PathBuf; 2] {
        [self.a.path().to_path_buf(), self.b.path().to_path_buf()]
    }

    /// What `-v` must say about the glob.
    fn matched_line(&self) -> String {
        let [a, b] = self.files();
        format!(
            "`{}` matches 2 files: {}, {}",
            self.glob(),
            a.display(),
            b.display()
        )
    }

    /// Lets both fire and waits until they have.
    fn fire(&mut self) {
        self.a.go();
        self.b.go();
        self.a.wait_for("fired");
        self.b.wait_for("fired");
        // latency/top print "Tracing" a moment before their Ctrl-C handler is installed; a
        // SIGINT in between ends them without a report.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(USDTOP).args(args).output().unwrap()
}

#[test]
fn trace_follows_a_path_glob_into_every_copy_and_v_names_the_files() {
    let mut w = Workers::start();
    let probe = format!("{}:aggfix:req__start", w.glob());
    let mut usdtop = Command::new(USDTOP)
        .args(["trace", "-v", "--json", "--count", "10", &probe])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = line_reader(usdtop.stderr.take().unwrap());
    let mut said = Vec::new();
    loop {
        let line = stderr
            .recv_timeout(RUN_PATIENCE)
            .expect("usdtop says it is tracing");
        let tracing = line.contains("tracing 2 probe(s)");
        said.push(line);
        if tracing {
            break;
        }
    }
    assert!(
        said.contains(&format!("usdtop: {}", w.matched_line())),
        "-v names both files: {said:?}"
    );
    w.fire();
    let mut out = String::new();
    usdtop
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(usdtop.wait().unwrap().success());
    let events = parse_json_lines(&out);
    assert_eq!(events.len(), 10, "--count 10: {out}");
    let mut per_pid: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["name"], "req__start");
        *per_pid.entry(e["pid"].as_u64().unwrap()).or_default() += 1;
    }
    let want: BTreeMap<u64, usize> = [(w.a.pid() as u64, 5), (w.b.pid() as u64, 5)].into();
    assert_eq!(per_pid, want, "five events from each copy");
}

#[test]
fn latency_takes_a_path_glob_naming_one_probe_in_both_copies() {
    let mut w = Workers::start();
    let start = format!("{}:aggfix:req__start", w.glob());
    let tracer = Tracer::start(&[
        "latency",
        "-v",
        &start,
        "aggfix:req__done",
        "--by",
        "arg1",
        "--json",
    ]);
    assert!(
        tracer
            .preamble
            .contains(&format!("usdtop: {}", w.matched_line())),
        "-v names both files: {:?}",
        tracer.preamble
    );
    w.fire();
    let reports = tracer.interrupt_json();
    let r = reports.last().expect("a final report");
    assert_eq!(u(r, "count"), 10, "both copies' requests: {r}");
    // Labels cycle /a /b /c: per copy /a and /b twice, /c once.
    assert_eq!(u(row(&r["by"], "/a"), "count"), 4);
    assert_eq!(u(row(&r["by"], "/c"), "count"), 2);
}

#[test]
fn top_takes_a_path_glob_naming_one_probe_in_both_copies() {
    let mut w = Workers::start();
    let probe = format!("{}:aggfix:req__start", w.glob());
    let tracer = Tracer::start(&["top", "-v", &probe, "--by", "arg1", "--no-pair", "--json"]);
    assert!(
        tracer
            .preamble
            .contains(&format!("usdtop: {}", w.matched_line())),
        "-v names both files: {:?}",
        tracer.preamble
    );
    w.fire();
    let reports = tracer.interrupt_json();
    let r = reports.last().expect("a final report");
    let rows = r["rows"].as_array().expect("rows");
    let total: u64 = rows.iter().map(|row| u(row, "count")).sum();
    assert_eq!(total, 10, "both copies' hits: {r}");
    assert_eq!(u(row(&r["rows"], "/b"), "count"), 4);
}

#[test]
fn list_expands_a_quoted_glob_and_v_names_the_files() {
    let w = Workers::start();
    let out = run(&["list", "-v", &w.glob()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for f in w.files() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{}  (", f.display()))),
            "{} is listed: {text}",
            f.display()
        );
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end(), format!("usdtop: {}", w.matched_line()));

    let json = run(&["list", "--json", &w.glob(), "-n", "req__start"]);
    let paths: Vec<Value> = parse_json_lines(&String::from_utf8_lossy(&json.stdout))
        .into_iter()
        .map(|p| p["path"].clone())
        .collect();
    let want: Vec<Value> = w
        .files()
        .iter()
        .map(|f| Value::from(f.to_str().unwrap()))
        .collect();
    assert_eq!(paths, want);
}

#[test]
fn a_path_glob_that_matches_nothing_is_an_error_naming_it() {
    let dir = TempDir::new("noglob");
    let glob = format!("{}/nothing-*", dir.path().display());
    let probe = format!("{glob}:aggfix:req__start");
    let want = format!("no file matches `{glob}`");
    for args in [
        vec!["list", glob.as_str()],
        vec!["trace", probe.as_str()],
        vec!["latency", probe.as_str(), "aggfix:req__done"],
        vec!["top", probe.as_str(), "--by", "arg1"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
}

#[test]
fn files_a_glob_matches_that_are_not_elf_are_skipped_and_named_by_v() {
    let dir = TempDir::new("globskip");
    let binary = dir.path().join("worker-bin");
    common::build::copy_executable(common::aggfix::aggfix(), &binary);
    let notes = dir.path().join("worker-notes");
    std::fs::write(&notes, "not a program\n").unwrap();
    let probe = format!("{}/worker-*:aggfix:req__start", dir.path().display());
    let out = run(&["trace", "-v", "--duration", "0.5", &probe]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "usdtop: skipped {}: not an ELF file",
            notes.display()
        )),
        "{err}"
    );
    assert!(err.contains("tracing 1 probe(s)"), "{err}");
    let out = run(&["trace", "--duration", "0.5", &probe]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 file(s) a PATH glob matched have no readable probes and were skipped"),
        "without -v, a count: {err}"
    );
    // A glob none of whose files is readable is an error naming one.
    let only_notes = format!("{}/worker-n*:aggfix:req__start", dir.path().display());
    let out = run(&["trace", &only_notes]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot read probes of {}", notes.display())),
        "{err}"
    );
}
