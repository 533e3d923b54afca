//! Helpers shared by the tests that trace real programs. Each workload lives in its own file.
#![allow(dead_code)]

pub mod build;
pub mod fixture;
pub mod php;
pub mod postgres;
pub mod python;
pub mod readelf;
pub mod semaphore;

// The listing tests call these as `common::usdtop`, `common::fixtures`, ...
#[allow(unused_imports)]
pub use readelf::*;

use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;
use usdtop::probes::engine::{Engine, EngineOptions};
use usdtop::probes::Event;

/// How long a test waits for events before it fails (a bound on hangs, not a speed check).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn engine() -> Engine {
    Engine::new(EngineOptions::default()).expect("tests run as root with BPF")
}

/// Receives batches until `done(all events so far)` or PATIENCE runs out.
pub fn collect_until(
    rx: &mut Receiver<Vec<Event>>,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let start = Instant::now();
    let mut all = Vec::new();
    while !done(&all) && start.elapsed() < PATIENCE {
        match rx.try_recv() {
            Ok(batch) => all.extend(batch),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    all
}

/// Receives batches for `quiet` after the last one arrived (draining what is in flight).
pub fn drain(rx: &mut Receiver<Vec<Event>>, quiet: Duration) -> Vec<Event> {
    let mut all = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match rx.try_recv() {
            Ok(batch) => {
                all.extend(batch);
                last = Instant::now();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    all
}

/// Skips a test (prints why) when a program it needs is absent.
pub fn require(path: &str) -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(path);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {path} is not installed");
        None
    }
}
