//! The demo HTTP/1.1 server: one thread per connection (keep-alive), a handful of routes with
//! different latencies, and the node probes fired around every request.

use super::probes;
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Longest `/slow?ms=N` honoured, so a typo cannot park a connection for hours.
const MAX_SLOW_MS: u64 = 10_000;
/// Request heads longer than this are refused (bad input gets a clear 431, not a hang).
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// A running demo server. Dropping it stops accepting and winds the connections down.
pub struct DemoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
}

impl DemoServer {
    pub fn start(port: u16) -> io::Result<DemoServer> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServerStats::default());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        thread::Builder::new()
            .name("demo-accept".into())
            .spawn(move || accept_loop(listener, stop2, stats2))?;
        Ok(DemoServer { addr, stop, stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, stats: Arc<ServerStats>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(conn) = conn else { continue };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (stop, stats) = (stop.clone(), stats.clone());
        let _ = thread::Builder::new()
            .name("demo-conn".into())
            .spawn(move || serve_connection(conn, &stop, &stats));
    }
}

/// What Node's probes call the connection: remote address and port, and the socket fd.
struct Peer {
    remote: CString,
    port: u16,
    fd: i32,
}

fn serve_connection(conn: TcpStream, stop: &AtomicBool, stats: &ServerStats) {
    let _ = conn.set_nodelay(true);
    // A read timeout lets an idle keep-alive connection notice the server stopping.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let peer_addr = conn.peer_addr().ok();
    let peer = Peer {
        remote: CString::new(peer_addr.map(|a| a.ip().to_string()).unwrap_or_default())
            .unwrap_or_default(),
        port: peer_addr.map(|a| a.port()).unwrap_or(0),
        fd: conn.as_raw_fd(),
    };
    // Node passes pointers to its connection and request objects; ours are real addresses too.
    let conn_ptr = &peer as *const Peer as *const u8;
    probes::net_server_connection(conn_ptr, &peer.remote, peer.port, peer.fd);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut rng = Rng::new(peer.port as u64 ^ peer.fd as u64);
    while !stop.load(Ordering::Relaxed) {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        };
        let Some(req) = head else {
            let _ = writer.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            break;
        };
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let method = CString::new(req.method.as_str()).unwrap_or_default();
        let url = CString::new(req.target.as_str()).unwrap_or_default();
        let req_ptr = &req as *const Request as *const u8;
        probes::http_server_request(
            req_ptr,
            conn_ptr,
            &peer.remote,
            peer.port,
            &method,
            &url,
            peer.fd,
        );
        let (status, body) = route(&req.target, &mut rng);
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if req.close { "Connection: close\r\n" } else { "" },
        );
        let written = writer.write_all(response.as_bytes());
        probes::http_server_response(conn_ptr, &peer.remote, peer.port, peer.fd);
        if written.is_err() || req.close {
            break;
        }
    }
    probes::net_stream_end(conn_ptr, &peer.remote, peer.port, peer.fd);
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Request {
    method: String,
    target: String,
    close: bool,
}

/// Reads one request head. `Ok(None)` = connection closed; `Ok(Some(None))` = head too large
/// or malformed.
#[allow(clippy::type_complexity)]
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Option<Request>>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("");
    let mut close = version == "HTTP/1.0";
    let mut total = line.len();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        total += header.len();
        if total > MAX_HEAD_BYTES {
            return Ok(Some(None));
        }
        let h = header.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("connection") {
                let v = value.trim();
                if v.eq_ignore_ascii_case("close") {
                    close = true;
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    if method.is_empty() || target.is_empty() {
        return Ok(Some(None));
    }
    Ok(Some(Some(Request {
        method,
        target,
        close,
    })))
}

/// The demo's routes: fast ones, a search taking 5–20 ms, `/slow?ms=N`, and 404 for the rest.
fn route(target: &str, rng: &mut Rng) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/api/users" => ("200 OK", r#"{"users":[{"id":1,"name":"ada"}]}"#.into()),
        "/api/orders" => {
            thread::sleep(Duration::from_micros(500 + rng.below(1500)));
            ("200 OK", r#"{"orders":[]}"#.into())
        }
        "/api/search" => {
            thread::sleep(Duration::from_millis(5 + rng.below(16)));
            ("200 OK", r#"{"hits":3}"#.into())
        }
        "/slow" => {
            let ms = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(100)
                .min(MAX_SLOW_MS);
            thread::sleep(Duration::from_millis(ms));
            ("200 OK", format!(r#"{{"slept_ms":{ms}}}"#))
        }
        "/static/app.js" => ("200 OK", "console.log('hi')".into()),
        "/health" => ("200 OK", "ok".into()),
        _ => ("404 Not Found", r#"{"error":"not found"}"#.into()),
    }
}

/// A tiny xorshift generator: the demo needs variety, not quality, and no extra dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_known_paths_and_404s_the_rest() {
        let server = DemoServer::start(0).unwrap();
        assert!(get(server.addr(), "/api/users").starts_with("HTTP/1.1 200 OK"));
        assert!(get(server.addr(), "/slow?ms=1").contains(r#""slept_ms":1"#));
        assert!(get(server.addr(), "/nope").starts_with("HTTP/1.1 404"));
        assert_eq!(server.stats().requests.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_oversized_request_head_gets_431_not_a_hang() {
        let server = DemoServer::start(0).unwrap();
        let mut s = TcpStream::connect(server.addr()).unwrap();
        let big = "X-Pad: ".to_string() + &"a".repeat(MAX_HEAD_BYTES) + "\r\n";
        write!(s, "GET / HTTP/1.1\r\n{big}\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }
}
