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
        semaphore: Some(0x4a1f30),
        args,
        arg_specs: (0..args).map(|i| format!("8@%r{}", 8 + i)).collect(),
        specs_vary: false,
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
            hint: None,
        },
        ProcessView {
            pid: 42,
            comm: "demo".into(),
            objects: vec![libc, with_probes],
            hint: None,
        },
    ]
}

/// Applies an action that asks the runtime for nothing; fails if it asks for something, so a
/// test cannot drop a command unseen.
pub(crate) fn step(app: &mut App, action: Action) {
    let commands = app.update(action);
    assert!(commands.is_empty(), "unexpected commands: {commands:?}");
}

/// Starts the `/` filter of the focused pane and types `text` into it.
pub(crate) fn type_filter(app: &mut App, text: &str) {
    step(app, Action::StartFilter);
    for c in text.chars() {
        step(app, Action::FilterInput(c));
    }
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

pub(crate) const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
pub(crate) const PYENV_PYTHON: &str = "/root/.pyenv/versions/3.11.7/bin/python3.11";

/// A big provider: PostgreSQL's probes (a selection of its 57 names), each with a semaphore.
pub(crate) fn postgres_object() -> Arc<ObjectView> {
    let names = [
        "buffer__checkpoint__done",
        "buffer__checkpoint__start",
        "buffer__checkpoint__sync__start",
        "buffer__flush__done",
        "buffer__flush__start",
        "buffer__read__done",
        "buffer__read__start",
        "checkpoint__done",
        "checkpoint__start",
        "lwlock__acquire",
        "lwlock__wait__start",
        "query__done",
        "query__execute__done",
        "query__execute__start",
        "query__parse__done",
        "query__parse__start",
        "query__start",
        "sort__start",
        "transaction__commit",
        "transaction__start",
    ];
    let probes = names
        .iter()
        .enumerate()
        .map(|(i, name)| ProbeView {
            provider: "postgresql".into(),
            name: (*name).into(),
            sites: if *name == "sort__start" { 4 } else { 1 },
            semaphore: Some(0x9a_3b00 + 2 * i as u64),
            args: 1,
            arg_specs: vec!["8@%rbx".into()],
            specs_vary: *name == "sort__start",
        })
        .collect();
    Arc::new(ObjectView {
        path: POSTGRES.into(),
        attach_path: POSTGRES.into(),
        probes,
        error: None,
    })
}

/// An app listing a postgres backend (pid 7) and a pyenv python built without probes (pid 9,
/// with the catalog's hint, as the app makes it from a scan).
pub(crate) fn runtimes_app() -> App {
    let mut app = app();
    let mut list = processes();
    list.push(ProcessView {
        pid: 7,
        comm: "postgres".into(),
        objects: vec![postgres_object()],
        hint: None,
    });
    let catalog = Catalog::builtin();
    let python = crate::probes::discovery::hints::ProcessFacts {
        exe: PYENV_PYTHON,
        objects: vec![PYENV_PYTHON],
        providers: Default::default(),
    };
    list.push(ProcessView {
        pid: 9,
        comm: "python3.11".into(),
        objects: vec![Arc::new(ObjectView {
            path: PYENV_PYTHON.into(),
            attach_path: PYENV_PYTHON.into(),
            probes: vec![],
            error: None,
        })],
        hint: catalog.hints().missing_for(&python).map(|h| h.text()),
    });
    step(&mut app, Action::Processes(list));
    app
}
