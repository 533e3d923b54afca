//! Strings given by pointer and length (tests/fixtures/sized.c), read with `trace --str 0:1`:
//! exactly the length's bytes (a NUL inside included), cut at 255 bytes and said so, a negative
//! length or a bad pointer unreadable and counted, and pages the process never touched faulted
//! in as for C strings.

mod common;

use common::fired::FiredRun;
use common::parse_json_lines;
use serde_json::{json, Value};
use std::process::Command;

const USDTOP: &str = env!("CARGO_BIN_EXE_usdtop");
const UNREADABLE: &str = "string not readable (unmapped pointer)";

/// Runs the fixture under `usdtop trace --json --str 0:1 -p PID PATH:sized:*`; returns the
/// events, usdtop's stderr and the fixture's "fired" line.
fn run_sized() -> (Vec<Value>, String, String) {
    let args = ["trace", "--json", "--str", "0:1"];
    let run = FiredRun::run(
        "tests/fixtures/sized.c",
        "sized:*",
        &args,
        "usdtop: tracing",
    );
    let events = parse_json_lines(&run.stdout.join("\n"));
    (events, run.stderr, run.fired)
}

#[test]
fn pointer_and_length_strings_are_read_with_their_length_bounded() {
    let (events, stderr, fired) = run_sized();
    let of = |name: &str, tag: u64| -> Value {
        let e = events
            .iter()
            .find(|e| e["name"] == name && (e["args"]["arg2"] == tag || name == "huge"))
            .unwrap_or_else(|| panic!("no {name} tag {tag} in {events:?}"));
        e["args"]["arg0"].clone()
    };
    let cut = json!({"text": "y".repeat(255), "truncated": true});
    assert_eq!(of("str", 1), "hello", "five bytes of \"hello world\"");
    assert_eq!(
        of("str", 2),
        "ab\u{0}cd",
        "a NUL inside is a byte like another"
    );
    assert_eq!(of("str", 3), "");
    assert_eq!(of("str", 4), cut);
    assert_eq!(
        of("str", 5),
        json!({ "unsupported": UNREADABLE }),
        "length -1"
    );
    assert_eq!(of("str", 6), Value::Null);
    assert_eq!(of("str", 7), json!({ "unsupported": UNREADABLE }));
    assert_eq!(of("huge", 0), cut, "an unsigned length beyond the limit");

    // Pages never touched by the process are faulted in, as for C strings.
    assert_eq!(fired, "fired unmapped_before=3", "the cold cases were cold");
    assert_eq!(of("cold", 1), "cold-bytes");
    assert_eq!(of("cold", 2), "spanning-pages");
    assert!(stderr.contains(" 2 strings unreadable"), "{stderr}");
}

#[test]
fn a_string_cannot_be_its_own_length_or_a_missing_argument() {
    let python = common::python::python311();
    let probe = format!("{}:python:gc__start", python.display());
    for (option, code, says) in [
        ("0:0", 2, "a string cannot be its own length"),
        ("0:x", 2, "is not N or N:LEN"),
        (
            "0:9",
            1,
            "python:gc__start has 1 argument (arg0); --str 0:9 is not one of them",
        ),
    ] {
        let out = Command::new(USDTOP)
            .args(["trace", "--str", option, &probe])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(says), "{option}: {stderr}");
    }
}
