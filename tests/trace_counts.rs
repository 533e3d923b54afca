//! Exact accounting: every firing is either an event or a counted drop, never lost unseen.

mod common;

use common::fixture::FixtureBin;
use common::{collect_until, drain, engine_and_events};
use std::time::Duration;
use usdtop::probes::tracing::engine::{AttachOptions, Engine, EngineOptions, ProcFilter};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::{read_probes, ArgValue, Event, ObjectProbes, Probe};

const N: u64 = 100_000;

/// The compiled fixture and its probes as usdtop reads them.
fn fixture() -> (FixtureBin, ObjectProbes) {
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    (bin, object)
}

fn probe<'a>(object: &'a ObjectProbes, name: &str) -> &'a Probe {
    object.probes.iter().find(|p| p.name == name).unwrap()
}

/// Attach options that admit only process `pid`.
fn only(pid: u32) -> AttachOptions {
    AttachOptions {
        filter: ProcFilter::Pids(vec![pid]),
        ..Default::default()
    }
}

/// Every batch already on the channel (after `Engine::sync`, all that was fired).
fn received(events: &mut EventStream) -> Vec<Event> {
    let mut got = Vec::new();
    while let Some(batch) = events.try_recv() {
        got.extend(batch);
    }
    got
}

#[test]
fn n_firings_are_exactly_n_events_in_order() {
    n_firings_are_n_events(engine_and_events());
}

#[test]
fn n_firings_are_exactly_n_events_in_order_on_the_per_site_path_too() {
    let mut engine = Engine::new(EngineOptions {
        force_per_site: true,
        ..EngineOptions::default()
    })
    .unwrap();
    let events = engine.take_events().unwrap();
    n_firings_are_n_events((engine, events));
}

fn n_firings_are_n_events((mut engine, mut events): (Engine, EventStream)) {
    let (bin, object) = fixture();
    let probe = probe(&object, "tick");
    let mut fixture = bin.start("count", N);
    let options = AttachOptions {
        strings: vec![1],
        ..only(fixture.pid())
    };
    let id = engine.attach(&object, probe, &options).unwrap();
    let pid = fixture.pid();
    fixture.go();
    // The process has exited: sync makes every event it fired reach the channel.
    assert!(engine.sync(Duration::from_secs(5)));
    let got = received(&mut events);
    let stats = engine.stats();
    assert_eq!(stats.drops, 0);
    assert_eq!(got.len() as u64, N);
    assert_eq!(stats.probes[0].id, id);
    assert_eq!(stats.probes[0].hits, N);
    for (i, e) in got.iter().enumerate() {
        assert_eq!((e.pid, e.tid, e.comm.as_str()), (pid, pid, "usdt_fixture"));
        assert_eq!(
            e.args,
            vec![ArgValue::signed(i as i64), ArgValue::Str("tick".into())]
        );
    }
}

#[test]
fn a_full_ring_buffer_counts_every_dropped_event() {
    let (bin, object) = fixture();
    let probe = probe(&object, "tick");
    let mut fixture = bin.start("count", N);
    // One page of ring buffer holds a few dozen events: a burst must overflow it.
    let mut engine = Engine::new(EngineOptions {
        ring_bytes: Some(4096),
        ..Default::default()
    })
    .unwrap();
    let mut events = engine.take_events().unwrap();
    let options = AttachOptions {
        strings: vec![1],
        ..only(fixture.pid())
    };
    engine.attach(&object, probe, &options).unwrap();
    fixture.go();
    let got = drain(&mut events, Duration::from_millis(300));
    let stats = engine.stats();
    assert_eq!(stats.probes[0].hits, N);
    assert!(
        stats.drops > 0,
        "a 4 KiB ring cannot hold a {N}-event burst"
    );
    assert_eq!(
        got.len() as u64 + stats.drops,
        N,
        "events + drops = firings"
    );
    assert_eq!(stats.events, got.len() as u64);
}

#[test]
fn other_processes_are_filtered_out_and_detach_stops_events() {
    let (bin, object) = fixture();
    let probe = probe(&object, "tick");
    let mut traced = bin.start("count", 10);
    let mut other = bin.start("count", 10);
    let (mut engine, mut events) = engine_and_events();
    let options = only(traced.pid());
    let id = engine.attach(&object, probe, &options).unwrap();
    let traced_pid = traced.pid();
    other.go();
    traced.go();
    let got = collect_until(&mut events, |e| e.len() >= 10);
    let late = drain(&mut events, Duration::from_millis(100));
    assert_eq!(got.len() + late.len(), 10);
    assert!(got.iter().all(|e| e.pid == traced_pid));

    engine.detach(id).unwrap();
    let mut after = bin.start("count", 10);
    after.go();
    assert!(drain(&mut events, Duration::from_millis(100)).is_empty());
    assert!(engine.stats().probes.is_empty());
}

#[test]
fn a_semaphore_guarded_probe_fires_only_while_attached() {
    let (bin, object) = fixture();
    let probe = probe(&object, "guarded");
    let (mut engine, mut events) = engine_and_events();
    let mut fixture = bin.start("guarded", 50);
    let options = only(fixture.pid());
    engine.attach(&object, probe, &options).unwrap();
    fixture.go();
    let got = collect_until(&mut events, |e| e.len() >= 50);
    assert_eq!(
        got.len(),
        50,
        "the program sees its semaphore raised and fires"
    );
}

#[test]
fn count_mode_counts_every_hit_in_the_kernel_and_streams_nothing() {
    let (bin, object) = fixture();
    let probe = probe(&object, "tick");
    let mut fixture = bin.start("count", N);
    let (mut engine, mut events) = engine_and_events();
    let options = AttachOptions {
        mode: usdtop::probes::tracing::bpf::Mode::Count,
        ..only(fixture.pid())
    };
    engine.attach(&object, probe, &options).unwrap();
    fixture.go();
    assert!(engine.sync(Duration::from_secs(5)));
    assert!(events.try_recv().is_none(), "no events in count mode");
    assert_eq!(engine.stats().probes[0].hits, N);
}

#[test]
fn many_attachments_filtering_on_the_same_process_share_one_filter() {
    let (bin, object) = fixture();
    let probe = probe(&object, "tick");
    let mut fixture = bin.start("count", 10);
    let (mut engine, mut events) = engine_and_events();
    let options = only(fixture.pid());
    // More than the 64 distinct filters the kernel side can hold.
    let ids: Vec<_> = (0..65)
        .map(|_| engine.attach(&object, probe, &options).unwrap())
        .collect();
    for id in &ids[1..] {
        engine.detach(*id).unwrap();
    }
    fixture.go();
    assert!(engine.sync(Duration::from_secs(5)));
    let got = received(&mut events);
    assert_eq!(
        got.len(),
        10,
        "the one attachment left still admits the process"
    );
}
