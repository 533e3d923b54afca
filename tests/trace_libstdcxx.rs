//! A probe in a shared library: `libstdcxx:throw` in libstdc++.so.6, fired by a C++ program.

mod common;

use common::fixture::FixtureBin;
use common::{collect_until, drain, engine_and_events};
use std::time::Duration;
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};
use usdtop::probes::{read_probes, ArgValue};

#[test]
fn every_cxx_throw_is_a_libstdcxx_throw_event() {
    let lib = common::libstdcxx();
    let object = read_probes(&lib).unwrap();
    assert!(object.position_independent);
    let probe = object
        .probes
        .iter()
        .find(|p| p.provider == "libstdcxx" && p.name == "throw")
        .expect("Debian's libstdc++ has libstdcxx:throw");
    let bin = FixtureBin::build_thrower();
    let mut fixture = bin.start_with(&["25"]);
    let (mut engine, mut events) = engine_and_events();
    let options = AttachOptions {
        filter: ProcFilter::Pids(vec![fixture.pid()]),
        ..Default::default()
    };
    engine.attach(&object, probe, &options).unwrap();
    fixture.go();
    let mut got = collect_until(&mut events, |e| e.len() >= 25);
    got.extend(drain(&mut events, Duration::from_millis(100)));
    assert_eq!(got.len(), 25);
    for e in &got {
        assert_eq!(e.probe.full_name(), "libstdcxx:throw");
        assert_eq!(e.args.len(), 2, "object and typeinfo");
        assert!(
            matches!(e.args[1], ArgValue::Int(ti) if ti.value() != 0),
            "typeinfo pointer"
        );
    }
}
