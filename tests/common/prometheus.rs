//! A real Prometheus server (Debian's `prometheus`) scraping one target every second, with a
//! temporary config and TSDB, queried through its HTTP API. Classic: it asks for the text
//! exposition and stores classic histograms; native (`--enable-feature=native-histograms`): it
//! asks for the protobuf exposition and Prometheus 2.42 then stores a histogram that has native
//! buckets as a native histogram only.

use super::require;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a query may take to show what a scrape brought in (scrapes are every second; the
/// bound only catches hangs on a loaded machine).
pub const PATIENCE: Duration = Duration::from_secs(90);

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    /// Starts a classic Prometheus on a free loopback port scraping `target` (`HOST:PORT`),
    /// and waits until it is ready.
    pub fn start(target: &str) -> Prometheus {
        Prometheus::launch(target, false)
    }

    /// As [`Prometheus::start`], with native histograms enabled.
    pub fn start_native(target: &str) -> Prometheus {
        Prometheus::launch(target, true)
    }

    fn launch(target: &str, native: bool) -> Prometheus {
        let binary = require("/usr/bin/prometheus");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "prometheus-{}-{}-{}",
            std::process::id(),
            target.replace(':', "_"),
            if native { "native" } else { "classic" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: usdtop\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"));
        if native {
            command.arg("--enable-feature=native-histograms");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus { child, dir, addr };
        prometheus.wait_until("ready", |p| {
            get(&p.addr, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        prometheus
    }

    /// Polls `done` until it holds, failing the test after [`PATIENCE`] with Prometheus's log.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Prometheus) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("prometheus: not {what} within {PATIENCE:?}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of an instant query that yields one series, if it yields one now.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = get(&self.addr, &path)?;
        assert_eq!(status, 200, "query {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("prometheus answers JSON");
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            [] => None,
            many => panic!("query {promql} yields {} series: {body}", many.len()),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET over HTTP/1.0: the status and body, or None when nothing answers.
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
