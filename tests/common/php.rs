//! PHP 8.2's built-in web server (`php8.2 -S`), optionally with forked workers, whose router
//! answers `ok URI` and sleeps first on `/slow?ms=N`; and a tiny HTTP client.

use super::build::TempDir;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUTER: &str = r#"<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path === '/slow') {
    usleep((int)($_GET['ms'] ?? 5) * 1000);
}
echo 'ok ', $_SERVER['REQUEST_URI'], "\n";
"#;

/// A PHP script that calls a function about 500 times a second, for two minutes.
const CALLS: &str = "<?php\nfunction tick($i) { return $i + 1; }\n$n = 0;\n\
for ($t = time(); time() - $t < 120;) { $n = tick($n); usleep(2000); }\n";

/// `php8.2 calls.php` (written into `dir`), calling `tick()` about 500 times a second, with
/// `USE_ZEND_DTRACE` set to `zend_dtrace` or, with `None`, not set.
pub fn calling_functions(dir: &Path, zend_dtrace: Option<&str>) -> Command {
    let script = dir.join("calls.php");
    std::fs::write(&script, CALLS).unwrap();
    let mut cmd = Command::new(php_binary());
    cmd.arg(script).env_remove("USE_ZEND_DTRACE");
    if let Some(v) = zend_dtrace {
        cmd.env("USE_ZEND_DTRACE", v);
    }
    cmd
}

pub fn php_binary() -> PathBuf {
    super::require("/usr/bin/php8.2")
}

pub struct PhpServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl PhpServer {
    /// `php8.2 -S 127.0.0.1:PORT router.php`; with `workers` > 1 that many forked workers serve
    /// (1: the master alone). Returns once it accepts connections.
    pub fn start(php: &Path, workers: u32) -> PhpServer {
        let dir = TempDir::new("php");
        std::fs::write(dir.path().join("router.php"), ROUTER).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut cmd = Command::new(php);
        cmd.args(["-S", &format!("127.0.0.1:{port}"), "router.php"])
            .current_dir(dir.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if workers > 1 {
            cmd.env("PHP_CLI_SERVER_WORKERS", workers.to_string());
        }
        let child = cmd.spawn().expect("start php8.2 -S");
        let server = PhpServer {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < super::PATIENCE, "php -S did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET `uri`, which must succeed (200); returns the body.
    pub fn get(&self, uri: &str) -> String {
        self.timed_get(uri).0
    }

    /// GET `uri`, which must succeed (200); returns the body and the time from connect to the
    /// end of the response (what the client waited).
    pub fn timed_get(&self, uri: &str) -> (String, Duration) {
        let t = Instant::now();
        let resp = exchange(self.port, uri);
        let took = t.elapsed();
        assert!(
            resp.starts_with("HTTP/1.") && resp.contains(" 200 "),
            "{uri}: {resp}"
        );
        (body(resp), took)
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        // The workers outlive a killed master: signal the whole process group.
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`; returns the body.
pub fn http_get(port: u16, uri: &str) -> String {
    body(exchange(port, uri))
}

/// Sends one GET and returns the whole response (status line, headers, body).
fn exchange(port: u16, uri: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(super::PATIENCE)).unwrap();
    // One write: php -S mishandles a request line split over several packets.
    let request = format!("GET {uri} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn body(resp: String) -> String {
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(resp)
}
