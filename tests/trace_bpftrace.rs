//! usdtop and bpftrace on the same semaphore-guarded probe at once: both get every event (the
//! kernel shares the site because both pass the same ref_ctr_offset).

mod common;

use common::fixture::FixtureBin;
use common::semaphore::wait_semaphore;
use common::{collect_until, engine_and_events, require};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use usdtop::probes::read_probes;
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};

#[test]
fn usdtop_and_bpftrace_both_count_every_hit_of_a_shared_guarded_probe() {
    let bpftrace = require("/usr/bin/bpftrace");
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    let probe = object.probes.iter().find(|p| p.name == "guarded").unwrap();
    let sem = probe.semaphore.unwrap();
    let mut fixture = bin.start("guarded", 200);

    let script = format!(
        "usdt:{}:fixture:guarded /pid == {}/ {{ @n = count(); }}",
        bin.path.display(),
        fixture.pid()
    );
    let mut bt = KillOnDrop(
        Command::new(bpftrace)
            .args(["-e", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pie = object.position_independent;
    let held = wait_semaphore(fixture.pid(), &bin.path, pie, sem, |v| v >= 1);
    assert_eq!(held, 1, "bpftrace raised the semaphore");

    let (mut engine, mut events) = engine_and_events();
    let options = AttachOptions {
        filter: ProcFilter::Pids(vec![fixture.pid()]),
        ..Default::default()
    };
    let id = engine.attach(&object, probe, &options).unwrap();
    // The kernel sets the semaphore once per breakpoint, however many tracers share it.
    assert_eq!(
        wait_semaphore(fixture.pid(), &bin.path, pie, sem, |v| v >= 1),
        1
    );
    fixture.go();
    let got = collect_until(&mut events, |e| e.len() >= 200);
    assert_eq!(got.len(), 200);
    engine.detach(id).unwrap();

    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(bt.0.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    bt.0.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    bt.0.wait().unwrap();
    assert!(out.contains("@n: 200"), "bpftrace output: {out}");
}

/// bpftrace must not outlive a failed test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
