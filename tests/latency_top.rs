//! `usdtop latency` and `usdtop top`, run as the real binary against real probes: the aggfix
//! fixture, PHP's built-in server and PostgreSQL. Counts must equal the requests made; latencies
//! must agree with what the workload did (generous bounds: behaviour, not timing precision).

mod common;

use common::aggfix::AggFix;
use common::php::{php_binary, PhpServer};
use common::postgres::{postgres_binary, Postgres};
use common::tracer::Tracer;
use common::{row, u, MS};
use serde_json::Value;

/// How the fixture run ends: it finishes its requests, or is killed once it has fired.
enum End {
    Finish,
    Kill,
}

/// Runs aggfix with `fixture_args` under `usdtop COMMAND -p PID PROBES... --json`, where
/// `usdtop_args` are COMMAND and PROBES (and options); returns the reports usdtop printed once
/// it ended by itself because the fixture had exited.
fn reports(fixture_args: &[&str], usdtop_args: &[&str], end: End) -> Vec<Value> {
    let mut fx = AggFix::start(fixture_args);
    let pid = fx.pid().to_string();
    let mut args = vec![usdtop_args[0], "-p", &pid];
    args.extend_from_slice(&usdtop_args[1..]);
    args.push("--json");
    let tracer = Tracer::start(&args);
    fx.go();
    fx.wait_for("fired");
    match end {
        End::Finish => fx.wait(),
        End::Kill => fx.kill(),
    }
    tracer.json()
}

/// `usdtop latency` of the fixture's req__start -> req__done pair, with `options`.
fn latency(fixture_args: &[&str], options: &[&str], end: End) -> Vec<Value> {
    let mut args = vec!["latency", "aggfix:req__start", "aggfix:req__done"];
    args.extend_from_slice(options);
    reports(fixture_args, &args, end)
}

#[test]
fn latency_counts_every_fixture_request_and_splits_it_by_label() {
    // 150 requests: /a sleeps 1 ms, /b 2 ms, /c 3 ms.
    // usdtop ends by itself once the traced process has exited.
    let reports = latency(&["pairs", "150", "1000"], &["--by", "arg1"], End::Finish);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(u(r, "count"), 150);
    assert_eq!(u(&r["pairing"], "unmatched_done"), 0);
    assert_eq!(u(&r["pairing"], "open"), 0);
    assert_eq!(u(r, "drops"), 0);
    let bucket_total: u64 = r["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(bucket_total, 150, "every sample is in a bucket");
    for (label, ms) in [("/a", 1), ("/b", 2), ("/c", 3)] {
        let row = row(&r["by"], label);
        assert_eq!(u(row, "count"), 50, "{label}");
        let p50 = u(row, "p50_ns");
        assert!(
            p50 >= ms * MS && p50 < ms * MS + 20 * MS,
            "{label}: p50 {p50} ns for a {ms} ms sleep"
        );
    }
}

#[test]
fn latency_can_pair_by_a_key_argument_instead_of_by_thread() {
    let r = &latency(&["pairs", "60", "200"], &["--key", "arg0"], End::Finish)[0];
    assert_eq!(u(r, "count"), 60);
    assert_eq!(u(&r["pairing"], "bad_key"), 0);
}

#[test]
fn starts_whose_done_never_comes_leave_the_start_table_bounded() {
    // 5000 requests start, none finishes, then the process is killed mid-request.
    let r = &latency(
        &["orphans", "5000"],
        &["--key", "arg0", "--mode", "stream", "--max-open", "1000"],
        End::Kill,
    )[0];
    assert_eq!(u(r, "count"), 0, "no latency is invented");
    assert_eq!(u(&r["pairing"], "starts"), 5000);
    assert_eq!(u(&r["pairing"], "open"), 1000, "bounded by --max-open");
    assert_eq!(u(&r["pairing"], "evicted"), 4000, "and the rest counted");
}

#[test]
fn kernel_aggregates_equal_the_figures_from_the_streamed_events() {
    // Every request is also streamed (--sample 1), so user space pairs the same requests.
    let r = &latency(
        &["pairs", "240", "500"],
        &["--mode", "kernel", "--sample", "1"],
        End::Finish,
    )[0];
    assert_eq!(r["mode"], "kernel");
    let streamed = &r["streamed"];
    assert_eq!(u(r, "count"), 240);
    assert_eq!(u(streamed, "count"), 240);
    assert_eq!(u(&r["pairing"], "matched"), 240);
    assert_eq!(u(&r["pairing"], "unmatched_done"), 0);
    // Kernel buckets are 1/8 of a power of two wide: percentiles agree to that resolution.
    for p in ["p50_ns", "p90_ns", "p99_ns"] {
        let (k, s) = (u(r, p), u(streamed, p));
        assert!(
            k.abs_diff(s) <= s / 8 + 50_000,
            "{p}: kernel {k} ns vs streamed {s} ns"
        );
    }
    let mean_k = r["mean_ns"].as_f64().unwrap();
    let mean_s = streamed["mean_ns"].as_f64().unwrap();
    assert!(
        (mean_k - mean_s).abs() < mean_s * 0.02,
        "{mean_k} vs {mean_s}"
    );
}

#[test]
fn in_the_kernel_starts_whose_done_never_comes_stay_bounded_by_the_lru_map() {
    let r = &latency(
        &["orphans", "70000"],
        &["--key", "arg0", "--mode", "kernel", "--sample", "0"],
        End::Kill,
    )[0];
    let p = &r["pairing"];
    assert_eq!(u(r, "count"), 0);
    assert_eq!(u(p, "starts"), 70000);
    assert!(u(p, "open") <= 65536, "{p}");
    assert_eq!(u(p, "open") + u(p, "evicted"), 70000, "{p}");
}

#[test]
fn auto_mode_samples_the_stream_of_a_hot_pair_but_counts_every_request() {
    let r = &latency(&["pairs", "1000000", "0"], &["--by", "arg1"], End::Finish)[0];
    assert_eq!(r["mode"], "kernel");
    assert_eq!(u(r, "count"), 1_000_000, "the kernel counts every request");
    // The sampling rate falls back once the burst is over, so look at what was streamed.
    let streamed = u(&r["streamed"], "count");
    assert!(
        streamed > 0 && streamed < 1_000_000,
        "the stream was sampled: {r}"
    );
}

#[test]
fn auto_mode_without_a_by_table_streams_nothing() {
    let r = &latency(&["pairs", "100000", "0"], &[], End::Finish)[0];
    assert_eq!(r["mode"], "kernel");
    assert_eq!(u(r, "count"), 100_000);
    assert_eq!(
        (u(r, "sample_every"), u(&r["streamed"], "count")),
        (0, 0),
        "{r}"
    );
}

#[test]
fn top_counts_each_label_of_the_fixture() {
    let r = &reports(
        &["pairs", "300", "0"],
        &["top", "aggfix:req__start", "--by", "arg1"],
        End::Finish,
    )[0];
    assert_eq!(u(r, "total"), 300);
    for label in ["/a", "/b", "/c"] {
        let row = row(&r["rows"], label);
        assert_eq!(u(row, "count"), 100, "{label}");
        assert!(row["rate_per_s"].as_f64().unwrap() > 0.0);
    }
}

/// `usdtop top aggfix:tick --by arg1` over `loop N`, counted where `mode` says.
fn tick_top(n: &str, mode: &str) -> Value {
    let r = reports(
        &["loop", n],
        &["top", "aggfix:tick", "--by", "arg1", "--mode", mode],
        End::Finish,
    );
    r[0].clone()
}

#[test]
fn kernel_top_counts_each_label_the_fixture_fired() {
    let r = tick_top("30000", "kernel");
    assert_eq!(r["mode"], "kernel");
    assert_eq!(u(&r, "events"), 0, "nothing was streamed: {r}");
    assert_eq!(u(&r, "total"), 30_000);
    for label in ["/a", "/b", "/c"] {
        let row = row(&r["rows"], label);
        assert_eq!(u(row, "count"), 10_000, "{label}");
        assert!(row["rate_per_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(u(&r, "unreadable"), 0);
    assert_eq!(u(&r, "kernel_overflow"), 0);
    assert_eq!(u(&r["other"], "count"), 0);
}

#[test]
fn kernel_and_streamed_top_report_the_same_rows() {
    let kernel = tick_top("9000", "kernel");
    let stream = tick_top("9000", "stream");
    assert_eq!(
        (&kernel["mode"], &stream["mode"]),
        (&"kernel".into(), &"stream".into())
    );
    assert_eq!(u(&kernel, "total"), u(&stream, "total"));
    for label in ["/a", "/b", "/c"] {
        assert_eq!(
            u(row(&kernel["rows"], label), "count"),
            u(row(&stream["rows"], label), "count"),
            "{label}"
        );
    }
}

#[test]
fn kernel_top_counts_thousands_of_keys_exactly_and_marks_cut_ones() {
    // 2500 keys: more than the kernel's 1024-entry fast table, so keys are counted both there
    // and in the hash map behind it; every 5th key is longer than the 63 bytes kept.
    let r = &reports(
        &["keys", "20000", "2500"],
        &[
            "top",
            "aggfix:tick",
            "--by",
            "arg1",
            "--mode",
            "kernel",
            "--limit",
            "5000",
        ],
        End::Finish,
    )[0];
    assert_eq!(r["mode"], "kernel");
    assert_eq!(u(r, "total"), 20_000);
    assert_eq!(u(r, "kernel_overflow"), 0);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2500);
    for row in rows {
        assert_eq!(u(row, "count"), 8, "{row}");
    }
    let cut = rows
        .iter()
        .filter(|row| row["key"].as_str().unwrap().ends_with('…'))
        .count();
    assert_eq!(cut, 500, "every 5th key is cut and marked");
}

#[test]
fn top_groups_integer_keys_in_user_space_and_says_so_when_kernel_is_asked() {
    let r = &reports(
        &["pairs", "30", "0"],
        &["top", "aggfix:req__start", "--by", "arg0:int"],
        End::Finish,
    )[0];
    assert_eq!(r["mode"], "stream", "auto falls back to streaming");
    assert_eq!(u(r, "total"), 30);
    let err = refused(&["top", "aggfix:req__start", "--by", "arg0:int"]);
    assert!(
        err.contains("cannot count aggfix:req__start in the kernel"),
        "{err}"
    );
}

/// Runs `usdtop ARGS --mode kernel`, which must fail before tracing; returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(args)
        .args(["--mode", "kernel"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `usdtop top` of the fixture's req__start by label, with latency to req__done, plus `options`.
fn latency_top(fixture_args: &[&str], options: &[&str], end: End) -> Value {
    latency_top_reports(fixture_args, options, end)[0].clone()
}

/// As [`latency_top`], every report.
fn latency_top_reports(fixture_args: &[&str], options: &[&str], end: End) -> Vec<Value> {
    let mut args = vec![
        "top",
        "aggfix:req__start",
        "--done",
        "aggfix:req__done",
        "--by",
        "arg1",
    ];
    args.extend_from_slice(options);
    reports(fixture_args, &args, end)
}

#[test]
fn kernel_top_with_latency_counts_the_same_requests_as_the_stream_and_the_fixture() {
    // 150 requests: /a sleeps 1 ms, /b 2 ms, /c 3 ms. Auto mode pairs a string key in the kernel.
    let kernel = latency_top(&["pairs", "150", "1000"], &[], End::Finish);
    let stream = latency_top(
        &["pairs", "150", "1000"],
        &["--mode", "stream"],
        End::Finish,
    );
    assert_eq!(kernel["mode"], "kernel", "{kernel}");
    assert_eq!(stream["mode"], "stream");
    assert_eq!(u(&kernel, "events"), 0, "nothing was streamed: {kernel}");
    assert_eq!(kernel["done"], "aggfix:req__done");
    for r in [&kernel, &stream] {
        assert_eq!(u(r, "total"), 150, "{r}");
        let p = &r["pairing"];
        assert_eq!(
            (
                u(p, "starts"),
                u(p, "matched"),
                u(p, "unmatched_done"),
                u(p, "open")
            ),
            (150, 150, 0, 0),
            "{p}"
        );
        assert_eq!(u(r, "unreadable"), 0);
    }
    for (label, ms) in [("/a", 1), ("/b", 2), ("/c", 3)] {
        let (k, s) = (row(&kernel["rows"], label), row(&stream["rows"], label));
        assert_eq!((u(k, "count"), u(s, "count")), (50, 50), "{label}");
        // Kernel buckets are 1/8 of a power of two wide (midpoints within 1/16, plus the
        // table's 1 % histograms).
        let p50 = u(k, "p50_ns");
        assert!(
            p50 >= ms * MS * 14 / 16 && p50 < ms * MS + 20 * MS,
            "{label}: p50 {p50} ns for a {ms} ms sleep"
        );
        let sp50 = u(s, "p50_ns");
        assert!(
            p50.abs_diff(sp50) <= sp50 / 8 + 200_000,
            "{label}: kernel {p50} vs {sp50}"
        );
        assert!(u(k, "p99_ns") >= p50);
    }
}

#[test]
fn kernel_top_with_latency_reports_each_interval_once() {
    // About 0.6 s of requests, reported every 0.15 s: each request is in exactly one report.
    let reports = latency_top_reports(
        &["pairs", "300", "1000"],
        &["--mode", "kernel", "--interval", "0.15"],
        End::Finish,
    );
    assert!(reports.len() >= 3, "{reports:?}");
    let total: u64 = reports.iter().map(|r| u(r, "total")).sum();
    assert_eq!(total, 300, "{reports:?}");
    let a: u64 = reports
        .iter()
        .filter_map(|r| r["rows"].as_array())
        .flatten()
        .filter(|row| row["key"] == "/a")
        .map(|row| u(row, "count"))
        .sum();
    assert_eq!(a, 100);
}

#[test]
fn kernel_top_with_latency_can_pair_by_a_key_argument() {
    let r = latency_top(
        &["pairs", "60", "200"],
        &["--key", "arg0", "--mode", "kernel"],
        End::Finish,
    );
    assert_eq!(r["mode"], "kernel");
    assert_eq!(u(&r, "total"), 60, "{r}");
    assert_eq!(u(&r["pairing"], "unmatched_done"), 0);
    for label in ["/a", "/b", "/c"] {
        let row = row(&r["rows"], label);
        assert_eq!(u(row, "count"), 20, "{label}");
        assert!(u(row, "p50_ns") > 0);
    }
}

#[test]
fn kernel_top_requests_whose_done_never_comes_stay_bounded_by_the_lru_map() {
    // 20000 requests start with distinct ids, none finishes; the process is killed.
    let r = latency_top(
        &["orphans", "20000"],
        &["--key", "arg0", "--mode", "kernel"],
        End::Kill,
    );
    let p = &r["pairing"];
    assert_eq!(u(&r, "total"), 0, "no request is invented: {r}");
    assert_eq!(u(p, "starts"), 20000);
    assert!(u(p, "open") <= 16384, "{p}");
    assert_eq!(u(p, "open") + u(p, "evicted"), 20000, "{p}");
}

#[test]
fn kernel_top_refuses_a_call_shaped_pair_keyed_by_an_argument() {
    // Calls are paired on each thread's stack (tests/latency_calls.rs); a --key cannot apply.
    let err = refused(&[
        "top",
        "python:function__entry",
        "--by",
        "arg1",
        "--key",
        "arg2",
    ]);
    assert!(err.contains("not by --key"), "{err}");
}

#[test]
fn php_request_latency_matches_what_the_client_measured() {
    let php = php_binary();
    let server = PhpServer::start(&php, 1);
    let pid = server.pid().to_string();
    let tracer = Tracer::start(&[
        "latency",
        "-p",
        &pid,
        "php:request__startup",
        "--by",
        "uri",
        "--json",
    ]);
    let mut slowest_client = std::time::Duration::ZERO;
    for _ in 0..20 {
        slowest_client = slowest_client.max(server.timed_get("/slow?ms=5").1);
    }
    for _ in 0..10 {
        server.get("/fast");
    }
    let r = &tracer.interrupt_json()[0];
    assert_eq!(u(r, "count"), 30, "{r}");
    let slow = row(&r["by"], "/slow?ms=5");
    assert_eq!(u(slow, "count"), 20);
    let p50 = u(slow, "p50_ns");
    assert!(p50 >= 5 * MS, "the server slept 5 ms; p50 {p50} ns");
    assert!(
        u(slow, "p99_ns") <= slowest_client.as_nanos() as u64 + MS,
        "the server cannot take longer than the client waited ({slowest_client:?}): {slow}"
    );
    let fast = row(&r["by"], "/fast");
    assert_eq!(u(fast, "count"), 10);
    assert!(u(fast, "p50_ns") < 5 * MS, "{fast}");
}

#[test]
fn php_top_ranks_uris_by_requests_with_latency_from_the_catalog_pair() {
    let php = php_binary();
    let server = PhpServer::start(&php, 1);
    let pid = server.pid().to_string();
    let tracer = Tracer::start(&["top", "-p", &pid, "php:request__startup", "--json"]);
    for _ in 0..12 {
        server.get("/slow?ms=5");
    }
    for _ in 0..4 {
        server.get("/other");
    }
    let r = &tracer.interrupt_json()[0];
    assert_eq!(u(r, "total"), 16, "{r}");
    assert_eq!(r["rows"][0]["key"], "/slow?ms=5", "most requested first");
    assert_eq!(u(&r["rows"][0], "count"), 12);
    assert!(u(&r["rows"][0], "p50_ns") >= 5 * MS);
    assert_eq!(u(row(&r["rows"], "/other"), "count"), 4);
}

#[test]
fn postgres_query_latency_and_top_count_the_queries_pgbench_ran() {
    postgres_binary();
    let pg = Postgres::start();
    let pid = pg.postmaster_pid().to_string();
    let script = pg.script("sleep.sql", "SELECT pg_sleep(0.005);\n");
    let script = script.to_str().unwrap();
    // --exact-forks: pgbench's backends are forked after the attach and run their first
    // queries within the ~15 ms a per-process link may take.
    let latency = Tracer::start(&[
        "latency",
        "-p",
        &pid,
        "--exact-forks",
        "postgresql:query__start",
        "--by",
        "query",
        "--json",
    ]);
    let top = Tracer::start(&[
        "top",
        "-p",
        &pid,
        "--exact-forks",
        "postgresql:query__start",
        "--json",
    ]);
    pg.pgbench(&["-c", "2", "-t", "15", "-f", script]);
    let lat = &latency.interrupt_json()[0];
    let top = &top.interrupt_json()[0];

    let q = row(&lat["by"], "SELECT pg_sleep(0.005);");
    assert_eq!(u(q, "count"), 30, "2 clients x 15 transactions: {lat}");
    let p50 = u(q, "p50_ns");
    assert!(
        (5 * MS..500 * MS).contains(&p50),
        "pg_sleep(0.005): p50 {p50} ns"
    );
    assert_eq!(u(&lat["pairing"], "unmatched_done"), 0);
    assert_eq!(u(row(&top["rows"], "SELECT pg_sleep(0.005);"), "count"), 30);
}

#[test]
fn top_fold_gives_one_row_per_kind_of_pgbench_statement() {
    postgres_binary();
    let pg = Postgres::start();
    pg.pgbench(&["-i", "-s", "1"]);
    let pid = pg.postmaster_pid().to_string();
    let top = Tracer::start(&[
        "top",
        "-p",
        &pid,
        "--exact-forks",
        "postgresql:query__start",
        "--fold",
        "--json",
    ]);
    // The built-in TPC-B-like script: 7 statements per transaction, each with random values.
    pg.pgbench(&["-c", "2", "-t", "20"]);
    let top = &top.interrupt_json()[0];
    assert_eq!(top["mode"], "stream", "--fold streams in auto mode: {top}");
    for statement in [
        "BEGIN;",
        "UPDATE pgbench_accounts SET abalance = abalance + N WHERE aid = N;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = N;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (N, N, N, N, CURRENT_TIMESTAMP);",
        "END;",
    ] {
        assert_eq!(u(row(&top["rows"], statement), "count"), 40, "{statement}: {top}");
    }
    let rows = top["rows"].as_array().unwrap().len();
    assert!(
        rows < 12,
        "40 transactions fold into a few kinds of statement, not {rows} rows"
    );
}
