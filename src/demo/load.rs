//! The demo's load generator: keep-alive client connections sending a paced mix of requests.

use super::server::Rng;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Which requests the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mix {
    /// Fast and slow paths and some 404s: what the panes are meant to show.
    #[default]
    Realistic,
    /// Only paths that answer at once: for pushing event rates (benchmarks).
    Fast,
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Requests per second over all connections; 0 = as fast as the server answers.
    pub rate: f64,
    /// Client connections; 0 = chosen from the rate and mix.
    pub connections: usize,
    pub mix: Mix,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            rate: 200.0,
            connections: 0,
            mix: Mix::Realistic,
        }
    }
}

/// A running load generator; dropping it stops the clients.
pub struct LoadGenerator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl LoadGenerator {
    pub fn start(addr: SocketAddr, cfg: LoadConfig) -> LoadGenerator {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let conns = connections_for(&cfg);
        let per_conn_interval = if cfg.rate > 0.0 {
            Some(Duration::from_secs_f64(conns as f64 / cfg.rate))
        } else {
            None
        };
        for i in 0..conns {
            let (stop, sent, errors) = (stop.clone(), sent.clone(), errors.clone());
            let mix = cfg.mix;
            let _ = thread::Builder::new()
                .name("demo-load".into())
                .spawn(move || {
                    let mut rng = Rng::new(0xC0FFEE + i as u64);
                    while !stop.load(Ordering::Relaxed) {
                        let r = client_loop(addr, mix, per_conn_interval, &mut rng, &stop, &sent);
                        if r.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                });
        }
        LoadGenerator { stop, sent, errors }
    }

    /// Responses received so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Connection failures so far (each is retried after a pause).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connections_for(cfg: &LoadConfig) -> usize {
    if cfg.connections > 0 {
        return cfg.connections;
    }
    match cfg.mix {
        // The realistic mix averages ~8 ms a request, so one connection manages ~100/s.
        Mix::Realistic => ((cfg.rate / 60.0).ceil() as usize).clamp(4, 64),
        Mix::Fast => 4,
    }
}

fn pick_path(mix: Mix, rng: &mut Rng) -> &'static str {
    let roll = rng.below(100);
    match mix {
        Mix::Fast => match roll {
            0..=59 => "/api/users",
            60..=84 => "/static/app.js",
            85..=94 => "/health",
            _ => "/api/nope",
        },
        Mix::Realistic => match roll {
            0..=44 => "/api/users",
            45..=64 => "/api/orders",
            65..=79 => "/api/search",
            80..=87 => "/static/app.js",
            88..=89 => "/slow?ms=50",
            90 => "/slow?ms=100",
            91 => "/slow?ms=250",
            92..=96 => "/api/nope",
            _ => "/health",
        },
    }
}

fn client_loop(
    addr: SocketAddr,
    mix: Mix,
    interval: Option<Duration>,
    rng: &mut Rng,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut next = Instant::now();
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(interval) = interval {
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else if now - next > Duration::from_secs(1) {
                // Far behind (slow responses): do not burst to catch up.
                next = now;
            }
            next += interval;
        }
        let path = pick_path(mix, rng);
        write!(writer, "GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n")?;
        read_response(&mut reader, &mut body)?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn read_response(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> io::Result<()> {
    let mut line = String::new();
    let mut length = 0usize;
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if first {
            first = false;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    body.resize(length, 0);
    reader.read_exact(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DemoServer;

    #[test]
    fn load_generator_gets_answers_from_the_demo_server() {
        let server = DemoServer::start(0).unwrap();
        let load = LoadGenerator::start(
            server.addr(),
            LoadConfig {
                rate: 500.0,
                connections: 2,
                mix: Mix::Fast,
            },
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while load.sent() < 20 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(load.sent() >= 20, "only {} responses", load.sent());
        assert_eq!(load.errors(), 0);
    }
}
