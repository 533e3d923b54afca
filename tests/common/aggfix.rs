//! tests/fixtures/aggfix.c: the `aggfix` USDT fixture of the latency/top tests. It waits until a
//! tracer has attached (seen through its semaphores), fires, and prints `fired N`.

use super::build::copy_executable;
use super::line_reader;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;

/// The fixture, compiled once per test binary.
pub fn aggfix() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aggfix");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aggfix.c");
        let status = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("cc runs (systemtap-sdt-dev provides <sys/sdt.h>)");
        assert!(status.success(), "aggfix.c compiles");
        out
    })
}

/// A running aggfix process.
pub struct AggFix {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    copy: PathBuf,
}

impl AggFix {
    /// Runs a private copy of the fixture: a tracer attached to one file raises the semaphores
    /// of every process running that file, so tests running side by side would otherwise see
    /// each other's tracers as their own.
    pub fn start(args: &[&str]) -> AggFix {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let copy = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "aggfix-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self::start_copy(copy, args)
    }

    /// Copies the fixture to `copy` (a path of the test's choosing, e.g. to match a glob) and
    /// runs it there as [`AggFix::start`] does; the copy is removed when this value is dropped.
    pub fn start_copy(copy: PathBuf, args: &[&str]) -> AggFix {
        copy_executable(aggfix(), &copy);
        let mut child = Command::new(&copy)
            .args(args)
            .env("AGGFIX_GO_ON_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fixture starts");
        let lines = line_reader(child.stdout.take().unwrap());
        AggFix { child, lines, copy }
    }

    /// The file this fixture runs (name probes in it as `PATH:aggfix:...`).
    pub fn path(&self) -> &Path {
        &self.copy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the fixture fire: call once the tracer says it is tracing.
    pub fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("fixture stdin");
        stdin.write_all(b"go\n").expect("tell the fixture to go");
    }

    /// Waits for a line starting with `prefix` on the fixture's stdout.
    pub fn wait_for(&self, prefix: &str) -> String {
        super::wait_line(&self.lines, prefix, "fixture")
    }

    pub fn wait(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "fixture exited with {status}");
    }

    /// Kills the fixture mid-request.
    pub fn kill(self) {}
}

impl Drop for AggFix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.copy);
    }
}
