//! The TUI end to end, used the way a person would: usdtop runs in a real terminal (tmux) with
//! real BPF on the real demo workload, the test reads the screen (`capture-pane`) and types keys
//! (`send-keys`). Waits poll the screen until the content appears or a generous deadline passes.

mod common;

use common::PATIENCE;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_usdtop");

/// Each test runs its own copy of the binary (a file of its own, so a new inode). Kernel
/// behaviour seen on 6.18: a process that maps a binary while another tracer holds a
/// semaphore-guarded uprobe on it does not get the semaphore raised, and a later attach does not
/// raise it either. With a private copy, no other test's (or person's) attachments can be
/// there, and the tests can run in parallel.
struct Binary {
    dir: std::path::PathBuf,
    path: String,
}

impl Binary {
    fn copy(name: &str) -> Binary {
        let dir = std::env::temp_dir().join(format!("usdtop-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usdtop");
        common::build::copy_executable(std::path::Path::new(BIN), &path);
        Binary {
            path: path.display().to_string(),
            dir,
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tmux server of its own running one command in a window of a fixed size. Dropping it kills
/// the server and waits until every process it ran is gone.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, cols: u16, rows: u16, command: &str) -> Tmux {
        common::require("tmux");
        let socket = format!("usdtop-{name}-{}", std::process::id());
        let t = Tmux { socket };
        // The shell keeps the pane open after usdtop exits, so its exit status can be read.
        let script = format!("{command}; echo usdtop-exited-$?; sleep 600");
        let status = t
            .tmux()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .args(["sh", "-c", &script])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        // CI has no terminal of its own; tmux and usdtop inside it need a TERM all the same.
        c.args(["-f", "/dev/null", "-L", &self.socket])
            .env("TERM", "xterm-256color");
        c
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .tmux()
                .args(["send-keys", "-t", "t", k])
                .status()
                .expect("send-keys")
                .success();
            assert!(ok, "send-keys {k}");
            // Let the app handle one key before the next, as a person's typing would.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// A tmux format variable of the pane, e.g. `alternate_on` ("1" or "0").
    fn flag(&self, name: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "t", &format!("#{{{name}}}")])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn pane_pid(&self) -> Option<u32> {
        self.flag("pane_pid").parse().ok()
    }

    /// The pid of the process running `bin` in the pane (each test has its own copy).
    fn pid_of(&self, bin: &str) -> u32 {
        let start = Instant::now();
        loop {
            let running = self.pane_pid().map(descendants).unwrap_or_default();
            let exe = |p: &u32| std::fs::read_link(format!("/proc/{p}/exe")).ok();
            if let Some(pid) = running
                .into_iter()
                .find(|p| exe(p).is_some_and(|e| e == std::path::Path::new(bin)))
            {
                return pid;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{bin} is not running in the pane"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the screen until `ok(screen)`; fails with the last screen after PATIENCE.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > PATIENCE {
                panic!("timed out waiting for {what}; the screen was:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let family = self.pane_pid().map(descendants).unwrap_or_default();
        let _ = self.tmux().arg("kill-server").status();
        let start = Instant::now();
        while family.iter().any(|p| alive(*p)) && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !matches!(state_of(&s), Some('Z') | Some('X')))
        .unwrap_or(false)
}

fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `root` and every process below it.
fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut family = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for &p in &all {
            if !family.contains(&p) && parent_of(p).is_some_and(|pp| family.contains(&pp)) {
                family.push(p);
                grew = true;
            }
        }
    }
    family
}

/// `usdtop demo-server` as a separate process: the node-shaped workload to trace.
struct DemoServer {
    child: Child,
    pid: u32,
}

impl DemoServer {
    fn start(bin: &str) -> DemoServer {
        let mut child = Command::new(bin)
            .args(["demo-server", "--port", "0", "--rate", "100"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start usdtop demo-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("demo-server prints where it listens");
        assert!(line.contains("listening on"), "{line}");
        let pid = child.id();
        DemoServer { child, pid }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of the top table pane (right of the screen, below the Top title).
fn top_pane(screen: &str) -> String {
    screen
        .lines()
        .skip_while(|l| !l.contains(" Top "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn histogram_count(screen: &str) -> u64 {
    screen
        .split("n=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn demo_shows_requests_latency_and_top_paths_and_enter_drills_into_a_path() {
    let bin = Binary::copy("demo");
    let b = bin.path.as_str();
    let t = Tmux::start("demo", 120, 40, &format!("{b} --demo"));
    let s = t.wait_for("paths in the log, a histogram and the top table", |s| {
        s.contains("/api/users method=GET")
            && top_pane(s).contains("/api/users")
            && histogram_count(s) > 0
            && s.contains('█')
    });
    assert!(s.contains("● node:http__server__request"), "{s}");
    assert!(s.contains("● node:http__server__response"), "{s}");

    // --demo starts with the histogram focused: Tab goes to the top table; the first row is the
    // busiest path. Enter filters the histogram and the log to it.
    t.keys(&["Tab", "Enter"]);
    let s = t.wait_for("the drill-down filter in the header", |s| {
        s.lines().next().unwrap_or("").contains("filter: /")
    });
    let header = s.lines().next().unwrap().to_string();
    let key = header.split("filter: ").nth(1).unwrap().trim().to_string();
    let s = t.wait_for("the log showing only the drilled path", |s| {
        // Log lines show the probe name cut from the left: `…server__request`.
        let log: Vec<&str> = s
            .lines()
            .filter(|l| l.contains("…server__request") || l.contains("…erver__response"))
            .collect();
        !log.is_empty() && log.iter().all(|l| l.contains(key.as_str()))
    });
    assert!(s.contains("Latency") && s.contains(&key), "{s}");

    // Esc steps back: the filter goes away.
    t.keys(&["Escape"]);
    t.wait_for("the filter to be gone", |s| {
        !s.lines().next().unwrap_or("").contains("filter:")
    });

    // Enter on a histogram bucket filters the log to that latency range.
    t.keys(&["BTab", "End", "Enter"]);
    t.wait_for("a latency-range filter", |s| {
        let header = s.lines().next().unwrap_or("");
        header.contains("filter: ") && header.contains('–')
    });
    t.keys(&["Escape"]);

    // q quits cleanly and gives the terminal back.
    t.keys(&["q"]);
    t.wait_for("usdtop to exit with status 0", |s| {
        s.contains("usdtop-exited-0")
    });
}

#[test]
fn pid_and_attach_flags_trace_a_separate_process_with_no_keys() {
    let bin = Binary::copy("pid");
    let b = bin.path.as_str();
    let server = DemoServer::start(b);
    let cmd = format!("{b} -p {} -a node:http__server__request", server.pid);
    let t = Tmux::start("pid", 120, 40, &cmd);
    let s = t.wait_for("request events from the demo server", |s| {
        s.contains("method=GET")
    });
    assert!(s.contains(&format!("Objects of {}", server.pid)), "{s}");
    assert!(s.contains("● node:http__server__request"), "{s}");
}

#[test]
fn explorer_flow_finds_the_probe_by_keys_and_space_attaches_it() {
    let bin = Binary::copy("explorer");
    let b = bin.path.as_str();
    let server = DemoServer::start(b);
    let cmd = format!("{b} -p {}", server.pid);
    let t = Tmux::start("explore", 120, 40, &cmd);
    // The process is selected; its binary (the object with probes) is listed first, and its
    // probes in name order: http__server__request comes first.
    t.wait_for("the demo server's probes", |s| {
        s.contains("node:http__server__request") && s.contains("node:net__stream__end")
    });
    assert!(
        !t.screen().contains("method=GET"),
        "nothing is traced before Space"
    );
    t.keys(&["Tab", "Tab", "Space"]);
    let s = t.wait_for("events after Space attached the probe", |s| {
        s.contains("● node:http__server__request") && s.contains("method=GET")
    });
    assert!(s.contains("attached node:http__server__request"), "{s}");
    // Space again detaches.
    t.keys(&["Space"]);
    t.wait_for("the probe to be detached", |s| {
        s.contains("detached node:http__server__request")
            && !s.contains("● node:http__server__request")
    });
}

#[test]
fn eighty_by_twenty_four_demo_is_usable() {
    let bin = Binary::copy("eighty");
    let b = bin.path.as_str();
    let t = Tmux::start("small", 80, 24, &format!("{b} --demo"));
    let s = t.wait_for("all panes with live data at 80x24", |s| {
        [
            "Processes",
            "Objects",
            "Probes",
            "Request log",
            "Latency",
            "Top",
        ]
        .iter()
        .all(|title| s.contains(title))
            && s.contains("/api/")
            && histogram_count(s) > 0
    });
    assert!(s.lines().count() <= 24, "{s}");
}

/// Sends `signal` (a `kill` name) to the TUI running the demo; it must give the terminal back
/// (normal screen, no mouse reporting, cursor shown) and exit with `status` (128 + the
/// signal's number, as README "Exit status" says). A process the signal killed would also make
/// the shell report 128 + its number, but would leave the alternate screen and mouse on.
fn an_external_signal_restores_the_terminal_and_exits_with(signal: &str, status: u8) {
    let bin = Binary::copy(&format!("sig{signal}"));
    let b = bin.path.as_str();
    let t = Tmux::start(&format!("sig{signal}"), 100, 30, &format!("{b} --demo"));
    t.wait_for("the demo running", |s| s.contains("method=GET"));
    let mouse = [
        "mouse_any_flag",
        "mouse_standard_flag",
        "mouse_button_flag",
        "mouse_all_flag",
    ];
    // What the checks below look for is really switched on while it runs.
    assert_eq!(t.flag("alternate_on"), "1");
    assert_eq!(t.flag("mouse_any_flag"), "1");
    let pid = t.pid_of(b).to_string();
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status();
    assert!(killed.is_ok_and(|k| k.success()), "kill -{signal} {pid}");
    let s = t.wait_for(&format!("usdtop to exit with status {status}"), |s| {
        s.contains("usdtop-exited-")
    });
    assert!(s.contains(&format!("usdtop-exited-{status}")), "{s}");
    assert_eq!(
        t.flag("alternate_on"),
        "0",
        "alternate screen left on:\n{s}"
    );
    for flag in mouse {
        assert_eq!(t.flag(flag), "0", "{flag} left on");
    }
    assert_eq!(t.flag("cursor_flag"), "1", "cursor left hidden");
    assert!(!s.contains("Request log"), "{s}");
}

#[test]
fn sigint_restores_the_terminal_and_exits_130() {
    an_external_signal_restores_the_terminal_and_exits_with("INT", 130);
}

#[test]
fn sigquit_restores_the_terminal_and_exits_131() {
    an_external_signal_restores_the_terminal_and_exits_with("QUIT", 131);
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    an_external_signal_restores_the_terminal_and_exits_with("TERM", 143);
}

#[test]
fn sighup_restores_the_terminal_and_exits_129() {
    an_external_signal_restores_the_terminal_and_exits_with("HUP", 129);
}

#[test]
fn without_privileges_the_explorer_still_lists_and_says_why_attaching_fails() {
    let bin = Binary::copy("without");
    let b = bin.path.as_str();
    common::require("setpriv");
    let server = DemoServer::start(b);
    // Root without capabilities cannot load BPF programs.
    let cmd = format!(
        "setpriv --inh-caps=-all --bounding-set=-all {b} -p {} -a node:http__server__request",
        server.pid
    );
    let t = Tmux::start("nopriv", 120, 40, &cmd);
    let s = t.wait_for(
        "the probes listed and the reason attaching is impossible",
        |s| s.contains("node:http__server__request") && s.contains("cannot attach"),
    );
    assert!(
        s.to_lowercase().contains("root") || s.contains("not permitted"),
        "{s}"
    );
    assert!(
        !s.contains("usdtop-exited"),
        "the explorer keeps running: {s}"
    );
}

/// Whether the request log on `screen` has a request event from process `pid`.
fn has_requests_from(screen: &str, pid: u32) -> bool {
    screen.lines().any(|l| {
        l.contains("http__server__request")
            && l.contains("method=GET")
            && l.split_whitespace().nth(1) == Some(pid.to_string().as_str())
    })
}

#[test]
fn attach_without_pid_traces_every_process_running_the_object() {
    let bin = Binary::copy("everywhere");
    let b = bin.path.as_str();
    let one = DemoServer::start(b);
    let two = DemoServer::start(b);
    // A PATH:provider:glob pattern, as `trace` takes: both server probes of that one binary.
    let cmd = format!("{b} -a '{b}:node:http__server__*'");
    let t = Tmux::start("everywhere", 160, 40, &cmd);
    // Wide enough for the PID column: requests from both servers show up.
    t.wait_for("requests from both demo servers", |s| {
        has_requests_from(s, one.pid) && has_requests_from(s, two.pid)
    });
}

#[test]
fn attach_with_a_path_glob_traces_every_copy_of_the_program_it_matches() {
    let bin = Binary::copy("glob");
    let b = bin.path.as_str();
    // A second copy (another file, another inode) next to the first: `usdtop*` matches both.
    let copy = format!("{b}-copy");
    common::build::copy_executable(std::path::Path::new(b), std::path::Path::new(&copy));
    let one = DemoServer::start(b);
    let two = DemoServer::start(&copy);
    let cmd = format!("{b} -a '{b}*:node:http__server__request'");
    let t = Tmux::start("glob", 160, 40, &cmd);
    t.wait_for("requests from the servers of both copies", |s| {
        has_requests_from(s, one.pid) && has_requests_from(s, two.pid)
    });
}

#[test]
fn a_deploy_over_an_attached_file_is_shown_on_the_status_line() {
    let bin = Binary::copy("deploy");
    let b = bin.path.as_str();
    let server = DemoServer::start(b);
    let cmd = format!("{b} -a '{b}:node:http__server__request'");
    let t = Tmux::start("deploy", 200, 40, &cmd);
    t.wait_for("requests from the server", |s| {
        has_requests_from(s, server.pid)
    });
    // A deploy: a new build renamed over the attached file.
    let new = format!("{b}.new");
    common::build::copy_executable(std::path::Path::new(b), std::path::Path::new(&new));
    std::fs::rename(&new, b).unwrap();
    t.wait_for("the replacement reported", |s| {
        s.contains("replaced on disk")
    });
}

#[test]
fn no_color_leaves_only_bold_dim_and_reverse() {
    let bin = Binary::copy("nocolor");
    let b = bin.path.as_str();
    let t = Tmux::start("nocolor", 120, 40, &format!("NO_COLOR=1 {b} --demo"));
    t.wait_for("the demo running", |s| s.contains("method=GET"));
    let out = t
        .tmux()
        .args(["capture-pane", "-e", "-p", "-t", "t"])
        .output()
        .unwrap();
    let styled = String::from_utf8_lossy(&out.stdout).into_owned();
    // Every SGR sequence tmux reports is attributes or a reset to the default colours (39, 49):
    // no 30–37/40–47, 90–107, and no 38;…/48;… colour.
    for sgr in styled.split("\x1b[").skip(1) {
        let Some(params) = sgr.split('m').next() else {
            continue;
        };
        for p in params.split(';').filter(|p| !p.is_empty()) {
            let n: u32 = p.parse().unwrap_or(0);
            assert!(
                n == 39 || n == 49 || (!(30..=49).contains(&n) && !(90..=107).contains(&n)),
                "colour {n} drawn under NO_COLOR"
            );
        }
    }
    assert!(
        styled.contains("\x1b["),
        "bold/reverse still mark the focus and selection"
    );
}

#[test]
fn pairing_kernel_fills_the_histogram_from_the_kernel_and_labels_the_sampled_log() {
    let bin = Binary::copy("kpair");
    let b = bin.path.as_str();
    let t = Tmux::start("kpair", 120, 40, &format!("{b} --demo --pairing kernel"));
    let s = t.wait_for("the sampling label on the log and top panes", |s| {
        s.contains("Request log") && s.matches("sampled 1/").count() >= 2
    });
    assert!(s.contains("in the kernel"), "{s}");
    // The kernel's buckets keep arriving: the count grows past what was seen first.
    let first = histogram_count(&s);
    let s = t.wait_for("a growing histogram with bars", |s| {
        histogram_count(s) > first && s.contains('█')
    });
    // The sampled stream still feeds the log and the top table.
    t.wait_for("paths in the log and the top table", |s| {
        s.contains("/api/users method=GET") && top_pane(s).contains("/api/users")
    });
    assert!(s.contains("● node:http__server__request"), "{s}");
    t.keys(&["q"]);
    t.wait_for("usdtop to exit with status 0", |s| {
        s.contains("usdtop-exited-0")
    });
}

#[test]
fn slash_filters_the_probes_pane_and_the_detail_line_shows_the_whole_probe_at_80x24() {
    let bin = Binary::copy("slash");
    let b = bin.path.as_str();
    let server = DemoServer::start(b);
    let t = Tmux::start("slash", 80, 24, &format!("{b} -p {}", server.pid));
    t.wait_for("the demo server's probes, names cut", |s| {
        s.contains("http__server_…")
    });
    t.keys(&["Tab", "Tab", "/", "*resp?nse", "Enter"]);
    let s = t.wait_for("the probes pane filtered by the glob", |s| {
        s.contains("Probes  /*resp?nse 1/")
    });
    let detail = s
        .lines()
        .find(|l| l.starts_with(" node:http__server__response · "))
        .unwrap_or_else(|| panic!("no detail line:\n{s}"));
    assert!(
        detail.contains("1 site · semaphore: yes (0x") && s.contains("args: conn, remote"),
        "{s}"
    );
    // Space attaches the probe the filter left selected; Esc then clears the filter.
    t.keys(&["Space"]);
    t.wait_for("the filtered probe attached", |s| {
        s.contains("attached node:http__server__response")
    });
    t.keys(&["Escape"]);
    t.wait_for("every probe listed again", |s| {
        !s.contains("/*resp?nse") && s.contains("http__server_…")
    });
}

#[test]
fn a_python_without_probes_is_marked_and_explained_in_the_explorer() {
    let dir = common::build::TempDir::new("e2e-pyenv");
    let python = dir.path().join("python3.11");
    common::build::copy_executable(&common::require("/usr/bin/sleep"), &python);
    let proc = common::KillOnDrop(Command::new(&python).arg("120").spawn().unwrap());
    let bin = Binary::copy("pyenv");
    let cmd = format!("{} -p {}", bin.path, proc.pid());
    let t = Tmux::start("pyenv", 80, 24, &cmd);
    let s = t.wait_for("the hint in the probes pane and on the status line", |s| {
        s.matches("Python without USDT probes").count() == 2
    });
    assert!(s.contains("--with-dtrace"), "{s}");
    let row = s
        .lines()
        .find(|l| l.contains(&format!(" {}  pytho", proc.pid())))
        .unwrap_or_else(|| panic!("no row for the process:\n{s}"));
    assert!(row.contains("?│"), "marked `?`, not a dot: {row}");
}

#[test]
fn a_silent_php_function_probe_gets_its_switch_on_the_status_line() {
    let dir = common::build::TempDir::new("e2e-php");
    let cmd = common::php::calling_functions(dir.path(), None)
        .stdout(Stdio::null())
        .spawn();
    let proc = common::KillOnDrop(cmd.expect("start php8.2"));
    let bin = Binary::copy("phphint");
    let cmd = format!("{} -p {} -a php:function__entry", bin.path, proc.pid());
    let t = Tmux::start("phphint", 200, 40, &cmd);
    t.wait_for("the hint naming USE_ZEND_DTRACE=1", |s| {
        s.contains("hint: php:function__entry: no hits in 5 s") && s.contains("USE_ZEND_DTRACE=1")
    });
}

/// A PHP process calling outer() -> inner() (10 + 5 ms) until killed.
struct PhpCalls(Child);

impl Drop for PhpCalls {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_php_function_pair_paired_in_the_kernel_shows_a_top_row_per_function() {
    let bin = Binary::copy("calls");
    let b = bin.path.as_str();
    let code = "function inner() { usleep(5000); } \
                function outer() { usleep(10000); inner(); } \
                for ($i = 0; $i < 100000; $i++) outer();";
    let php = PhpCalls(
        Command::new(common::php::php_binary())
            // PHP fires its function probes only with this set.
            .env("USE_ZEND_DTRACE", "1")
            .args(["-r", code])
            .stdout(Stdio::null())
            .spawn()
            .expect("start php8.2"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let cmd = format!(
        "{b} -p {} -a php:function__entry -a php:function__return --pairing kernel",
        php.0.id()
    );
    let t = Tmux::start("calls", 160, 45, &cmd);
    // The request log sits left of the top table on the same rows: only the table's columns.
    let table = |s: &str| -> String {
        let top = top_pane(s);
        let col = top
            .lines()
            .next()
            .and_then(|l| l.chars().position(|c| c == '┌'))
            .unwrap_or(0);
        top.lines()
            .map(|l| l.chars().skip(col).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let s = t.wait_for(
        "rows for inner and outer from the kernel's call stacks",
        |s| {
            let top = table(s);
            top.contains("per call, from the kernel")
                && top.contains("inner")
                && top.contains("outer")
        },
    );
    // The P50 column of a function's row, in ms (the row ends with P50 and P99).
    let p50_ms = |name: &str| -> f64 {
        let top = table(&s);
        let row = top.lines().find(|l| l.contains(name)).unwrap_or_default();
        let cols: Vec<&str> = row.trim_matches('│').split_whitespace().collect();
        let p50 = cols
            .len()
            .checked_sub(2)
            .map(|i| cols[i])
            .unwrap_or_default();
        p50.strip_suffix("ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no P50 in ms for {name}: {s}"))
    };
    // outer's latency includes inner's: 15 ms against 5 ms.
    let (inner, outer) = (p50_ms("inner"), p50_ms("outer"));
    assert!((4.5..8.0).contains(&inner), "inner p50 {inner} ms: {s}");
    assert!((14.0..19.0).contains(&outer), "outer p50 {outer} ms: {s}");
}

#[test]
fn shift_o_sets_an_overhead_budget_and_the_header_says_what_was_sampled() {
    let bin = Binary::copy("budget");
    let b = bin.path.as_str();
    let server = DemoServer::start(b);
    let cmd = format!("{b} -p {} -a node:http__server__request", server.pid);
    let t = Tmux::start("budget", 200, 40, &cmd);
    t.wait_for("request events from the demo server", |s| {
        s.contains("method=GET")
    });
    t.keys(&["O"]);
    t.wait_for("the budget on the status line and in the header", |s| {
        let header = s.lines().next().unwrap_or_default();
        s.contains("overhead budget 1%") && header.contains("budget 1%")
    });
    // The demo's requests cost far less than 1 % of the CPU: it stays attached, and says what
    // attaching costs.
    t.wait_for("the estimated cost in the header", |s| {
        s.lines()
            .next()
            .is_some_and(|h| h.contains("budget 1%: attached (cost ~"))
    });
    t.keys(&["O", "O"]);
    t.wait_for("the budget off again", |s| {
        s.contains("overhead budget off")
    });
}
