//! PHP 8.2's web server with two forked workers (the master serves too): each HTTP request is one
//! `php:request__startup` event carrying its URI and method.

mod common;

use common::php::{php_binary, PhpServer};
use common::{collect_until, drain, engine_and_events};
use std::time::Duration;
use usdtop::probes::tracing::engine::{AttachOptions, ProcFilter};
use usdtop::probes::{read_probes, ArgValue};

#[test]
fn request_startup_uris_are_the_requests_made() {
    let php = php_binary();
    let server = PhpServer::start(&php, 2);
    let object = read_probes(&php).unwrap();
    let probe = object
        .probes
        .iter()
        .find(|p| p.name == "request__startup")
        .unwrap();
    let (mut engine, mut events) = engine_and_events();
    // The workers already exist: the filter takes the master and its current children.
    let options = AttachOptions {
        strings: vec![0, 1, 2],
        filter: ProcFilter::Pids(vec![server.pid()]),
        ..Default::default()
    };
    engine.attach(&object, probe, &options).unwrap();

    let mut sent: Vec<String> = (0..30).map(|i| format!("/item/{i}?q=usdtop")).collect();
    for uri in &sent {
        assert_eq!(server.get(uri).trim(), format!("ok {uri}"));
    }
    let mut got = collect_until(&mut events, |e| e.len() >= sent.len());
    got.extend(drain(&mut events, Duration::from_millis(200)));
    let mut uris: Vec<String> = got
        .iter()
        .map(|e| {
            assert_eq!(e.args[2], ArgValue::Str("GET".into()));
            match &e.args[1] {
                ArgValue::Str(u) => u.lossy().into_owned(),
                other => panic!("uri is not a string: {other:?}"),
            }
        })
        .collect();
    uris.sort();
    sent.sort();
    assert_eq!(uris, sent);
    assert!(
        got.iter().any(|e| e.pid != server.pid()),
        "requests served by the forked workers are traced"
    );
}
