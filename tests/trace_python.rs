//! python3.11's semaphore-guarded `python:gc__start`: traced while attached, semaphore raised
//! by the kernel while attached and lowered after detach.

mod common;

use common::python::{python311, PythonLoop};
use common::semaphore::semaphore_value;
use common::{collect_until, engine_and_events};
use usdtop::probes::read_probes;
use usdtop::probes::tracing::engine::AttachOptions;

#[test]
fn gc_start_fires_and_the_semaphore_follows_attach_and_detach() {
    let python = python311();
    let object = read_probes(&python).unwrap();
    let probe = object
        .probes
        .iter()
        .find(|p| p.name == "gc__start")
        .unwrap();
    let sem = probe.semaphore.expect("python probes have semaphores");
    let proc = PythonLoop::start(
        &python,
        "import gc, time\nwhile True:\n    gc.collect()\n    time.sleep(0.01)\n",
    );
    assert_eq!(
        semaphore_value(proc.pid(), &python, false, sem),
        0,
        "nobody attached yet"
    );

    let (mut engine, mut events) = engine_and_events();
    let id = engine
        .attach(&object, probe, &AttachOptions::default())
        .unwrap();
    assert!(
        semaphore_value(proc.pid(), &python, false, sem) > 0,
        "attached: semaphore raised"
    );
    let got = collect_until(&mut events, |evs| {
        evs.iter().filter(|e| e.pid == proc.pid()).count() >= 5
    });
    let ours: Vec<_> = got.iter().filter(|e| e.pid == proc.pid()).collect();
    assert!(
        ours.len() >= 5,
        "gc__start events from the python process: {}",
        ours.len()
    );
    assert_eq!(ours[0].probe.full_name(), "python:gc__start");

    engine.detach(id).unwrap();
    assert_eq!(
        semaphore_value(proc.pid(), &python, false, sem),
        0,
        "detached: semaphore back to zero"
    );
}
