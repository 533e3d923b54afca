//! tests/fixtures/usdt_fixture.c: probes with known arguments that fire on command.

use super::build::{compile, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The compiled fixture; the binary lives as long as this value.
pub struct FixtureBin {
    _dir: TempDir,
    pub path: PathBuf,
}

impl FixtureBin {
    pub fn build() -> FixtureBin {
        let dir = TempDir::new("fixture");
        let path = compile("gcc", "tests/fixtures/usdt_fixture.c", dir.path(), &[]);
        FixtureBin { _dir: dir, path }
    }

    /// tests/fixtures/throw.cpp: throws and catches N exceptions (`start("", N)`).
    pub fn build_thrower() -> FixtureBin {
        let dir = TempDir::new("throw");
        let path = compile("g++", "tests/fixtures/throw.cpp", dir.path(), &[]);
        FixtureBin { _dir: dir, path }
    }

    /// Starts `usdt_fixture MODE N`; it waits for [`Fixture::go`] before firing.
    pub fn start(&self, mode: &str, n: u64) -> Fixture {
        Fixture::start(&self.path, &[mode, &n.to_string()])
    }

    /// Starts the binary with these arguments; it waits for [`Fixture::go`] before firing.
    pub fn start_with(&self, args: &[&str]) -> Fixture {
        Fixture::start(&self.path, args)
    }
}

pub struct Fixture {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Fixture {
    fn start(bin: &Path, args: &[&str]) -> Fixture {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Fixture::spawn(cmd)
    }

    /// Runs `cmd`, which must end up running the fixture (e.g. `unshare ... sh -c 'exec ...'`).
    pub fn spawn(mut cmd: Command) -> Fixture {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fixture");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Fixture {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets it fire, and waits until it has.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
        self.child.wait().unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
