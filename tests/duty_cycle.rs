//! `--max-overhead`: above the budget usdtop attaches for a slice of each period, scales counts
//! back up by the time attached, and never pairs a start with a done across a detached gap.
//! Run as the real binary on the aggfix fixture (a steady stream of requests on one thread).

mod common;

use common::aggfix::AggFix;
use common::tracer::Tracer;
use common::{u, MS};
use serde_json::Value;
use std::process::Command;

/// `usdtop COMMAND -p FIXTURE PROBES... --json OPTIONS` (`command` is COMMAND and PROBES)
/// over the fixture's `pairs N SLEEP_US` run; the report printed once the fixture exited.
fn report(command: &[&str], n: u64, sleep_us: u64, options: &[&str]) -> Value {
    let (n, sleep_us) = (n.to_string(), sleep_us.to_string());
    let mut fx = AggFix::start(&["pairs", &n, &sleep_us]);
    let pid = fx.pid().to_string();
    let mut args = vec![command[0], "-p", &pid, "--json"];
    args.extend_from_slice(&command[1..]);
    args.extend_from_slice(options);
    let tracer = Tracer::start(&args);
    fx.go();
    fx.wait_for("fired");
    fx.wait();
    tracer.json().pop().expect("a report")
}

/// `usdtop latency` of the fixture's start/done pair.
fn latency(n: u64, sleep_us: u64, options: &[&str]) -> Value {
    let pair = ["latency", "aggfix:req__start", "aggfix:req__done"];
    report(&pair, n, sleep_us, options)
}

/// `usdtop top` of the fixture's requests by label, with their latency.
fn top(n: u64, sleep_us: u64, options: &[&str]) -> Value {
    let by_label = [
        "top",
        "aggfix:req__start",
        "--done",
        "aggfix:req__done",
        "--by",
        "arg1",
    ];
    report(&by_label, n, sleep_us, options)
}

fn fraction(r: &Value) -> f64 {
    r["sampled"]["fraction"].as_f64().unwrap()
}

#[test]
fn counts_scaled_by_the_time_attached_land_within_10_percent_of_what_was_fired() {
    // 20,000 requests of 100-300 µs (about 5 s), attached 30 % of each second.
    let r = latency(20_000, 100, &["--max-overhead", "1", "--duty", "0.3"]);
    let f = fraction(&r);
    assert!((0.2..0.45).contains(&f), "attached {f} of the time: {r}");
    let count = u(&r, "count");
    assert!(
        (18_000..=22_000).contains(&count),
        "scaled count {count} for 20000 requests: {r}"
    );
    let seen = u(&r["sampled"], "count_seen");
    assert!(seen < 15_000, "only a sample was seen: {seen}");
    assert!(u(&r["pairing"], "gap_discarded") > 0, "{r}");
}

#[test]
fn no_request_is_paired_across_a_detached_gap() {
    // Requests of 20-60 ms; attached 300 ms of each second, so a start paired with a done
    // across a gap would be at least 700 ms long. In the kernel and in user space.
    for mode in ["kernel", "stream"] {
        let r = latency(
            60,
            20_000,
            &["--max-overhead", "1", "--duty", "0.3", "--mode", mode],
        );
        assert!(fraction(&r) < 0.6, "{mode}: {r}");
        assert!(u(&r["sampled"], "count_seen") > 0, "{mode}: {r}");
        let max = u(&r, "max_ns");
        assert!(
            max < 500 * MS,
            "{mode}: a {max} ns request spans a gap: {r}"
        );
        let p50 = u(&r, "p50_ns");
        assert!(
            (15 * MS..400 * MS).contains(&p50),
            "{mode}: p50 {p50}: unscaled"
        );
    }
}

#[test]
fn a_workload_within_the_budget_stays_attached_and_is_counted_exactly() {
    // 200 requests of 1-3 ms: a few hundred hits a second, far below 50 % of the CPU.
    let r = latency(200, 1000, &["--max-overhead", "50"]);
    assert_eq!(fraction(&r), 1.0, "{r}");
    assert_eq!(u(&r, "count"), 200, "{r}");
    let estimate = r["sampled"]["estimated_overhead_pct"].as_f64().unwrap();
    assert!(estimate > 0.0 && estimate < 50.0, "{r}");
}

#[test]
fn a_budget_must_be_a_percentage_and_needs_the_uprobe_multi_path() {
    let usdtop = env!("CARGO_BIN_EXE_usdtop");
    for bad in ["0", "-1", "NaN", "101", "lots"] {
        let out = Command::new(usdtop)
            .args(["latency", "aggfix:req__start", "aggfix:req__done"])
            .arg(format!("--max-overhead={bad}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--max-overhead {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-overhead"), "{err}");
    }
    let fx = AggFix::start(&["pairs", "1", "1"]);
    let probe = format!("{}:aggfix:req__start", fx.path().display());
    let out = Command::new(usdtop)
        .args(["latency", &probe, "aggfix:req__done", "--max-overhead", "1"])
        .env("USDTOP_ATTACH_PATH", "per-site")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs the uprobe-multi attach path"), "{err}");
}

#[test]
fn top_scales_each_rows_count_and_keeps_its_latencies_whole() {
    // 18,000 requests cycling /a (100 µs), /b (200 µs), /c (300 µs); attached 30 % of the time.
    for mode in ["kernel", "stream"] {
        let r = top(
            18_000,
            100,
            &["--max-overhead", "1", "--duty", "0.3", "--mode", mode],
        );
        assert!(fraction(&r) < 0.6, "{mode}: {r}");
        let total = u(&r, "total");
        assert!(
            (16_200..=19_800).contains(&total),
            "{mode}: total {total}: {r}"
        );
        for (label, us) in [("/a", 100), ("/b", 200), ("/c", 300)] {
            let row = common::row(&r["rows"], label);
            let count = u(row, "count");
            assert!(
                (5_400..=6_600).contains(&count),
                "{mode} {label}: {count}: {r}"
            );
            let p50 = u(row, "p50_ns");
            assert!(
                (us * 1000 * 7 / 8..us * 1000 + 20 * MS).contains(&p50),
                "{mode} {label}: p50 {p50} for {us} µs requests"
            );
        }
    }
}

#[test]
fn trace_prints_a_sample_and_scales_the_hits_in_its_summary() {
    let mut fx = AggFix::start(&["pairs", "20000", "100"]);
    let pid = fx.pid().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(["trace", "-p", &pid, "aggfix:req__start", "--json"])
        .args(["--max-overhead", "1", "--duty", "0.3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::line_reader(child.stderr.take().unwrap());
    common::wait_line(&stderr, "usdtop: tracing", "usdtop");
    let stdout = child.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().count()
    });
    fx.go();
    fx.wait_for("fired");
    fx.wait();
    assert!(child.wait().unwrap().success());
    let printed = printed.join().unwrap();
    let summary: Vec<String> = stderr.iter().collect();
    let hits = summary
        .iter()
        .find(|l| l.contains("aggfix:req__start"))
        .unwrap_or_else(|| panic!("{summary:?}"));
    // "usdtop:   20123 hits (scaled; 6050 seen)  aggfix:req__start (...)"
    let numbers: Vec<u64> = hits
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (scaled, seen) = (numbers[0], numbers[1]);
    assert_eq!(seen as usize, printed, "every hit seen was printed: {hits}");
    assert!(printed < 14_000, "only slices were traced: {printed}");
    assert!((18_000..=22_000).contains(&scaled), "{hits}");
    assert!(
        summary
            .iter()
            .any(|l| l.contains("sampled") && l.contains("of the time")),
        "{summary:?}"
    );
}
