//! Input that used to hang or be accepted without a word: files that are not regular files,
//! argument indexes a probe does not have, and notes pointing outside the segments a probe site
//! or a semaphore must be in. Each is refused with a reason before anything is attached.

mod common;

use common::aggfix::AggFix;
use common::build::TempDir;
use common::fixture::FixtureBin;
use common::{parse_json_lines, readelf_section_offset, readelf_section_size};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use usdtop::probes::read_probes;
use usdtop::probes::tracing::engine::{AttachOptions, EngineError};

const USDTOP: &str = env!("CARGO_BIN_EXE_usdtop");

/// Runs usdtop, failing the test if it has not ended within 20 s (a hang).
fn run_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(USDTOP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("usdtop {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// usdtop's stderr, once it has failed.
fn refused(args: &[&str]) -> String {
    let out = run_bounded(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} must fail; stderr: {err}");
    assert!(
        !err.to_lowercase().contains("tracing"),
        "{args:?} refused before attaching: {err}"
    );
    err
}

#[test]
fn fifos_devices_sockets_and_directories_are_refused_by_list_and_trace_without_hanging() {
    let dir = TempDir::new("irregular");
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let socket = dir.path().join("socket");
    let _listener = UnixListener::bind(&socket).unwrap();
    let cases: [(PathBuf, &str); 4] = [
        (fifo, "a FIFO (named pipe)"),
        (PathBuf::from("/dev/null"), "a character device"),
        (socket, "a socket"),
        (dir.path().to_path_buf(), "a directory"),
    ];
    for (path, kind) in &cases {
        let p = path.to_str().unwrap();
        let want = format!("{p}: not a regular file: it is {kind}");
        let err = refused(&["list", p]);
        assert!(err.contains(&want), "list {p}: {err}");
        let probe = format!("{p}:a:b");
        let err = refused(&["trace", &probe]);
        assert!(err.contains(&want), "trace {probe}: {err}");
        let err = refused(&["top", &probe, "--by", "arg0"]);
        assert!(err.contains(&want), "top {probe}: {err}");
    }
}

#[test]
fn argument_indexes_a_probe_does_not_have_are_refused_with_its_count() {
    // req__start(id, label) and req__done(id); the fixture waits for a tracer, which never comes.
    let fx = AggFix::start(&["pairs", "1", "0"]);
    let path = fx.path().display().to_string();
    let start = format!("{path}:aggfix:req__start");
    let done = "aggfix:req__done";
    let err = refused(&["trace", &start, "--str", "99"]);
    assert!(
        err.contains("aggfix:req__start has 2 arguments (arg0..arg1); --str 99 is not one of them"),
        "{err}"
    );
    let err = refused(&["top", &start, "--by", "arg99", "--no-pair"]);
    assert!(
        err.contains(
            "aggfix:req__start has 2 arguments (arg0..arg1); --by arg99 is not one of them"
        ),
        "{err}"
    );
    let err = refused(&["latency", &start, done, "--key", "arg7"]);
    assert!(
        err.contains(
            "aggfix:req__start has 2 arguments (arg0..arg1); --key arg7 is not one of them"
        ),
        "{err}"
    );
    // The done probe has fewer arguments than the start: the key is checked on both.
    let err = refused(&["latency", &start, done, "--key", "arg1"]);
    assert!(
        err.contains("aggfix:req__done has 1 argument (arg0); --key arg1 is not one of them"),
        "{err}"
    );
    let err = refused(&[
        "top",
        &start,
        "--by",
        "arg1",
        "--done",
        done,
        "--key",
        "arg0:arg3",
    ]);
    assert!(
        err.contains("aggfix:req__done has 1 argument (arg0); --key arg0:arg3 is not one of them"),
        "{err}"
    );
}

#[test]
fn with_a_name_glob_str_applies_to_the_probes_that_have_the_argument() {
    let fx = AggFix::start(&["pairs", "1", "0"]);
    let glob = format!("{}:aggfix:req__*", fx.path().display());
    // req__start has arg1, req__done does not: the index is fine, and -v says where it is not.
    let out = Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(["trace", "-v", &glob, "--str", "1", "--duration", "0.2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("--str 1 does not apply to aggfix:req__done: it has no arg1"),
        "{err}"
    );
    // An index that none of them has is refused.
    let err = refused(&["trace", &glob, "--str", "2"]);
    assert!(err.contains("--str 2 is not one of them"), "{err}");
}

#[test]
fn by_beyond_a_real_programs_arguments_is_refused_with_its_count() {
    let php = "/usr/bin/php8.2";
    assert!(
        Path::new(php).exists(),
        "{php} is missing: install php8.2-cli (.ci/install-deps)"
    );
    let probe = format!("{php}:php:request__startup");
    let err = refused(&["top", &probe, "--by", "arg99"]);
    assert!(
        err.contains(
            "php:request__startup has 3 arguments (arg0..arg2); --by arg99 is not one of them"
        ),
        "{err}"
    );
}

#[test]
fn a_negative_or_too_large_pid_is_refused_by_the_argument_parser() {
    for args in [
        &["trace", "--pid=-5", "python:function__entry"][..],
        &["list", "--pid=-5", "--pid=1"],
        &["trace", "-p", "4294967296", "python:function__entry"],
    ] {
        let out = run_bounded(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid value") && err.contains("--pid"),
            "{args:?}: {err}"
        );
    }
}

/// File offsets of the pc and semaphore fields of each stapsdt note, by probe name. A note is
/// a 12-byte header (namesz, descsz, type), the owner "stapsdt\0", then the descriptor: pc,
/// base and semaphore (8 bytes each here), provider\0name\0args\0.
fn note_fields(path: &Path, bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let start = readelf_section_offset(path, ".note.stapsdt").unwrap() as usize;
    let end = start + readelf_section_size(path, ".note.stapsdt").unwrap() as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let align4 = |n: usize| (n + 3) & !3;
    let mut fields = Vec::new();
    let mut pos = start;
    while pos < end {
        let (namesz, descsz) = (u32_at(pos), u32_at(pos + 4));
        let desc = align4(pos + 12 + namesz);
        let strings: Vec<&[u8]> = bytes[desc + 24..desc + descsz].split(|&b| b == 0).collect();
        let name = String::from_utf8(strings[1].to_vec()).unwrap();
        fields.push((name, desc, desc + 16));
        pos = align4(desc + descsz);
    }
    fields
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A copy of the usdt fixture whose `tick` note's pc is its semaphore's address (data, not
/// code) and whose `guarded` note's semaphore is its pc (code, not writable).
fn corrupt_fixture(bin: &FixtureBin, dir: &Path) -> (PathBuf, u64, u64) {
    let mut bytes = std::fs::read(&bin.path).unwrap();
    let fields = note_fields(&bin.path, &bytes);
    let field = |name: &str| fields.iter().find(|f| f.0 == name).unwrap().clone();
    let (_, tick_pc, tick_sem) = field("tick");
    let data = u64_at(&bytes, tick_sem);
    bytes.copy_within(tick_sem..tick_sem + 8, tick_pc);
    let (_, guarded_pc, guarded_sem) = field("guarded");
    let code = u64_at(&bytes, guarded_pc);
    bytes.copy_within(guarded_pc..guarded_pc + 8, guarded_sem);
    let path = dir.join("corrupt_fixture");
    std::fs::write(&path, bytes).unwrap();
    (path, data, code)
}

#[test]
fn a_note_outside_its_segments_is_listed_with_a_warning_and_never_attached() {
    let bin = FixtureBin::build();
    let dir = TempDir::new("badnote");
    let (path, data, code) = corrupt_fixture(&bin, dir.path());
    let p = path.to_str().unwrap();
    let pc_why = format!("pc {data:#x} is not in an executable segment");
    let sem_why = format!("semaphore {code:#x} is not in a writable segment");

    let out = run_bounded(&["list", p]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let after = |probe: &str| {
        let mut lines = text.lines().skip_while(|l| !l.contains(probe));
        lines.nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(
        after("fixture:tick").trim(),
        format!("! warning: {pc_why}; usdtop will not attach it"),
        "{text}"
    );
    assert_eq!(
        after("fixture:guarded").trim(),
        format!("! warning: {sem_why}; usdtop will not attach it"),
        "{text}"
    );
    assert!(!after("fixture:forms").contains("warning"), "{text}");

    let json = parse_json_lines(&String::from_utf8_lossy(
        &run_bounded(&["list", "--json", p]).stdout,
    ));
    let warnings = |name: &str| {
        json.iter().find(|j| j["name"] == name).unwrap()["warnings"]
            .as_array()
            .cloned()
    };
    assert_eq!(warnings("tick"), Some(vec![pc_why.clone().into()]));
    assert_eq!(warnings("guarded"), Some(vec![sem_why.clone().into()]));
    assert_eq!(warnings("forms"), None, "no field for a good probe");

    for (probe, why) in [("tick", &pc_why), ("guarded", &sem_why)] {
        let err = refused(&["trace", &format!("{p}:fixture:{probe}")]);
        assert!(
            err.contains(&format!(
                "{p}: fixture:{probe} is not attached: {why} (its note is corrupt)"
            )),
            "{err}"
        );
    }
    // A glob over the object's probes is refused too, rather than silently leaving one out.
    let err = refused(&["trace", &format!("{p}:fixture:*")]);
    assert!(err.contains("is not attached"), "{err}");

    // The engine itself refuses (the TUI attaches through it, not through the CLI's resolver).
    let object = read_probes(&path).unwrap();
    let (mut engine, _events) = common::engine_and_events();
    for name in ["tick", "guarded"] {
        let probe = object.probes.iter().find(|x| x.name == name).unwrap();
        let err = engine
            .attach(&object, probe, &AttachOptions::default())
            .unwrap_err();
        assert!(matches!(err, EngineError::BadProbe(_)), "{err:?}");
    }
    assert!(engine.stats().probes.is_empty(), "nothing is attached");
}
