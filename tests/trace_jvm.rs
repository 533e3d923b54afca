//! OpenJDK 17's `hotspot` probes pass strings as pointer + length, not NUL-terminated: `usdtop
//! trace` reads them with their length (catalog `name:str[name_len]`) and prints them exactly —
//! thread names as the program started them, class and method names as the JVM knows them.

mod common;

use common::build::TempDir;
use common::fixture::Fixture;
use common::tracer::Tracer;
use common::{require, u};
use serde_json::{json, Value};
use std::process::Command;

const JAVA: &str = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java";

/// A Java program run from source (`java File.java`): prints `ready`, waits for a line on
/// stdin, does what its argument says, prints `done`. Non-ASCII names are `\u` escapes, so the
/// source reads the same whatever the locale.
const PROGRAM: &str = r#"
import java.io.*;

public class Usdtop {
    static class LoadedLate { static int x = 1; }

    static int knownMethod(int i) { return i + 1; }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready");
        System.out.flush();
        in.readLine();
        if (args[0].equals("threads")) {
            String[] names = {
                "usdtop-alpha",
                "usdtop na\u00efve \u00fc \u2713",
                "usdtop\ttab\u0007bell \"quoted\"",
                "usdtop-" + "x".repeat(300),
            };
            for (String n : names) {
                Thread t = new Thread(() -> {}, n);
                t.start();
                t.join();
            }
        } else if (args[0].equals("gc")) {
            for (int i = 0; i < 5; i++) System.gc();
            System.err.println(LoadedLate.x);
        } else {
            int sum = 0;
            for (int i = 0; i < 40; i++) sum += knownMethod(i);
            sum += LoadedLate.x;
            System.err.println(sum);
        }
        System.out.println("done");
    }
}
"#;

/// The program, started with `jvm_flags` and `mode`, waiting for its go.
fn java(dir: &TempDir, jvm_flags: &[&str], mode: &str) -> Fixture {
    let java = require(JAVA);
    let source = dir.path().join("Usdtop.java");
    std::fs::write(&source, PROGRAM).unwrap();
    let mut cmd = Command::new(java);
    cmd.args(jvm_flags).arg(&source).arg(mode);
    Fixture::spawn(cmd)
}

/// `usdtop trace --json -p PID PROBES`, run while the program does its part; every event.
fn trace(program: &mut Fixture, probes: &[&str]) -> Vec<Value> {
    let pid = program.pid().to_string();
    let mut args = vec!["trace", "--json", "-p", &pid];
    args.extend(probes);
    let tracer = Tracer::start_until(&args, "usdtop: tracing");
    program.go();
    // The program has exited: usdtop ends by itself.
    tracer.json()
}

/// What a JSON string argument is: its text, or its text and `truncated`.
fn text(v: &Value) -> (&str, bool) {
    match v {
        Value::String(s) => (s, false),
        Value::Object(o) if o["truncated"] == json!(true) => (o["text"].as_str().unwrap(), true),
        other => panic!("not a string: {other}"),
    }
}

#[test]
fn thread_start_names_are_the_names_the_threads_were_given() {
    let dir = TempDir::new("jvm");
    let mut program = java(&dir, &[], "threads");
    let events = trace(&mut program, &["hotspot:thread__start"]);

    let ours: Vec<&Value> = events
        .iter()
        .filter(|e| text(&e["args"]["name"]).0.starts_with("usdtop"))
        .collect();
    let names: Vec<(&str, bool)> = ours.iter().map(|e| text(&e["args"]["name"])).collect();
    let long = format!("usdtop-{}", "x".repeat(300));
    let started = [
        "usdtop-alpha",
        "usdtop na\u{ef}ve \u{fc} \u{2713}",
        "usdtop\ttab\u{7}bell \"quoted\"",
        &long,
    ];
    assert_eq!(
        names,
        [
            (started[0], false),
            (started[1], false),
            (started[2], false),
            // Cut at the per-string limit (255 bytes) and said so.
            (&long[..255], true),
        ]
    );
    // The length argument is the whole name's, in bytes.
    let lens: Vec<u64> = ours.iter().map(|e| u(&e["args"], "name_len")).collect();
    let want: Vec<u64> = started.iter().map(|n| n.len() as u64).collect();
    assert_eq!(lens, want);
    for e in &ours {
        assert_eq!(e["provider"], "hotspot");
        assert!(u(&e["args"], "native_tid") > 0, "{e}");
    }
}

#[test]
fn method_entry_gives_class_method_and_signature_exactly() {
    let dir = TempDir::new("jvm");
    // Method probes are off unless asked for (the catalog's comment says which flag).
    let mut program = java(&dir, &["-XX:+DTraceMethodProbes"], "methods");
    let events = trace(
        &mut program,
        &["hotspot:method__entry", "hotspot:class__loaded"],
    );

    let of =
        |probe: &str| -> Vec<&Value> { events.iter().filter(|e| e["name"] == probe).collect() };
    let calls: Vec<(&str, &str, &str)> = of("method__entry")
        .iter()
        .map(|e| {
            let a = &e["args"];
            (text(&a["class"]).0, text(&a["method"]).0, text(&a["sig"]).0)
        })
        .filter(|(_, m, _)| *m == "knownMethod")
        .collect();
    assert_eq!(calls, vec![("Usdtop", "knownMethod", "(I)I"); 40]);

    let loaded: Vec<&str> = of("class__loaded")
        .iter()
        .map(|e| text(&e["args"]["class"]).0)
        .filter(|c| c.starts_with("Usdtop"))
        .collect();
    assert_eq!(loaded, ["Usdtop$LoadedLate"]);
    for e in of("method__entry") {
        let (class, cut) = text(&e["args"]["class"]);
        let len = u(&e["args"], "class_len") as usize;
        assert!(cut || class.len() == len, "{class} is not {len} bytes: {e}");
    }
}

#[test]
fn kernel_aggregates_key_by_pointer_and_length_strings_and_time_gc_pairs() {
    let dir = TempDir::new("jvm");
    let mut program = java(&dir, &[], "gc");
    let pid = program.pid().to_string();
    // Counted in the kernel per class name (the key read with its length there too), and
    // gc__begin → gc__end paired in the kernel by thread.
    let top = Tracer::start(&[
        "top",
        "--mode",
        "kernel",
        "--json",
        "-p",
        &pid,
        "hotspot:class__loaded",
    ]);
    let latency = Tracer::start(&[
        "latency",
        "--mode",
        "kernel",
        "--json",
        "-p",
        &pid,
        "hotspot:gc__begin",
    ]);
    program.go();
    let top = top.json();
    let latency = latency.json();

    let rows = &top.last().expect("a top report")["rows"];
    // java/lang/Shutdown (loaded as the JVM exits) is 18 bytes in a symbol table where other
    // bytes follow it, not a NUL: read as a C string it shows them (`java/lang/Shutdown\xff…`).
    for class in ["Usdtop$LoadedLate", "java/lang/Shutdown"] {
        assert_eq!(u(common::row(rows, class), "count"), 1, "{rows}");
    }
    let last = latency.last().expect("a latency report");
    assert_eq!(last["mode"], "kernel", "{last}");
    assert_eq!(last["done"], "hotspot:gc__end", "{last}");
    assert!(
        u(last, "count") >= 5,
        "one pair per System.gc() at least: {last}"
    );
}
