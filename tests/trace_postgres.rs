//! PostgreSQL 15 under pgbench: every statement is one `postgresql:query__start` event with
//! its SQL text, including those run by backends forked after the attach.

mod common;

use common::postgres::{postgres_binary, Postgres};
use common::{collect_until, drain, engine_and_events};
use std::time::Duration;
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};
use usdtop::probes::{read_probes, ArgValue};

const TRANSACTIONS: u64 = 50;
const CLIENTS: u64 = 2;

#[test]
fn pgbench_statements_are_query_start_events_with_their_sql() {
    let postgres = postgres_binary();
    let pg = Postgres::start();
    let object = read_probes(&postgres).unwrap();
    let probe = object
        .probes
        .iter()
        .find(|p| p.name == "query__start")
        .unwrap();
    let (mut engine, mut events) = engine_and_events();
    let postmaster = pg.postmaster_pid();
    let options = AttachOptions {
        strings: vec![0],
        // The backends are forked after the attach and run their first statement within the
        // ~15 ms a per-process link may take: count them in BPF to see every one.
        filter: ProcFilter::PidsInBpf(vec![postmaster]),
        ..Default::default()
    };
    engine.attach(&object, probe, &options).unwrap();

    // A script of one marked statement; its backends are forked after the attach.
    let script = pg.script(
        "bench.sql",
        "\\set x random(1, 100000)\nSELECT :x AS usdtop_marker;\n",
    );
    let (t, c) = (TRANSACTIONS.to_string(), CLIENTS.to_string());
    pg.pgbench(&["-f", script.to_str().unwrap(), "-t", &t, "-c", &c]);

    let expected = (TRANSACTIONS * CLIENTS) as usize;
    let marked = |e: &usdtop::probes::Event| matches!(&e.args[0], ArgValue::Str(q) if q.lossy().contains("usdtop_marker"));
    let mut got = collect_until(&mut events, |evs| {
        evs.iter().filter(|e| marked(e)).count() >= expected
    });
    got.extend(drain(&mut events, Duration::from_millis(200)));
    let ours: Vec<_> = got.iter().filter(|e| marked(e)).collect();
    assert_eq!(ours.len(), expected, "one event per statement");
    for e in &ours {
        let ArgValue::Str(q) = &e.args[0] else {
            unreachable!()
        };
        let n: u32 = q
            .lossy()
            .strip_prefix("SELECT ")
            .and_then(|r| r.strip_suffix(" AS usdtop_marker;"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected SQL text {q:?}"));
        assert!((1..=100000).contains(&n));
        assert_ne!(e.pid, postmaster, "statements run in backends");
    }
    let backends: std::collections::HashSet<u32> = ours.iter().map(|e| e.pid).collect();
    assert_eq!(
        backends.len(),
        CLIENTS as usize,
        "one backend per pgbench client"
    );
    assert_eq!(engine.stats().drops, 0);
}
