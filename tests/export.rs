//! `usdtop export`, run as the real binary against the real aggfix fixture and scraped by a real
//! Prometheus: what Prometheus stores is what the probes did.

mod common;

use common::aggfix::AggFix;
use common::php::PhpServer;
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
fn prometheus_stores_the_hits_and_latency_quantiles_native_and_classic_agreeing() {
    // 60 requests keyed /a, /b, /c in turn, sleeping 5, 10 and 15 ms.
    let mut fix = AggFix::start(&["pairs", "60", "5000"]);
    let args = aggfix_pair(&fix);
    let (exporter, addr) = export(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // One asks for the text exposition (classic buckets), the other for protobuf (native).
    let classic = Prometheus::start(&addr);
    let native = Prometheus::start_native(&addr);
    fix.go();
    fix.wait_for("fired 60");

    classic.wait_until("showing all 60 requests", |p| {
        p.value(r#"usdt_probe_hits_total{probe="req__start"}"#) == Some(60.0)
    });
    assert_eq!(
        classic.value(r#"usdt_probe_hits_total{probe="req__done"}"#),
        Some(60.0)
    );
    classic.wait_until("showing all 60 latencies", |p| {
        p.value("sum(usdt_latency_seconds_count)") == Some(60.0)
    });
    native.wait_until("showing all 60 latencies as native histograms", |p| {
        p.value("sum(histogram_count(usdt_latency_seconds))") == Some(60.0)
    });
    for (key, ms) in [("/a", 5.0), ("/b", 10.0), ("/c", 15.0)] {
        let series = format!(r#"{{pair="aggfix:req__start",key="{key}"}}"#);
        let p50 = median_ms(
            &classic,
            &format!("usdt_latency_seconds_bucket{series}"),
            ms,
        );
        let native_p50 = median_ms(&native, &format!("usdt_latency_seconds{series}"), ms);
        // Both within the kernel bucket that holds the median: native at its midpoint (within
        // one native bucket, 2.2 %), classic interpolated anywhere in it (12.5 % wide at most).
        assert!(
            (native_p50 - p50).abs() <= p50 * (0.125 + 0.022),
            "native p50 {native_p50} ms and classic p50 {p50} ms of {key} differ by more than \
             a bucket"
        );
    }
    assert_eq!(classic.value("usdtop_ring_drops_total"), Some(0.0));
    assert_eq!(classic.value("usdtop_attached_sites"), Some(3.0));
    assert_eq!(classic.value("usdtop_build_info"), Some(1.0));
    assert_eq!(
        native.value("usdtop_config_last_reload_successful"),
        Some(1.0)
    );
    drop(exporter);
}

/// The median of `histogram` in ms, checked against sleeps of `ms`: a kernel bucket is 1/8 of
/// a power of two wide, so the median of sleeps of `ms` (a little longer in fact) is within one
/// bucket below and at most half as much again above.
fn median_ms(prometheus: &Prometheus, histogram: &str, ms: f64) -> f64 {
    let q = format!("histogram_quantile(0.5, {histogram})");
    let p50 = prometheus.value(&q).expect("a median") * 1000.0;
    assert!(
        p50 > ms * 7.0 / 8.0 && p50 < ms * 1.5,
        "{q} is {p50} ms, the sleeps {ms} ms"
    );
    p50
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
fn export_outlives_its_targets_picks_up_later_ones_serves_healthz_goes_on_after_sighup_and_ends_with_0_on_sigterm(
) {
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
    // SIGHUP reloads (there is no file here): it never stops an exporter.
    let mut exporter = exporter;
    exporter.signal(libc::SIGHUP);
    exporter.wait_for("there is no -c file to reload; serving on");
    assert_eq!(get(&addr, "/healthz").map(|r| r.0), Some(200));
    exporter.signal(libc::SIGTERM);
    let (status, said) = exporter.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{said:?}");
}

#[test]
fn export_refuses_what_cannot_be_aggregated_in_the_kernel() {
    let fix = AggFix::start(&["pairs", "1", "0"]);
    let tick = format!("{}:aggfix:tick", fix.path().display());
    // An integer key: the kernel keys by string only.
    let out = usdtop(&[
        "export",
        "--listen",
        "127.0.0.1:0",
        "--count",
        &tick,
        "--by",
        "arg0:int",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in the kernel"), "{err}");
}

fn usdtop(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(args)
        .output()
        .unwrap()
}

/// The value of the series `series` (name and labels as served) in the exporter's /metrics.
fn sample(addr: &str, series: &str) -> Option<f64> {
    let (status, body) = get(addr, "/metrics")?;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Polls /metrics (every 100 ms, for at most a minute) until `ok` holds for it.
fn wait_metrics(addr: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = get(addr, "/metrics").map(|r| r.1).unwrap_or_default();
        if ok(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics never showed {what}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_the_file_keeping_counters_of_kept_probes_detaching_removed_and_adding_new() {
    // Ticks at 1000/s for two minutes, and requests (1 to 3 ms) from a second process.
    let mut ticks = AggFix::start(&["rate", "1000", "120"]);
    let path = ticks.path().display().to_string();
    let dir = common::build::TempDir::new("export-reload");
    let config = dir.path().join("usdtop.toml");
    let tick_table = format!("[[count]]\nprobe = \"{path}:aggfix:tick\"\nby = \"arg1\"\n");
    std::fs::write(
        &config,
        format!(
            "{tick_table}\n[[latency]]\nstart = \"{path}:aggfix:req__start\"\n\
             done = \"aggfix:req__done\"\nby = \"arg1\"\n"
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let (mut exporter, addr) = export(&["-c", &config_arg]);
    let prometheus = Prometheus::start(&addr);
    ticks.go();
    let _requests = Killed(
        std::process::Command::new(ticks.path())
            .args(["pairs", "1000000", "1000", "--no-wait"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tick_hits = r#"usdt_probe_hits_total{object=""#.to_string();
    let tick_series = format!(r#"{tick_hits}{path}",provider="aggfix",probe="tick"}}"#);
    wait_metrics(&addr, "ticks and latencies", |m| {
        m.contains(r#"usdt_latency_seconds_count{pair="aggfix:req__start",key="/a"}"#)
            && m.contains(r#"usdt_probe_key_hits_total{probe="aggfix:tick",key="/b"}"#)
    });
    prometheus.wait_until("scraping the ticks", |p| {
        p.value(r#"usdt_probe_hits_total{probe="tick"}"#)
            .is_some_and(|n| n > 0.0)
    });
    let before = sample(&addr, &tick_series).expect("tick hits");

    // The pair goes, the ticks stay, the starts are counted by key instead.
    std::fs::write(
        &config,
        format!("{tick_table}\n[[count]]\nprobe = \"{path}:aggfix:req__start\"\nby = \"arg1\"\n"),
    )
    .unwrap();
    exporter.signal(libc::SIGHUP);
    let said = exporter.wait_for("reloaded");
    assert!(
        said.ends_with("1 probe(s) kept, 1 attached, 1 detached"),
        "{said}"
    );
    let m = get(&addr, "/metrics").unwrap().1;
    assert!(!m.contains("usdt_latency_seconds_count{"), "{m}");
    assert!(!m.contains(r#"probe="req__done""#), "{m}");
    let after = sample(&addr, &tick_series).expect("tick hits after the reload");
    assert!(after >= before, "tick hits went from {before} to {after}");
    wait_metrics(&addr, "the starts counted by key", |m| {
        m.contains(r#"usdt_probe_key_hits_total{probe="aggfix:req__start",key="/a"}"#)
    });
    wait_metrics(&addr, "ticks still counted", |_| {
        sample(&addr, &tick_series).is_some_and(|n| n > after + 100.0)
    });
    prometheus.wait_until("scraping the counted starts", |p| {
        p.value(r#"sum(usdt_probe_key_hits_total{probe="aggfix:req__start"})"#)
            .is_some_and(|n| n > 0.0)
    });
    // Prometheus saw the kept counters only grow.
    assert_eq!(
        prometheus.value(r#"resets(usdt_probe_hits_total{probe="tick"}[10m])"#),
        Some(0.0)
    );
    assert_eq!(
        prometheus.value(r#"sum(resets(usdt_probe_key_hits_total{probe="aggfix:tick"}[10m]))"#),
        Some(0.0)
    );

    // A broken file: the running configuration stays, and says why.
    std::fs::write(&config, format!("{tick_table}\n[[count]]\nprobe = 3\n")).unwrap();
    exporter.signal(libc::SIGHUP);
    let said = exporter.wait_for("failed");
    assert!(
        said.contains("usdtop.toml:6:9: invalid type: integer `3`, expected a string"),
        "{said}"
    );
    assert_eq!(
        sample(&addr, "usdtop_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        sample(&addr, "usdtop_config_reload_failures_total"),
        Some(1.0)
    );
    let m = get(&addr, "/metrics").unwrap().1;
    assert!(
        m.contains(r#"usdt_probe_key_hits_total{probe="aggfix:req__start",key="/a"}"#),
        "{m}"
    );
    exporter.signal(libc::SIGTERM);
    let (status, said) = exporter.exit_within(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{said:?}");
}

#[test]
fn a_wrong_file_stops_export_at_start_with_status_2_naming_the_line() {
    let dir = common::build::TempDir::new("export-bad");
    let config = dir.path().join("usdtop.toml");
    for (text, said) in [
        (
            "listen = \"127.0.0.1:0\"\n[[latency]]\nstrat = \"a:b\"\n",
            "usdtop.toml:3:1: unknown field `strat`",
        ),
        (
            "listen = \"127.0.0.1:0\"\n\n[[count]]\nprobe = \"/usr/bin/true:nosuch:probe\"\nby = \"arg1\"\n",
            "usdtop.toml:3: no probe matches",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = usdtop(&["export", "-c", &config.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{err}");
    }
}

#[test]
fn several_pids_are_served_together_and_fold_groups_their_keys_by_shape() {
    let php = common::php::php_binary();
    let (a, b, stranger) = (
        PhpServer::start(&php, 1),
        PhpServer::start(&php, 1),
        PhpServer::start(&php, 1),
    );
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let (exporter, addr) = export(&[
        "-p",
        &pa,
        "-p",
        &pb,
        "--latency",
        "php:request__startup",
        "--fold",
    ]);
    for i in 1..=4 {
        a.get(&format!("/users/{i}"));
        b.get(&format!("/users/{}", 100 + i));
    }
    b.get("/about");
    // Not one of the -p processes: not counted.
    stranger.get("/users/7");
    let folded = r#"usdt_latency_seconds_count{pair="php:request__startup",key="/users/N"}"#;
    wait_metrics(&addr, "8 requests of /users/N", |_| {
        sample(&addr, folded) == Some(8.0)
    });
    let about = r#"usdt_latency_seconds_count{pair="php:request__startup",key="/about"}"#;
    wait_metrics(&addr, "/about", |_| sample(&addr, about) == Some(1.0));
    let m = get(&addr, "/metrics").unwrap().1;
    let keys = m
        .lines()
        .filter(|l| l.starts_with("usdt_latency_seconds_count{"))
        .count();
    assert_eq!(keys, 2, "{m}");
    assert_eq!(
        sample(
            &addr,
            r#"usdt_probe_hits_total{object="/usr/bin/php8.2",provider="php",probe="request__startup"}"#
        ),
        Some(9.0),
        "{m}"
    );
    drop(exporter);
}

#[test]
fn with_max_overhead_a_busy_probe_is_attached_only_part_of_the_time_and_says_for_how_long() {
    // 200,000 ticks a second cost far more than 0.5 % of the CPU: the exporter attaches the
    // probe for slices and serves how long it was attached.
    let mut fix = AggFix::start(&["rate", "200000", "30"]);
    let probe = format!("{}:aggfix:tick", fix.path().display());
    let args = ["--count", &probe, "--by", "arg1", "--max-overhead", "0.5"];
    let (exporter, addr) = export(&args);
    fix.go();
    let body = wait_metrics(&addr, "usdtop_attached_seconds_total", |b| {
        b.contains("usdtop_attached_seconds_total{probe=\"aggfix:tick\"}")
    });
    assert!(body.contains("usdtop_attached_seconds"), "{body}");
    std::thread::sleep(Duration::from_secs(4));
    let began = std::time::Instant::now();
    let attached = sample(
        &addr,
        "usdtop_attached_seconds_total{probe=\"aggfix:tick\"}",
    )
    .expect("attached seconds served");
    // Up to about 5 s since the attach; a budget this small keeps it out most of the time.
    assert!(
        attached > 0.0 && attached < 3.0,
        "attached {attached} s of about {} s",
        4.0 + began.elapsed().as_secs_f64()
    );
    drop(exporter);
}
