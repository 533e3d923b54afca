//! PHP 8.2's built-in web server (`php8.2 -S`) with forked workers, and a tiny HTTP client.

use super::build::TempDir;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn php_binary() -> Option<PathBuf> {
    super::require("/usr/bin/php8.2")
}

pub struct PhpServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl PhpServer {
    /// `php8.2 -S 127.0.0.1:PORT router.php` with `workers` forked workers; returns once it
    /// answers HTTP.
    pub fn start(php: &std::path::Path, workers: u32) -> PhpServer {
        let dir = TempDir::new("php");
        let router = dir.path().join("router.php");
        std::fs::write(
            &router,
            "<?php echo 'ok ', $_SERVER['REQUEST_URI'], \"\\n\";\n",
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(php)
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&router)
            .env("PHP_CLI_SERVER_WORKERS", workers.to_string())
            .current_dir(dir.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start php8.2 -S");
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

    /// GET `uri`; returns the body.
    pub fn get(&self, uri: &str) -> String {
        http_get(self.port, uri)
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(super::PATIENCE)).unwrap();
    write!(s, "GET {uri} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(resp)
}
