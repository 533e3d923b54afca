//! Test fixtures shared by the app and UI tests: a two-process machine and a paired request
//! stream (synthetic events: these tests are about state and drawing, not tracing).

use super::*;
use crate::probes::discovery::catalog::Catalog;
use crate::probes::{ArgValue, Event, ProbeKey};
use std::sync::Arc;

pub(crate) const MS: u64 = 1_000_000;
pub(crate) const BIN: &str = "/usr/bin/demo";

pub(crate) fn probe(name: &str, args: usize) -> ProbeView {
    ProbeView {
        provider: "node".into(),
        name: name.into(),
        sites: 1,
        semaphore: true,
        args,
    }
}

pub(crate) fn processes() -> Vec<ProcessView> {
    let with_probes = Arc::new(ObjectView {
        path: BIN.into(),
        attach_path: BIN.into(),
        probes: vec![
            probe("http__server__request", 7),
            probe("http__server__response", 4),
        ],
        error: None,
    });
    let libc = Arc::new(ObjectView {
        path: "/usr/lib/libc.so.6".into(),
        attach_path: "/usr/lib/libc.so.6".into(),
        probes: vec![],
        error: None,
    });
    vec![
        ProcessView {
            pid: 1,
            comm: "init".into(),
            objects: vec![libc.clone()],
        },
        ProcessView {
            pid: 42,
            comm: "demo".into(),
            objects: vec![libc, with_probes],
        },
    ]
}

/// Applies an action that asks the runtime for nothing; fails if it asks for something, so a
/// test cannot drop a command unseen.
pub(crate) fn step(app: &mut App, action: Action) {
    let commands = app.update(action);
    assert!(commands.is_empty(), "unexpected commands: {commands:?}");
}

/// The runtime's report that `name` (in [`BIN`]) is attached at one site.
pub(crate) fn attached(app: &mut App, name: &str) {
    step(
        app,
        Action::Attached {
            probe: key(name),
            sites: 1,
        },
    );
}

pub(crate) fn app() -> App {
    let mut app = App::new(Arc::new(Catalog::builtin()));
    step(&mut app, Action::Processes(processes()));
    app
}

pub(crate) fn key(name: &str) -> Arc<ProbeKey> {
    Arc::new(ProbeKey {
        path: BIN.into(),
        provider: "node".into(),
        name: name.into(),
    })
}

pub(crate) fn request(ts_ms: u64, fd: i64, url: &str) -> Event {
    Event {
        ts_ns: ts_ms * MS,
        pid: 42,
        tid: 42,
        comm: "demo".into(),
        probe: key("http__server__request"),
        args: vec![
            ArgValue::signed(1),
            ArgValue::signed(2),
            ArgValue::Str("127.0.0.1".into()),
            ArgValue::signed(5000),
            ArgValue::Str("GET".into()),
            ArgValue::Str(url.into()),
            ArgValue::signed(fd),
        ],
    }
}

pub(crate) fn response(ts_ms: u64, fd: i64) -> Event {
    Event {
        ts_ns: ts_ms * MS,
        pid: 42,
        tid: 42,
        comm: "demo".into(),
        probe: key("http__server__response"),
        args: vec![
            ArgValue::signed(2),
            ArgValue::Str("127.0.0.1".into()),
            ArgValue::signed(5000),
            ArgValue::signed(fd),
        ],
    }
}

/// An app with both node probes attached and traffic: /fast 1 ms ×3, /slow 100 ms ×1.
pub(crate) fn app_with_traffic() -> App {
    let mut app = app();
    attached(&mut app, "http__server__request");
    attached(&mut app, "http__server__response");
    step(
        &mut app,
        Action::Events(vec![
            request(1000, 7, "/fast"),
            response(1001, 7),
            request(1002, 7, "/fast"),
            response(1003, 7),
            request(1004, 8, "/slow"),
            request(1005, 7, "/fast"),
            response(1006, 7),
            response(1104, 8),
        ]),
    );
    step(&mut app, Action::Tick { now_ns: 1200 * MS });
    app
}
