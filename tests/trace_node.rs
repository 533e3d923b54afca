//! The node-shaped server (tests/fixtures/node_server.c, Node's probe layout): N requests are
//! exactly N `node:http__server__request` events with the right method and URL, and N
//! responses carry the same fd as their requests.

mod common;

use common::build::{compile, TempDir};
use common::php::http_get;
use common::{collect_until, drain, engine_and_events};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use usdtop::probes::discovery::catalog::Catalog;
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};
use usdtop::probes::{read_probes, ArgValue};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn n_requests_are_exactly_n_request_events_with_method_and_url() {
    let dir = TempDir::new("node");
    let bin = compile("gcc", "tests/fixtures/node_server.c", dir.path(), &[]);
    let mut server = Server(Command::new(&bin).stdout(Stdio::piped()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();

    let object = read_probes(&bin).unwrap();
    let catalog = Catalog::builtin();
    let (mut engine, mut events) = engine_and_events();
    for name in ["http__server__request", "http__server__response"] {
        let probe = object.probes.iter().find(|p| p.name == name).unwrap();
        let options = AttachOptions {
            strings: catalog.string_args(&probe.full_name()),
            filter: ProcFilter::Pids(vec![server.0.id()]),
            ..Default::default()
        };
        engine.attach(&object, probe, &options).unwrap();
    }

    const N: usize = 40;
    let urls: Vec<String> = (0..N)
        .map(|i| format!("/api/v1/items/{i}?full=1"))
        .collect();
    for u in &urls {
        assert_eq!(http_get(port, u).trim(), u);
    }
    let mut got = collect_until(&mut events, |e| e.len() >= 2 * N);
    got.extend(drain(&mut events, Duration::from_millis(100)));
    let requests: Vec<_> = got
        .iter()
        .filter(|e| e.probe.name == "http__server__request")
        .collect();
    let responses: Vec<_> = got
        .iter()
        .filter(|e| e.probe.name == "http__server__response")
        .collect();
    assert_eq!((requests.len(), responses.len()), (N, N));
    for ((req, resp), url) in requests.iter().zip(&responses).zip(&urls) {
        assert_eq!(req.args.len(), 7);
        assert_eq!(req.args[2], ArgValue::Str("127.0.0.1".into()), "remote");
        assert_eq!(req.args[4], ArgValue::Str("GET".into()), "method");
        assert_eq!(req.args[5], ArgValue::Str(url.clone().into()), "url");
        assert_eq!(
            req.args[6], resp.args[3],
            "request and response share the fd"
        );
        assert_eq!(req.args[3], resp.args[2], "and the remote port");
        assert_eq!(req.args[1], resp.args[0], "and the connection");
    }
}

/// The built-in node-shaped workload (`usdtop demo-server`, probes emitted from Rust).
#[test]
fn demo_server_requests_are_exactly_the_request_events_with_method_and_url() {
    let usdtop = std::path::Path::new(env!("CARGO_BIN_EXE_usdtop"));
    let mut server = Server(
        Command::new(usdtop)
            .args(["demo-server", "--no-load"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "usdtop demo-server listening on http://127.0.0.1:PORT pid PID"
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"));

    let object = read_probes(usdtop).unwrap();
    let probe = object
        .probes
        .iter()
        .find(|p| p.provider == "node" && p.name == "http__server__request")
        .expect("usdtop carries node probes");
    let (mut engine, mut events) = engine_and_events();
    let options = AttachOptions {
        strings: Catalog::builtin().string_args("node:http__server__request"),
        filter: ProcFilter::Pids(vec![server.0.id()]),
        ..Default::default()
    };
    engine.attach(&object, probe, &options).unwrap();

    const N: usize = 25;
    let urls: Vec<String> = (0..N).map(|i| format!("/usdtop/test/{i}")).collect();
    for u in &urls {
        http_get(port, u);
    }
    let mut got = collect_until(&mut events, |e| e.len() >= N);
    got.extend(drain(&mut events, Duration::from_millis(100)));
    assert_eq!(got.len(), N, "one event per request");
    for (e, url) in got.iter().zip(&urls) {
        assert_eq!(e.args[4], ArgValue::Str("GET".into()), "method");
        assert_eq!(e.args[5], ArgValue::Str(url.clone().into()), "url");
    }
}
