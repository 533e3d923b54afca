//! A PHP 8.2 built-in web server (`php8.2 -S`) whose router sleeps on `/slow?ms=N`, and a tiny
//! HTTP client that measures each request from the client's side.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PHP: &str = "/usr/bin/php8.2";

const ROUTER: &str = r#"<?php
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path === '/slow') {
    usleep((int)($_GET['ms'] ?? 5) * 1000);
}
echo "ok $path\n";
"#;

pub struct PhpServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl PhpServer {
    /// Starts the server on a free port and waits until it accepts connections.
    pub fn start() -> PhpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("usdtop-agg-php-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("router.php"), ROUTER).unwrap();
        let child = Command::new(PHP)
            .args(["-S", &format!("127.0.0.1:{port}"), "router.php"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php8.2 starts");
        let deadline = Instant::now() + super::PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "php -S never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        PhpServer { child, port, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GETs `path`; returns the time from connect to the end of the response.
    pub fn get(&self, path: &str) -> Duration {
        let t = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        // One write: php -S mishandles a request line split over several packets.
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        s.write_all(request.as_bytes()).unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let took = t.elapsed();
        assert!(
            body.starts_with("HTTP/1.") && body.contains(" 200 "),
            "{path}: {body}"
        );
        took
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
