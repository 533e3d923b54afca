//! `usdtop list -p PID` and `usdtop list` find the probes of running processes: the executable
//! and every library it maps, in containers (another root) and after the files were deleted.

mod common;

use common::{fixtures, json_lines, stderr, usdtop};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use usdtop::probes::discovery::process::proc_stat;

/// A fixture process blocked in `app wait` until dropped (closing its stdin ends it).
struct Running(Child);

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .arg("wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "fixture did not start");
        Running(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn list_pids(pids: &[u32], extra: &[&str]) -> Vec<Value> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut args = vec!["list", "--json"];
    for p in &pids {
        args.extend(["-p", p]);
    }
    args.extend_from_slice(extra);
    let out = usdtop(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out)
}

fn paths(lines: &[Value]) -> Vec<String> {
    let mut p: Vec<String> = lines
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    p.dedup();
    p
}

#[test]
fn a_running_process_lists_its_executable_and_its_shared_library() {
    let fx = fixtures();
    let app = Running::start(&mut Command::new(&fx.pie));
    let probes = list_pids(&[app.pid()], &[]);
    let lib = fx.lib.to_str().unwrap();
    let exe = fx.pie.to_str().unwrap();
    assert_eq!(paths(&probes), [exe, lib]);
    assert!(probes
        .iter()
        .all(|p| p["pids"] == serde_json::json!([app.pid()])));
    let call = probes.iter().find(|p| p["name"] == "call").unwrap();
    assert_eq!(call["provider"], "fixlib");
    assert_eq!(
        probes.len(),
        7,
        "6 probes in the executable, 1 in the library"
    );

    // The same sites as listing the files directly.
    let file = json_lines(&usdtop(&["list", "--json", exe]));
    for (a, b) in file.iter().zip(probes.iter().filter(|p| p["path"] == exe)) {
        assert_eq!(a["sites"], b["sites"]);
    }
}

#[test]
fn objects_mode_shows_every_mapped_object_including_libc() {
    let fx = fixtures();
    let app = Running::start(&mut Command::new(&fx.nopie));
    let objects = list_pids(&[app.pid()], &["--objects"]);
    let find = |suffix: &str| {
        objects
            .iter()
            .find(|o| o["path"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no object *{suffix} in {objects:?}"))
    };
    assert_eq!(find("/app_nopie")["probes"], 6);
    assert_eq!(find("/app_nopie")["sites"], 9);
    assert_eq!(find("/libusdtfix.so")["probes"], 1);
    assert_eq!(find("/libc.so.6")["probes"], 0);
    assert!(
        objects.iter().all(|o| o.get("error").is_none()),
        "{objects:?}"
    );
}

#[test]
fn several_processes_are_grouped_by_object_with_their_pids() {
    let fx = fixtures();
    let a = Running::start(&mut Command::new(&fx.pie));
    let b = Running::start(&mut Command::new(&fx.nopie));
    let probes = list_pids(&[a.pid(), b.pid()], &["-n", "fixlib:*"]);
    assert_eq!(probes.len(), 1, "one library, listed once: {probes:?}");
    let mut want = vec![a.pid(), b.pid()];
    want.sort();
    assert_eq!(probes[0]["pids"], serde_json::json!(want));
}

#[test]
fn the_whole_machine_listing_includes_a_running_fixture() {
    let fx = fixtures();
    let app = Running::start(&mut Command::new(&fx.pie));
    let out = usdtop(&["list", "--json", "-P", "demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let ours = lines
        .iter()
        .find(|p| p["path"] == fx.pie.to_str().unwrap() && p["name"] == "many_sites")
        .expect("fixture found in the machine-wide scan");
    assert!(ours["pids"]
        .as_array()
        .unwrap()
        .contains(&Value::from(app.pid())));
}

#[test]
fn deleted_files_are_still_read_and_shown_as_mapped() {
    let fx = fixtures();
    let dir = fx.dir.join("deleted");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("app_gone");
    let lib = dir.join("libusdtfix.so");
    common::build::copy_executable(&fx.pie, &exe);
    common::build::copy_executable(&fx.lib, &lib);
    let app = Running::start(Command::new(&exe).env("LD_LIBRARY_PATH", &dir));
    std::fs::remove_file(&exe).unwrap();
    std::fs::remove_file(&lib).unwrap();
    let probes = list_pids(&[app.pid()], &[]);
    assert_eq!(
        paths(&probes),
        [exe.to_str().unwrap(), lib.to_str().unwrap()],
        "paths as mapped, without ' (deleted)'"
    );
    assert_eq!(probes.len(), 7);
}

/// Copy `from` into `root` at the same absolute path it has on the host.
fn copy_into(root: &Path, from: &Path, to: &str) -> PathBuf {
    let dest = root.join(to.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    common::build::copy_executable(from, &dest);
    dest
}

/// A minimal container root: the app at /app, its library in /lib, libc and the loader.
fn make_root(fx: &common::Fixtures, name: &str) -> PathBuf {
    let root = fx.dir.join(name);
    let _ = std::fs::remove_dir_all(&root);
    copy_into(&root, &fx.pie, "/app");
    copy_into(&root, &fx.lib, "/lib/libusdtfix.so");
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let ld = Path::new("/lib64/ld-linux-x86-64.so.2");
    copy_into(&root, libc, libc.to_str().unwrap());
    copy_into(&root, ld, ld.to_str().unwrap());
    assert!(!Path::new("/app").exists(), "the host must not have /app");
    root
}

#[test]
fn container_processes_are_read_through_proc_pid_root() {
    let fx = fixtures();
    common::require("/usr/bin/unshare");
    common::require("/usr/sbin/pivot_root");
    // Like a container runtime: a private mount namespace whose root is our directory, so
    // /proc/PID/maps shows `/app`, a path that means nothing outside.
    let root = make_root(fx, "container");
    let script = format!(
        "mount --bind {r} {r} && cd {r} && mkdir -p old && pivot_root . old && exec /app \"$@\"",
        r = root.display()
    );
    let app = Running::start(
        Command::new("/usr/bin/unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .env("LD_LIBRARY_PATH", "/lib"),
    );
    let probes = list_pids(&[app.pid()], &[]);
    assert_eq!(paths(&probes), ["/app", "/lib/libusdtfix.so"]);
    assert_eq!(probes.len(), 7);

    // What a tracer attaches to: a path that reaches the same file from our namespace.
    let info = usdtop::probes::discovery::process::ProbeCache::new()
        .process(app.pid())
        .unwrap();
    let exe = &info.objects[0].object;
    assert_eq!(exe.path, Path::new("/app"));
    assert_eq!(
        exe.open_path(),
        Path::new(&format!("/proc/{}/root/app", app.pid()))
    );
    assert_eq!(
        std::fs::read(exe.open_path()).unwrap(),
        std::fs::read(&fx.pie).unwrap()
    );
}

#[test]
fn chrooted_processes_in_our_namespace_are_found_too() {
    let fx = fixtures();
    common::require("/usr/sbin/chroot");
    // Same mount namespace: maps shows our own path of the file, not /app.
    let root = make_root(fx, "chroot");
    let app = Running::start(
        Command::new("/usr/sbin/chroot")
            .arg(&root)
            .arg("/app")
            .env("LD_LIBRARY_PATH", "/lib"),
    );
    let probes = list_pids(&[app.pid()], &[]);
    let exe = root.join("app");
    let lib = root.join("lib/libusdtfix.so");
    assert_eq!(
        paths(&probes),
        [exe.to_str().unwrap(), lib.to_str().unwrap()]
    );
    assert_eq!(probes.len(), 7);
}

#[test]
fn a_zombie_or_missing_pid_is_a_named_error() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not reaped yet: wait for it to become a zombie.
    for _ in 0..500 {
        if proc_stat(pid).is_some_and(|s| s.state == 'Z') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = usdtop(&["list", "-p", &pid.to_string()]);
    child.wait().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("usdtop: pid {pid}: zombie\n"));

    let out = usdtop(&["list", "-p", "2147483647"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "usdtop: pid 2147483647: no such process (it exited)\n"
    );
}
