//! Every SDT operand form seen in real binaries decodes to the value the program put there:
//! constant, register (full, 32-bit, 16-bit, high byte), memory at register+offset,
//! rip-relative global (+offset, in a PIE so the load bias matters), base+index·scale(+offset),
//! and a string with escape sequences kept exact.

mod common;

use common::fixture::FixtureBin;
use common::{collect_until, engine_and_events};
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};
use usdtop::probes::{read_probes, ArgValue};

#[test]
fn each_argument_form_decodes_to_its_known_value() {
    let bin = FixtureBin::build();
    let object = read_probes(&bin.path).unwrap();
    let probe = object.probes.iter().find(|p| p.name == "forms").unwrap();
    let mut fixture = bin.start("forms", 1);
    let (mut engine, mut events) = engine_and_events();
    let options = AttachOptions {
        strings: vec![11],
        filter: ProcFilter::Pids(vec![fixture.pid()]),
        ..Default::default()
    };
    engine.attach(&object, probe, &options).unwrap();
    fixture.go();
    let got = collect_until(&mut events, |e| !e.is_empty());
    assert_eq!(got.len(), 1);
    use ArgValue::Str;
    let (i, u) = (ArgValue::signed, ArgValue::unsigned);
    assert_eq!(
        got[0].args,
        vec![
            i(-7),                      // -4@$-7
            u(0x0123456789abcdef),      // 8@%rdi
            i(-5),                      // -4@%esi
            u(4242),                    // 8@8(%rdx)
            i(-123456),                 // -4@glob_int(%rip)
            u(777),                     // 8@8+glob_arr(%rip)
            u(3003),                    // 8@(%rcx,%rax,8)
            u(4004),                    // 8@16(%rcx,%rax,4)
            i(-32767),                  // -2@%bx of 0x8001
            u(0x80),                    // 1@%bh
            u(5),                       // 4@%r9d of 0xffffffff00000005
            Str("hi\x1b[31m\n".into()), // 8@%r8 read as a string: the exact bytes
        ]
    );
}
