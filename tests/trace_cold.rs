//! Strings in pages the traced process has never touched (tests/fixtures/cold.c): a
//! non-faulting read (what bpftrace does: it prints "") cannot read them; usdtop faults the page
//! in from a sleepable program and prints the real string. A really bad pointer stays
//! unreadable, and is counted (tests/fixtures/strloop.c: one on every hit).

mod common;

use common::build::{compile, TempDir};
use common::fired::FiredRun;
use common::parse_json_lines;
use std::process::{Command, Stdio};

const USDTOP: &str = env!("CARGO_BIN_EXE_usdtop");
const UNREADABLE: &str = "string not readable (unmapped pointer)";

/// Runs the fixture under `usdtop ARGS -p PID PATH:cold:hit`, firing once usdtop has printed
/// a stderr line starting with `attached`; usdtop ends when the fixture has exited. Its
/// "fired" line is "fired unmapped_before=N mapped_after=M".
fn run_cold(args: &[&str], attached: &str) -> FiredRun {
    FiredRun::run("tests/fixtures/cold.c", "cold:hit", args, attached)
}

/// `usdtop trace --json --str 0 EXTRA`: the run and arg0 of the hits with tags 1, 2 and 3.
fn trace_cold(extra: &[&str]) -> (FiredRun, Vec<serde_json::Value>) {
    let mut args = vec!["trace", "--json", "--str", "0"];
    args.extend(extra);
    let run = run_cold(&args, "usdtop: tracing 1 probe(s)");
    let lines = parse_json_lines(&run.stdout.join("\n"));
    assert_eq!(lines.len(), 3, "three hits: {lines:?}");
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["args"]["arg1"], i as u64 + 1, "hits in order: {v}");
    }
    let args = lines.iter().map(|v| v["args"]["arg0"].clone()).collect();
    (run, args)
}

#[test]
fn strings_in_pages_never_touched_are_read_by_faulting_them_in() {
    let (run, args) = trace_cold(&[]);
    assert!(
        run.fired.contains("unmapped_before=3"),
        "the fixture's string pages must be unmapped before their hits: {}",
        run.fired
    );
    assert_eq!(args[0], "cold text in an untouched page");
    assert_eq!(args[1], "spanning: cold text in an untouched page");
    assert_eq!(args[2]["unsupported"], UNREADABLE, "pointer 0x10");
    assert!(
        run.fired.contains("mapped_after=3"),
        "reading them mapped them in: {}",
        run.fired
    );
    assert!(
        summary_line(&run, "events printed").ends_with(", 1 strings unreadable"),
        "the bad pointer is counted in the summary: {}",
        run.stderr
    );
    assert!(
        summary_line(&run, "hits  cold:hit").ends_with("  1 strings unreadable"),
        "and for its probe: {}",
        run.stderr
    );
}

/// The line of usdtop's stderr that contains `what`.
fn summary_line<'a>(run: &'a FiredRun, what: &str) -> &'a str {
    run.stderr
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` line: {}", run.stderr))
}

#[test]
fn without_faulting_such_strings_stay_unreadable_and_are_counted() {
    let (run, args) = trace_cold(&["--fault-strings", "never"]);
    assert!(run.fired.contains("unmapped_before=3"), "{}", run.fired);
    for arg in &args {
        assert_eq!(arg["unsupported"], UNREADABLE, "{args:?}");
    }
    assert!(
        run.fired.contains("mapped_after=0"),
        "the traced process's memory is left alone: {}",
        run.fired
    );
    assert!(
        summary_line(&run, "events printed").ends_with(", 3 strings unreadable"),
        "{}",
        run.stderr
    );
}

#[test]
fn top_counting_in_the_kernel_keys_by_strings_never_touched() {
    let args = ["top", "--mode", "kernel", "--by", "arg0", "--json"];
    let run = run_cold(&args, "Tracing cold:hit");
    assert!(run.fired.contains("unmapped_before=3"), "{}", run.fired);
    let report = parse_json_lines(&run.stdout.join("\n"))
        .pop()
        .expect("a report");
    assert_eq!(report["mode"], "kernel");
    let mut keys: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cold text in an untouched page",
            "spanning: cold text in an untouched page"
        ],
        "{report}"
    );
    assert_eq!(report["unreadable_strings"], 1, "pointer 0x10: {report}");
}

#[test]
fn a_probe_whose_pointers_are_always_bad_has_every_one_counted() {
    // After 8 failed faults in a row the probe only tries one hit in 64; the rest are still
    // read (without faulting), shown and counted.
    let dir = TempDir::new("strloop");
    let bin = compile("gcc", "tests/fixtures/strloop.c", dir.path(), &[]);
    let fixture = Command::new(&bin)
        .args(["1000", "bad"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start strloop");
    let probe = format!("{}:strloop:tick", bin.display());
    let pid = fixture.id().to_string();
    let out = Command::new(USDTOP)
        .args(["trace", "--json", "--str", "1", "-p", &pid, &probe])
        .output()
        .unwrap();
    let fired = fixture.wait_with_output().unwrap();
    assert!(
        fired.status.success(),
        "strloop waited for a tracer in vain"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = parse_json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(lines.len(), 1000, "{stderr}");
    assert!(lines
        .iter()
        .all(|v| v["args"]["arg1"]["unsupported"] == UNREADABLE));
    let summary = stderr
        .lines()
        .find(|l| l.contains("events printed"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(summary.ends_with(", 1000 strings unreadable"), "{summary}");
}
