//! usdtop stops when asked, whatever the load: on --duration and on SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT, in every command and mode, while a real probe keeps firing; a stalled reader of
//! stdout does not make it grow; bad numbers are refused before anything is attached.
//!
//! Time bounds here only catch hangs (before these fixes, the stream modes never ended under
//! load); how fast a stop is, is measured in bench/stop.sh.

mod common;

use common::aggfix::AggFix;
use common::running::Running;
use common::RUN_PATIENCE;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A stopped usdtop must be gone well within this (it takes well under a second here).
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// A fixture firing `aggfix:tick` (or req__start/req__done pairs) steadily until killed.
fn steady_load(mode: &str) -> AggFix {
    let args: &[&str] = match mode {
        // 200,000 ticks a second for ten minutes: a steady load, not a burst.
        "ticks" => &["rate", "200000", "600", "--no-wait"],
        // Back-to-back start/done pairs (the loop ends only when killed).
        _ => &["pairs", "1000000000000", "0", "--no-wait"],
    };
    AggFix::start(args)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// usdtop tracing with `args`, stdout to /dev/null.
fn tracing(args: &[String]) -> Running {
    tracing_to(args, Stdio::null())
}

fn tracing_to(args: &[String], stdout: Stdio) -> Running {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start(&args, stdout)
}

/// Every headless command and mode, against a fixture under steady load.
fn commands(fx: &AggFix, load: &str) -> Vec<Vec<String>> {
    let pid = fx.pid().to_string();
    let p = pid.as_str();
    let cmd = |parts: &[&[&str]]| args(&parts.concat());
    let tick = ["-p", p, "aggfix:tick"];
    let pair = ["-p", p, "aggfix:req__start", "aggfix:req__done"];
    let by = ["--by", "arg1"];
    match load {
        "ticks" => vec![
            cmd(&[&["trace"], &tick]),
            cmd(&[&["trace"], &tick, &["--json"]]),
            cmd(&[&["top"], &tick, &by, &["--mode", "stream"]]),
            cmd(&[&["top"], &tick, &by, &["--mode", "kernel"]]),
        ],
        _ => vec![
            cmd(&[&["latency"], &pair, &["--mode", "stream"]]),
            cmd(&[&["latency"], &pair, &by]),
            cmd(&[&["latency"], &pair, &["--mode", "kernel"]]),
            cmd(&[
                &[
                    "top",
                    "-p",
                    p,
                    "aggfix:req__start",
                    "--done",
                    "aggfix:req__done",
                ],
                &by,
                &["--mode", "stream"],
            ]),
        ],
    }
}

#[test]
fn every_command_stops_on_each_signal_under_steady_load_with_the_signals_exit_status() {
    let signals = [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
        (libc::SIGHUP, 129, "SIGHUP"),
        (libc::SIGQUIT, 131, "SIGQUIT"),
    ];
    for load in ["ticks", "pairs"] {
        let fx = steady_load(load);
        for (i, cmd) in commands(&fx, load).into_iter().enumerate() {
            // Each command meets one signal, in turn, so every signal meets several commands.
            let (sig, code, name) = signals[i % signals.len()];
            let usdtop = tracing(&cmd);
            std::thread::sleep(Duration::from_millis(700));
            usdtop.signal(sig);
            let (status, stderr) = usdtop.exit_within(STOP_PATIENCE);
            assert_eq!(
                status.code(),
                Some(code),
                "{cmd:?} after {name}: {stderr:?}"
            );
            assert!(
                stderr
                    .iter()
                    .any(|l| l == &format!("usdtop: stopping on {name}")),
                "{cmd:?} says why it stopped: {stderr:?}"
            );
        }
    }
}

#[test]
fn duration_ends_every_command_under_steady_load() {
    for load in ["ticks", "pairs"] {
        let fx = steady_load(load);
        for mut cmd in commands(&fx, load) {
            cmd.extend(args(&["--duration", "1"]));
            let usdtop = tracing(&cmd);
            let start = Instant::now();
            let (status, stderr) = usdtop.exit_within(STOP_PATIENCE + Duration::from_secs(1));
            eprintln!("{cmd:?}: ended {:?} after tracing began", start.elapsed());
            assert_eq!(status.code(), Some(0), "{cmd:?}: {stderr:?}");
        }
    }
}

#[test]
fn a_second_signal_ends_a_stop_at_once() {
    let fx = steady_load("ticks");
    let usdtop = tracing(&args(&[
        "trace",
        "-p",
        &fx.pid().to_string(),
        "aggfix:tick",
    ]));
    usdtop.signal(libc::SIGINT);
    usdtop.signal(libc::SIGINT);
    let (status, stderr) = usdtop.exit_within(STOP_PATIENCE);
    // Either the first stop was already over (130), or the second signal killed it.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.code() == Some(130) || status.signal() == Some(libc::SIGINT),
        "{status}: {stderr:?}"
    );
}

/// Whether `pid` has installed a handler for SIGINT (the SigCgt mask of /proc/PID/status).
fn catches_sigint(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

#[test]
fn a_signal_before_tracing_starts_abandons_the_attach_with_status_130() {
    let fx = steady_load("ticks");
    // usdtop takes the signal from its first step; resolving the probe, loading the BPF
    // program and attaching come after, so a signal sent as soon as the handler is in place
    // lands while it prepares to attach. On a loaded machine this test may lose that race
    // (then usdtop traces and stops normally, also with 130); a few tries make it certain
    // without letting a lost signal pass: one of them must be an abandoned attach.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let stderr = interrupt_as_soon_as_the_handler_is_in(fx.pid());
        if stderr.contains("SIGINT while attaching; nothing traced") {
            assert!(!stderr.contains("usdtop: tracing"), "{stderr}");
            return;
        }
        outcomes.push(stderr);
    }
    panic!("the attach was never abandoned: {outcomes:?}");
}

/// Starts `trace -p PID aggfix:tick`, sends SIGINT the moment it catches it, and returns its
/// stderr once it has exited with 130.
fn interrupt_as_soon_as_the_handler_is_in(pid: u32) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_usdtop"))
        .args(["trace", "-p", &pid.to_string(), "aggfix:tick"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !catches_sigint(child.id()) {
        assert!(start.elapsed() < RUN_PATIENCE, "usdtop never took SIGINT");
        std::thread::sleep(Duration::from_micros(200));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < STOP_PATIENCE,
            "usdtop went on after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    stderr
}

/// Peak resident memory of a process, from /proc/PID/status (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `usdtop: P events printed, R received, D dropped (ring buffer full), S dropped (output
/// too slow)` → (P, R, D, S).
fn summary(stderr: &str) -> (u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("events printed"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2], n[3])
}

#[test]
fn a_stalled_reader_of_stdout_keeps_memory_bounded_and_every_received_event_is_accounted_for() {
    let fx = steady_load("ticks");
    let (reader, writer) = std::io::pipe().unwrap();
    let usdtop = tracing_to(
        &args(&[
            "trace",
            "-p",
            &fx.pid().to_string(),
            "aggfix:tick",
            "--str",
            "1",
            "--duration",
            "5",
        ]),
        writer.into(),
    );
    // Nobody reads stdout for four seconds: at 200,000 events a second, far more than the
    // queues hold.
    std::thread::sleep(Duration::from_secs(4));
    let peak = peak_rss(usdtop.child.id());
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let mut reader = reader;
        let _ = reader.read_to_end(&mut sink);
        sink.iter().filter(|&&b| b == b'\n').count() as u64
    });
    let (status, stderr) = usdtop.exit_within(STOP_PATIENCE + Duration::from_secs(5));
    let stderr = stderr.join("\n");
    let lines = drain.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        peak < 200 << 20,
        "peak RSS {} MiB with a stalled reader",
        peak >> 20
    );
    let (printed, received, _ring, too_slow) = summary(&stderr);
    assert!(too_slow > 0, "the stall must have cost events: {stderr}");
    assert_eq!(
        printed + too_slow,
        received,
        "every event received was printed or counted as too slow: {stderr}"
    );
    assert_eq!(lines, printed, "the lines on stdout are the events printed");
}

#[test]
fn bad_numbers_are_refused_before_anything_is_attached() {
    let fx = steady_load("ticks");
    let pid = fx.pid().to_string();
    let trace = ["trace", "-p", &pid, "aggfix:tick"];
    let latency = [
        "latency",
        "-p",
        &pid,
        "aggfix:req__start",
        "aggfix:req__done",
    ];
    let top = ["top", "-p", &pid, "aggfix:tick", "--by", "arg1"];
    // (command, bad option and value, the option the error must name)
    let bad: &[(&[&str], &[&str], &str)] = &[
        (&trace, &["--duration", "nan"], "--duration"),
        (&trace, &["--duration", "inf"], "--duration"),
        (&trace, &["--duration=-1"], "--duration"),
        (&trace, &["--duration", "1e300"], "--duration"),
        (&trace, &["--count", "0"], "--count"),
        (&trace, &["--queue-mb", "0"], "--queue-mb"),
        (&latency, &["--duration", "1e20"], "--duration"),
        (&latency, &["-i", "1e300"], "--interval"),
        (&top, &["-i", "1e300"], "--interval"),
        (&top, &["-i", "NaN"], "--interval"),
        (&top, &["--max-keys", "0"], "--max-keys"),
        (&[], &["--demo", "--demo-rate", "nan"], "--demo-rate"),
    ];
    for (command, option_value, option) in bad {
        let argv = [*command, *option_value].concat();
        let out = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(&argv)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stderr}");
        assert!(stderr.contains(option), "{argv:?} names {option}: {stderr}");
        assert!(!stderr.contains("panicked"), "{argv:?}: {stderr}");
        assert!(!stderr.contains("tracing"), "{argv:?} attached: {stderr}");
    }
}
