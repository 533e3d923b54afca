//! Argument values are exact to the SDT spec: an `N@` argument is unsigned and `-N@` signed,
//! of N bytes, whatever the operand form (constant, register, memory, base+index·scale,
//! `%rip`-relative global) — checked against what C's printf prints for the same variables, in a
//! fixture built with `<sys/sdt.h>` at -O0 and -O2 and traced for real by `usdtop trace`.
//! Strings are exact too: `--json` carries the bytes, text output escapes them.

mod common;

use common::build::{compile, TempDir};
use common::readelf_notes;
use common::tracer::Tracer;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The sizes and signs of each probe's first eight arguments, as STAP_PROBE derives them from
/// uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, uint64_t, int64_t.
const SIZES: [&str; 8] = ["1", "-1", "2", "-2", "4", "-4", "8", "-8"];

/// The two string arguments of `values:text` (args 8 and 9), as in tests/fixtures/values.c.
const VALID_TEXT: &[u8] = b"esc\x1b[31m nl\n tab\t rlo\xe2\x80\xae zw\xe2\x80\x8b end";
const INVALID_TEXT: &[u8] = b"esc\x1b[31m nl\n rlo\xe2\x80\xae bad\xff\xfe\xc3 end";

struct Values {
    _dir: TempDir,
    path: PathBuf,
}

/// tests/fixtures/values.c built at `-O<level>`.
fn build(level: &str) -> Values {
    let dir = TempDir::new(&format!("values-O{level}"));
    // compile() passes -O2 first; a later -O wins.
    let path = compile(
        "cc",
        "tests/fixtures/values.c",
        dir.path(),
        &[&format!("-O{level}")],
    );
    Values { _dir: dir, path }
}

/// The fixture process, stopped before it fires, with the values it will pass.
struct Run {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Probe name → its eight integer arguments as C printed them.
    expected: BTreeMap<String, Vec<String>>,
}

impl Run {
    fn start(bin: &Path) -> Run {
        let mut child = Command::new(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start values fixture");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut expected = BTreeMap::new();
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ready"] => break,
                ["expect", probe, values @ ..] => {
                    expected.insert(
                        probe.to_string(),
                        values.iter().map(|v| v.to_string()).collect(),
                    );
                }
                _ => panic!("unexpected fixture line {line:?}"),
            }
        }
        Run {
            child,
            stdin,
            stdout,
            expected,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Fires every probe once; the fixture then exits.
    fn fire(mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
        assert!(self.child.wait().unwrap().success());
    }
}

/// Traces every `values:*` probe of one fixture run (strings read at args 8 and 9); returns the
/// expected values and what `usdtop trace` printed.
fn trace(bin: &Values, extra: &[&str]) -> (BTreeMap<String, Vec<String>>, String) {
    let run = Run::start(&bin.path);
    let probes = format!("{}:values:*", bin.path.display());
    let pid = run.pid();
    let mut args = vec!["trace", "--str", "8,9", "-p", &pid, &probes];
    args.extend(extra);
    let tracer = Tracer::start_until(&args, "usdtop: tracing");
    let expected = run.expected.clone();
    run.fire();
    (expected, tracer.output())
}

/// The operand form of one argument as readelf prints it (`8@(%rcx,%rax,8)` → `index`).
fn form(arg: &str) -> &'static str {
    let operand = arg.split_once('@').unwrap().1;
    if operand.starts_with('$') {
        "const"
    } else if operand.starts_with('%') {
        "reg"
    } else if operand.ends_with("(%rip)") {
        "rip"
    } else if operand.contains(',') {
        "index"
    } else if operand.contains('(') {
        "mem"
    } else {
        panic!("unknown form {arg}")
    }
}

/// Checks with readelf that the build has the argument forms the test is about; returns the
/// (form, size) pairs it covers.
fn check_forms(bin: &Values, level: &str) -> BTreeSet<(&'static str, &'static str)> {
    let mut covered = BTreeSet::new();
    let notes = readelf_notes(&bin.path);
    for note in notes.iter().filter(|n| n.provider == "values") {
        // gcc -O0 computes some array addresses into one register: `1@(%rax)`.
        let allowed: &[&str] = match (note.name.as_str(), level) {
            ("const", _) => &["const"],
            ("reg" | "text", _) => &["reg"],
            ("mem" | "extreme", _) => &["mem"],
            ("index", "0") => &["index", "mem"],
            ("index", _) => &["index"],
            ("rip", _) => &["rip"],
            (other, _) => panic!("unexpected probe {other}"),
        };
        for (arg, size) in note.args.iter().zip(SIZES) {
            assert_eq!(arg.split_once('@').unwrap().0, size, "{}: {arg}", note.name);
            let f = form(arg);
            assert!(
                allowed.contains(&f),
                "-O{level} {}: {arg} is {f}",
                note.name
            );
            covered.insert((f, size));
        }
    }
    assert_eq!(notes.iter().filter(|n| n.provider == "values").count(), 7);
    covered
}

#[test]
fn integers_of_every_size_sign_and_form_decode_as_c_converts_them() {
    for level in ["0", "2"] {
        let bin = build(level);
        let covered = check_forms(&bin, level);
        if level == "2" {
            for f in ["const", "reg", "mem", "index", "rip"] {
                for size in SIZES {
                    assert!(
                        covered.contains(&(f, size)),
                        "-O2 has no {size}@ {f} argument"
                    );
                }
            }
        }
        let (expected, out) = trace(&bin, &["--json"]);
        let lines = common::parse_json_lines(&out);
        let mut seen = BTreeSet::new();
        for line in &lines {
            let name = line["name"].as_str().unwrap();
            let want = &expected[name];
            let got: Vec<String> = (0..8)
                .map(|i| line["args"][format!("arg{i}")].to_string())
                .collect();
            assert_eq!(&got, want, "-O{level} values:{name}");
            seen.insert(name.to_string());
        }
        let all: BTreeSet<String> = expected.keys().cloned().collect();
        assert_eq!(seen, all, "-O{level}: every probe fired once");
        // The two the issue names: UINT64_MAX in memory, and -1 that must stay -1.
        let extreme = lines.iter().find(|l| l["name"] == "extreme").unwrap();
        assert_eq!(extreme["args"]["arg6"].as_u64(), Some(u64::MAX));
        assert_eq!(extreme["args"]["arg7"].as_i64(), Some(-1));
        // gcc writes the unsigned constants as signed immediates (`1@$-16`).
        let constant = lines.iter().find(|l| l["name"] == "const").unwrap();
        assert_eq!(constant["args"]["arg0"], 240);
        assert_eq!(
            constant["args"]["arg6"].as_u64(),
            Some(0xf7f6_f5f4_f3f2_f1f0)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn json_carries_string_arguments_byte_for_byte() {
    let bin = build("2");
    let (_, out) = trace(&bin, &["--json"]);
    let lines = common::parse_json_lines(&out);
    let text = lines.iter().find(|l| l["name"] == "text").unwrap();
    // Valid UTF-8: a JSON string holding exactly the bytes, ESC and newline included.
    let valid = text["args"]["arg8"]
        .as_str()
        .expect("a UTF-8 string is a JSON string");
    assert_eq!(valid.as_bytes(), VALID_TEXT);
    // Not UTF-8: the text with U+FFFD, and every byte in hex.
    let invalid = &text["args"]["arg9"];
    assert_eq!(invalid["hex"], hex(INVALID_TEXT));
    assert_eq!(
        invalid["text"],
        String::from_utf8_lossy(INVALID_TEXT).as_ref()
    );
    assert_eq!(invalid["truncated"], false);
}

#[test]
fn text_output_prints_unsigned_values_and_escapes_strings() {
    let bin = build("2");
    let (expected, out) = trace(&bin, &[]);
    // (Output that is not UTF-8 fails in Tracer::output.)
    assert!(!out.contains('\x1b'), "no raw ESC reaches the terminal");
    assert!(!out.contains('\u{202e}'), "no raw right-to-left override");
    let line = out.lines().find(|l| l.contains(" values:text ")).unwrap();
    let ints: Vec<String> = (0..8)
        .map(|i| format!("arg{i}={}", expected["text"][i]))
        .collect();
    assert!(line.contains(&ints.join(" ")), "{line}");
    assert!(
        line.contains("arg6=17867739004052632048 arg7=-579005069656919568"),
        "{line}"
    );
    assert!(
        line.ends_with(
            r#"arg8="esc\x1b[31m nl\n tab\t rlo\u{202e} zw\u{200b} end" arg9="esc\x1b[31m nl\n rlo\u{202e} bad\xff\xfe\xc3 end""#
        ),
        "{line}"
    );
    let extreme = out
        .lines()
        .find(|l| l.contains(" values:extreme "))
        .unwrap();
    assert!(
        extreme.contains("arg6=18446744073709551615 arg7=-1"),
        "{extreme}"
    );
}
