//! `usdtop export`, run as the real binary against the real aggfix fixture and scraped by a real
//! Prometheus: what Prometheus stores is what the probes did.

mod common;

use common::aggfix::AggFix;
use common::prometheus::{get, Prometheus};
use common::running::Running;
use std::process::Stdio;
use std::time::Duration;

/// Starts `usdtop export` on a free loopback port with `args`; returns it and its address.
fn export(args: &[&str]) -> (Running, String) {
    let mut all = vec!["export", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let running = Running::start(&all, Stdio::null());
    let line = running.said.last().unwrap().clone();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (running, addr)
}

fn aggfix_pair(fix: &AggFix) -> Vec<String> {
    vec![
        "--latency".into(),
        format!("{}:aggfix:req__start", fix.path().display()),
        "--done".into(),
        "aggfix:req__done".into(),
        "--by".into(),
        "arg1".into(),
    ]
}

#[test]
fn prometheus_stores_the_hits_and_latency_quantiles_of_a_real_workload() {
    // 60 requests keyed /a, /b, /c in turn, sleeping 5, 10 and 15 ms.
    let mut fix = AggFix::start(&["pairs", "60", "5000"]);
    let args = aggfix_pair(&fix);
    let (exporter, addr) = export(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let prometheus = Prometheus::start(&addr);
    fix.go();
    fix.wait_for("fired 60");

    prometheus.wait_until("showing all 60 requests", |p| {
        p.value(r#"usdt_probe_hits_total{probe="req__start"}"#) == Some(60.0)
    });
    assert_eq!(
        prometheus.value(r#"usdt_probe_hits_total{probe="req__done"}"#),
        Some(60.0)
    );
    prometheus.wait_until("showing all 60 latencies", |p| {
        p.value("sum(usdt_latency_seconds_count)") == Some(60.0)
    });
    for (key, ms) in [("/a", 5.0), ("/b", 10.0), ("/c", 15.0)] {
        let q = format!(
            r#"histogram_quantile(0.5, usdt_latency_seconds_bucket{{pair="aggfix:req__start",key="{key}"}})"#
        );
        let p50 = prometheus.value(&q).expect("a median") * 1000.0;
        // A bucket is 1/8 of a power of two wide and Prometheus interpolates inside it: the
        // median of sleeps of `ms` (a little longer in fact) is within one bucket below and
        // at most half as much again above.
        assert!(
            p50 > ms * 7.0 / 8.0 && p50 < ms * 1.5,
            "p50 of {key} is {p50} ms, the sleeps {ms} ms"
        );
    }
    assert_eq!(prometheus.value("usdtop_ring_drops_total"), Some(0.0));
    assert_eq!(prometheus.value("usdtop_attached_sites"), Some(3.0));
    assert_eq!(prometheus.value("usdtop_build_info"), Some(1.0));
    drop(exporter);
}

/// The hits of `probe` in the exporter's /metrics now.
fn hits(addr: &str, probe: &str) -> Option<u64> {
    let (status, body) = get(addr, "/metrics")?;
    assert_eq!(status, 200);
    let needle = format!("probe=\"{probe}\"}} ");
    body.lines().find_map(|l| {
        l.split_once(&needle)
            .map(|(_, n)| n.trim().parse().unwrap())
    })
}

/// Polls (every 100 ms, for at most a minute) until `probe` has `want` hits in /metrics.
fn wait_hits(addr: &str, probe: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while hits(addr, probe) != Some(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "{probe} never reached {want} hits: {:?}",
            hits(addr, probe)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn export_outlives_its_targets_picks_up_later_ones_serves_healthz_and_ends_with_0_on_sigterm() {
    let mut fix = AggFix::start(&["pairs", "3", "0"]);
    let args = aggfix_pair(&fix);
    let (exporter, addr) = export(&args.iter().map(String::as_str).collect::<Vec<_>>());
    fix.go();
    fix.wait_for("fired 3");
    fix.child.wait().unwrap();
    wait_hits(&addr, "req__start", 3);
    // A process of the same file started after the attach is traced too.
    let later = std::process::Command::new(fix.path())
        .args(["pairs", "5", "0", "--no-wait"])
        .output()
        .unwrap();
    assert!(later.status.success());
    wait_hits(&addr, "req__start", 8);
    assert_eq!(get(&addr, "/healthz").map(|r| r.0), Some(200));
    let (_, body) = get(&addr, "/metrics").expect("metrics");
    assert!(
        body.contains("# TYPE usdt_latency_seconds histogram"),
        "{body}"
    );
    assert_eq!(get(&addr, "/nothing").map(|r| r.0), Some(404));
    exporter.signal(libc::SIGTERM);
    let (status, said) = exporter.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{said:?}");
}

#[test]
fn export_refuses_what_cannot_be_aggregated_in_the_kernel() {
    let fix = AggFix::start(&["pairs", "1", "0"]);
    let start = format!("{}:aggfix:req__start", fix.path().display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(["export", "--listen", "127.0.0.1:0", "--latency", &start])
        .args(["--done", "aggfix:req__done", "--by", "arg1", "--fold"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in the kernel"), "{err}");
}
