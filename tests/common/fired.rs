//! A C fixture that fires its probes once on command and reports what it saw (tests/fixtures/
//! cold.c, sized.c): compiled, started, traced by usdtop with `-p`, told to go; usdtop ends once
//! the fixture has exited.

use super::build::{compile, TempDir};
use super::{line_reader, wait_line};
use std::io::Write;
use std::process::{Command, Stdio};

/// What one traced run of a fixture showed.
pub struct FiredRun {
    /// usdtop's stdout and stderr lines.
    pub stdout: Vec<String>,
    pub stderr: String,
    /// The fixture's line starting with "fired".
    pub fired: String,
}

impl FiredRun {
    /// Compiles `source`, starts it (it prints "ready", then waits for a line on stdin), runs
    /// `usdtop ARGS -p PID BINARY:PROBE`, and lets the fixture fire once usdtop has printed a
    /// stderr line starting with `attached`.
    pub fn run(source: &str, probe: &str, args: &[&str], attached: &str) -> FiredRun {
        let dir = TempDir::new("fired");
        let bin = compile("gcc", source, dir.path(), &[]);
        let mut fixture = Command::new(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {source}: {e}"));
        let fixture_out = line_reader(fixture.stdout.take().unwrap());
        wait_line(&fixture_out, "ready", source);

        let pid = fixture.id().to_string();
        let probe = format!("{}:{probe}", bin.display());
        let mut usdtop = Command::new(env!("CARGO_BIN_EXE_usdtop"))
            .args(args)
            .args(["-p", &pid, &probe])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = line_reader(usdtop.stdout.take().unwrap());
        let stderr = line_reader(usdtop.stderr.take().unwrap());
        wait_line(&stderr, attached, "usdtop");

        let mut stdin = fixture.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let fired = wait_line(&fixture_out, "fired", source);
        assert!(fixture.wait().unwrap().success());
        assert!(usdtop.wait().unwrap().success());
        FiredRun {
            stdout: stdout.iter().collect(),
            stderr: stderr.iter().collect::<Vec<_>>().join("\n"),
            fired,
        }
    }
}
