//! The privileges the README documents, checked as a non-root user (`nobody`) holding exactly
//! those capabilities (ambient, through `setpriv`), tracing a real probe: the documented sets
//! trace (CAP_SYS_ADMIN; CAP_BPF + CAP_PERFMON on the uprobe-multi path), one capability fewer
//! is refused with a message naming the missing one.

mod common;

use common::build::{copy_executable, TempDir};
use common::fixture::{Fixture, FixtureBin};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use usdtop::probes::tracing::engine::ATTACH_PATH_ENV;
use usdtop::probes::tracing::privilege::TRACING_NEEDS;

/// `nobody` on Debian: a user with no capabilities and no files of its own.
const NOBODY: &str = "65534";

/// usdtop and the fixture, copied where `nobody` may execute them (the build tree may sit
/// under a directory it cannot enter).
struct Unprivileged {
    _dir: TempDir,
    usdtop: PathBuf,
    fixture: FixtureBin,
}

impl Unprivileged {
    fn new() -> Unprivileged {
        common::require("setpriv");
        let dir = TempDir::new("priv");
        let usdtop = dir.path().join("usdtop");
        copy_executable(Path::new(env!("CARGO_BIN_EXE_usdtop")), &usdtop);
        let fixture = FixtureBin::build();
        for p in [dir.path(), &usdtop, fixture.path.parent().unwrap()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Unprivileged {
            _dir: dir,
            usdtop,
            fixture,
        }
    }

    /// `usdtop ARGS` as `nobody` with exactly `caps` (setpriv names: `sys_admin`, `bpf`, ...).
    fn usdtop(&self, caps: &[&str], args: &[&str]) -> Command {
        let set: String = std::iter::once("-all".to_string())
            .chain(caps.iter().map(|c| format!("+{c}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            &format!("--inh-caps={set}"),
            &format!("--ambient-caps={set}"),
        ])
        .arg(&self.usdtop)
        .args(args);
        cmd
    }

    fn probe(&self) -> String {
        format!("{}:fixture:tick", self.fixture.path.display())
    }
}

/// Starts `cmd`; returns it once stderr says it is tracing (panics with stderr if it exits).
fn start_tracing(mut cmd: Command) -> (Child, ChildStderr) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("usdtop: tracing") {
        match stderr.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!(
                "usdtop stopped before tracing: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    (child, stderr)
}

/// Fires the fixture's 20 ticks and returns usdtop's output once it stopped at `--count 5`.
fn fire_and_collect(
    mut fixture: Fixture,
    usdtop: Child,
    mut stderr: ChildStderr,
) -> (Output, String) {
    fixture.go();
    let out = usdtop.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    (out, rest)
}

fn assert_five_ticks(out: &Output, stderr: &str) {
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let lines = common::parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 5, "--count 5: {lines:?}");
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["name"], "tick");
        assert_eq!(v["args"]["arg0"], i as u64);
    }
}

/// Runs usdtop with `caps` (and `env`) on the fixture's probe; it must fail with `refusal`,
/// saying what tracing needs and that this process `lacks` it.
fn assert_refused(caps: &[&str], env: &[(&str, &str)], refusal: &str, lacks: &str) {
    let run = Unprivileged::new();
    let out = run
        .usdtop(caps, &["trace", &run.probe(), "--duration", "5"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(refusal), "{err}");
    assert!(err.contains(TRACING_NEEDS), "{err}");
    assert!(err.contains(lacks), "{err}");
}

#[test]
fn cap_sys_admin_alone_traces_a_file_probe_as_a_non_root_user() {
    let run = Unprivileged::new();
    let fixture = run.fixture.start("count", 20);
    let (usdtop, stderr) = start_tracing(run.usdtop(
        &["sys_admin"],
        &["trace", "--json", "--count", "5", &run.probe()],
    ));
    let (out, stderr) = fire_and_collect(fixture, usdtop, stderr);
    assert_five_ticks(&out, &stderr);
}

#[test]
fn cap_sys_admin_alone_traces_another_users_process_and_loads_fork_tracking() {
    let run = Unprivileged::new();
    // The fixture runs as root; `-p` also loads the fork-tracking tracepoints.
    let fixture = run.fixture.start("count", 20);
    let pid = fixture.pid().to_string();
    let (usdtop, stderr) = start_tracing(run.usdtop(
        &["sys_admin"],
        &["trace", "--json", "--count", "5", "-p", &pid, &run.probe()],
    ));
    let (out, stderr) = fire_and_collect(fixture, usdtop, stderr);
    assert_five_ticks(&out, &stderr);
    assert!(!stderr.contains("warning"), "nothing degraded: {stderr}");
}

#[test]
fn without_any_capability_loading_is_refused_naming_the_capabilities() {
    assert_refused(
        &[],
        &[],
        "not permitted to load BPF programs",
        "this process lacks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)",
    );
}

#[test]
fn cap_bpf_and_cap_perfmon_trace_a_file_probe_on_the_uprobe_multi_path() {
    let run = Unprivileged::new();
    let fixture = run.fixture.start("count", 20);
    let (usdtop, stderr) = start_tracing(run.usdtop(
        &["bpf", "perfmon"],
        &["trace", "-v", "--json", "--count", "5", &run.probe()],
    ));
    let (out, stderr) = fire_and_collect(fixture, usdtop, stderr);
    assert_five_ticks(&out, &stderr);
}

#[test]
fn on_the_per_site_path_cap_bpf_and_cap_perfmon_are_refused_naming_cap_sys_admin() {
    assert_refused(
        &["bpf", "perfmon"],
        &[(ATTACH_PATH_ENV, "per-site")],
        "not permitted to open uprobe perf events: Permission denied",
        "lacks CAP_SYS_ADMIN, which the per-site path needs",
    );
}

/// The fixture in a mount namespace of its own, from a tmpfs mounted there only: its path
/// means nothing in usdtop's namespace, so the object is reachable only through
/// `/proc/PID/root` (as for a process in a container).
fn fixture_in_its_own_mount_namespace(run: &Unprivileged, mount: &Path) -> Fixture {
    common::require("unshare");
    let inside = mount.join("usdt_fixture");
    let script = format!(
        "mount -t tmpfs usdtop-priv {m} && cp {f} {i} && exec {i} count 20",
        m = mount.display(),
        f = run.fixture.path.display(),
        i = inside.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let fixture = Fixture::spawn(cmd);
    assert!(!inside.exists(), "the fixture is out of usdtop's sight");
    fixture
}

#[test]
fn with_cap_sys_ptrace_too_it_traces_another_users_process_in_another_mount_namespace() {
    let run = Unprivileged::new();
    let mount = TempDir::new("privns");
    let fixture = fixture_in_its_own_mount_namespace(&run, mount.path());
    let pid = fixture.pid().to_string();
    let (usdtop, stderr) = start_tracing(run.usdtop(
        &["sys_admin", "sys_ptrace"],
        &[
            "trace",
            "--json",
            "--count",
            "5",
            "-p",
            &pid,
            "fixture:tick",
        ],
    ));
    let (out, stderr) = fire_and_collect(fixture, usdtop, stderr);
    assert_five_ticks(&out, &stderr);
}

#[test]
fn without_cap_sys_ptrace_the_object_in_another_mount_namespace_cannot_be_opened() {
    let run = Unprivileged::new();
    let mount = TempDir::new("privns");
    let mut fixture = fixture_in_its_own_mount_namespace(&run, mount.path());
    let pid = fixture.pid().to_string();
    let inside = mount.path().join("usdt_fixture").display().to_string();
    // `list -v` names the object and why.
    let out = run
        .usdtop(&["sys_admin"], &["list", "-v", "-p", &pid])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{inside}: cannot read: Permission denied")),
        "{err}"
    );
    // `trace -p` finds no probe there, and says so.
    let out = run
        .usdtop(&["sys_admin"], &["trace", "-p", &pid, "fixture:tick"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no probe matches `fixture:tick`"), "{err}");
    fixture.go();
}
