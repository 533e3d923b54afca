//! The ring-buffer reader thread: drains the ring every ~10 ms, decodes records into events
//! and sends them in batches into the bounded event queue (src/probes/tracing/queue.rs).

use super::decode::{decode, SiteTable};
use super::queue::{EventSink, Sent};
use aya::maps::{MapData, RingBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the reader looks at the ring buffer (the kernel never wakes it per event).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Most events sent in one batch.
const MAX_BATCH: usize = 4096;
/// How long the last pass may read: a ring of 16 MiB decodes in well under this, and probes
/// that keep firing must not keep a stopping reader busy.
const LAST_PASS_BUDGET: Duration = Duration::from_millis(300);

/// How the engine stops the reader.
#[derive(Default)]
pub(super) struct ReaderControl {
    /// Read what the ring holds once more, then stop.
    pub closing: AtomicBool,
    /// Set by the reader when its last pass is over.
    pub done: AtomicBool,
}

/// What the reader counts, shared with the engine.
#[derive(Default)]
pub(super) struct Counters {
    pub events: AtomicU64,
    pub stale: AtomicU64,
    /// Reader passes that ended with the ring empty.
    pub passes: AtomicU64,
}

pub(super) fn read_loop(
    mut ring: RingBuf<MapData>,
    sites: Arc<Mutex<SiteTable>>,
    counters: Arc<Counters>,
    control: Arc<ReaderControl>,
    sink: EventSink,
) {
    let mut open = true;
    loop {
        let last = control.closing.load(Ordering::Acquire);
        // The last pass takes what the ring holds now, not what keeps arriving while it reads.
        let deadline = last.then(|| Instant::now() + LAST_PASS_BUDGET);
        let mut full;
        loop {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut stale = 0u64;
            {
                let sites = sites.lock().unwrap();
                while batch.len() < MAX_BATCH {
                    let Some(item) = ring.next() else { break };
                    match decode(&item, &sites) {
                        Some(e) => batch.push(e),
                        None => stale += 1,
                    }
                }
            }
            counters.stale.fetch_add(stale, Ordering::Relaxed);
            full = batch.len() == MAX_BATCH;
            if !batch.is_empty() {
                counters
                    .events
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if open {
                    open = sink.send(batch) != Sent::Closed;
                }
            }
            if !(full && deadline.is_some_and(|d| Instant::now() < d)) {
                break;
            }
        }
        if !full {
            counters.passes.fetch_add(1, Ordering::Release);
        }
        if last {
            control.done.store(true, Ordering::Release);
            return;
        }
        if !full {
            // Sleep rather than poll: with NO_WAKEUP records, poll(2) returns at once whenever
            // data is waiting, and a reader that chases the producer record by record makes
            // every hit pay for cache-line transfers. Draining every 10 ms batches them.
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}
