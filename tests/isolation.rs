//! Only the processes asked for: with `-p`, the breakpoints and the raised semaphores of the
//! uprobe-multi path live in the traced process tree alone, processes it forks later are
//! traced on both attach paths, and a tracer killed with SIGKILL leaves nothing behind.

mod common;

use common::fixture::FixtureBin;
use common::semaphore::{semaphore_value, wait_semaphore};
use common::tracer::Tracer;
use common::{collect_until, drain};
use std::collections::BTreeMap;
use std::time::Duration;
use usdtop::probes::tracing::engine::{
    AttachOptions, AttachPath, Engine, EngineOptions, ProcFilter,
};
use usdtop::probes::tracing::queue::EventStream;
use usdtop::probes::{read_probes, ObjectProbes, Probe};

/// x86-64 `int3`: what a uprobe writes over the probe's `nop` in a process it traps in.
const INT3: u8 = 0xcc;
const NOP: u8 = 0x90;

fn engine(per_site: bool) -> (Engine, EventStream) {
    let mut engine = Engine::new(EngineOptions {
        force_per_site: per_site,
        ..EngineOptions::default()
    })
    .expect("tests run as root with BPF");
    let want_multi = !per_site;
    assert_eq!(
        engine.attach_path() == AttachPath::Multi,
        want_multi,
        "{}",
        engine.attach_path()
    );
    let events = engine.take_events().unwrap();
    (engine, events)
}

fn probe<'a>(object: &'a ObjectProbes, name: &str) -> &'a Probe {
    object.probes.iter().find(|p| p.name == name).unwrap()
}

/// The first byte of the probe's first site in process `pid`: `int3` where it traps.
fn site_byte(pid: u32, object: &ObjectProbes, probe: &Probe) -> u8 {
    let addr = probe.sites[0].addr;
    semaphore_value(pid, &object.path, object.position_independent, addr).to_le_bytes()[0]
}

fn semaphore(pid: u32, object: &ObjectProbes, probe: &Probe) -> u16 {
    let vaddr = probe.semaphore.expect("a guarded probe");
    semaphore_value(pid, &object.path, object.position_independent, vaddr)
}

fn raised(pid: u32, object: &ObjectProbes, probe: &Probe) -> u16 {
    let vaddr = probe.semaphore.expect("a guarded probe");
    wait_semaphore(pid, &object.path, object.position_independent, vaddr, |v| {
        v > 0
    })
}

fn lowered(pid: u32, object: &ObjectProbes, probe: &Probe) -> u16 {
    let vaddr = probe.semaphore.expect("a guarded probe");
    wait_semaphore(pid, &object.path, object.position_independent, vaddr, |v| {
        v == 0
    })
}

/// Attaches `fixture:guarded` for process A with `filter`, while B runs the same binary;
/// returns (A's, B's) site byte and semaphore while attached, and checks both are back after
/// the detach.
fn attached_in_a_and_b(per_site: bool, filter: impl Fn(u32) -> ProcFilter) -> [(u8, u16); 2] {
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    let guarded = probe(&object, "guarded");
    let (a, b) = (bin.start("guarded", 1), bin.start("guarded", 1));
    let (mut engine, _events) = engine(per_site);
    let options = AttachOptions {
        filter: filter(a.pid()),
        ..Default::default()
    };
    let id = engine.attach(&object, guarded, &options).unwrap();
    assert_eq!(raised(a.pid(), &object, guarded), 1);
    let seen = [a.pid(), b.pid()].map(|p| {
        (
            site_byte(p, &object, guarded),
            semaphore(p, &object, guarded),
        )
    });
    engine.detach(id).unwrap();
    for p in [a.pid(), b.pid()] {
        assert_eq!(
            lowered(p, &object, guarded),
            0,
            "semaphore of {p} after the detach"
        );
        assert_eq!(
            site_byte(p, &object, guarded),
            NOP,
            "site of {p} after the detach"
        );
    }
    seen
}

#[test]
fn with_p_an_unrelated_process_running_the_same_file_neither_traps_nor_sees_its_semaphore_raised() {
    let [a, b] = attached_in_a_and_b(false, |a| ProcFilter::Pids(vec![a]));
    assert_eq!(
        a,
        (INT3, 1),
        "the traced process traps, its semaphore raised"
    );
    assert_eq!(b, (NOP, 0), "the unrelated copy is untouched");
}

#[test]
fn exact_forks_and_the_per_site_path_trap_in_every_process_running_the_file() {
    // The documented price of --exact-forks and of the fallback: the filter is in BPF.
    let [a, b] = attached_in_a_and_b(false, |a| ProcFilter::PidsInBpf(vec![a]));
    assert_eq!((a, b), ((INT3, 1), (INT3, 1)));
    let [a, b] = attached_in_a_and_b(true, |a| ProcFilter::Pids(vec![a]));
    assert_eq!((a, b), ((INT3, 1), (INT3, 1)));
}

/// `usdt_fixture fork N` on `path`: the parent, a child and a grandchild forked after the
/// attach each fire N ticks; returns the ticks seen per process.
fn ticks_of_a_forking_process(per_site: bool, n: u64) -> (BTreeMap<u32, u64>, Engine) {
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    let tick = probe(&object, "tick");
    let mut fixture = bin.start("fork", n);
    let (mut engine, mut events) = engine(per_site);
    let options = AttachOptions {
        filter: ProcFilter::Pids(vec![fixture.pid()]),
        ..Default::default()
    };
    engine.attach(&object, tick, &options).unwrap();
    fixture.go();
    let mut got = collect_until(&mut events, |e| e.len() as u64 >= 3 * n);
    got.extend(drain(&mut events, Duration::from_millis(200)));
    let mut per_process = BTreeMap::new();
    for e in got {
        *per_process.entry(e.pid).or_insert(0) += 1;
    }
    (per_process, engine)
}

#[test]
fn processes_forked_after_the_attach_are_traced_with_links_of_their_own() {
    let (per_process, engine) = ticks_of_a_forking_process(false, 1000);
    assert_eq!(
        per_process.values().copied().collect::<Vec<_>>(),
        vec![1000; 3],
        "parent, child and grandchild: {per_process:?}"
    );
    let follow = engine.follow_stats();
    assert_eq!((follow.children, follow.missed), (2, 0), "{follow:?}");
    assert!(follow.worst_window > Duration::ZERO);
}

#[test]
fn processes_forked_after_the_attach_are_traced_on_the_per_site_path_too() {
    let (per_process, _) = ticks_of_a_forking_process(true, 1000);
    assert_eq!(
        per_process.values().copied().collect::<Vec<_>>(),
        vec![1000; 3],
        "parent, child and grandchild: {per_process:?}"
    );
}

#[test]
fn a_tracer_killed_with_sigkill_leaves_the_semaphore_at_0_and_the_target_running() {
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    let guarded = probe(&object, "guarded");
    let mut target = bin.start("guarded", 1);
    let pid = target.pid().to_string();
    let spec = format!("{}:fixture:guarded", bin.path.display());
    let tracer = Tracer::start_until(&["trace", "-p", &pid, &spec], "usdtop: tracing");
    assert_eq!(raised(target.pid(), &object, guarded), 1);
    // SAFETY: kill(2) on the tracer's pid.
    assert_eq!(unsafe { libc::kill(tracer.pid() as i32, libc::SIGKILL) }, 0);
    drop(tracer);
    assert_eq!(lowered(target.pid(), &object, guarded), 0);
    assert_eq!(site_byte(target.pid(), &object, guarded), NOP);
    // Still running: it answers and exits normally.
    target.go();
}
