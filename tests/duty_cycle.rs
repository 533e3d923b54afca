//! `--max-overhead`: above the budget usdtop attaches for a slice of each period, scales counts
//! back up by the time attached, and never pairs a start with a done across a detached gap.
//! Run as the real binary on the aggfix fixture (a steady stream of requests on one thread).

mod common;

use common::aggfix::AggFix;
use common::tracer::Tracer;
use common::{u, MS};
use serde_json::Value;
use std::process::Command;

/// `usdtop latency -p FIXTURE aggfix:req__start aggfix:req__done --json OPTIONS` over the
/// fixture's `pairs N SLEEP_US` run; the report printed once the fixture exited.
fn latency(n: u64, sleep_us: u64, options: &[&str]) -> Value {
    let (n, sleep_us) = (n.to_string(), sleep_us.to_string());
    let mut fx = AggFix::start(&["pairs", &n, &sleep_us]);
    let pid = fx.pid().to_string();
    let mut args = vec![
        "latency",
        "-p",
        &pid,
        "aggfix:req__start",
        "aggfix:req__done",
        "--json",
    ];
    args.extend_from_slice(options);
    let tracer = Tracer::start(&args);
    fx.go();
    fx.wait_for("fired");
    fx.wait();
    tracer.json().pop().expect("a report")
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
