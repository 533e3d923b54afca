//! The ring-buffer reader thread: drains the ring every ~10 ms, decodes records into [`Event`]s
//! and sends them in batches over a tokio channel.

use super::decode::{decode, SiteTable};
use super::event::Event;
use aya::maps::{MapData, RingBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the reader looks at the ring buffer (the kernel never wakes it per event).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Most events sent in one batch.
const MAX_BATCH: usize = 4096;

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
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Vec<Event>>,
) {
    let mut open = true;
    while !stop.load(Ordering::Relaxed) {
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
        let full = batch.len() == MAX_BATCH;
        let empty_after = !full;
        if !batch.is_empty() {
            counters
                .events
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if open {
                open = send(&tx, batch, &stop);
            }
        }
        if empty_after {
            counters.passes.fetch_add(1, Ordering::Release);
        }
        if !full {
            // Sleep rather than poll: with NO_WAKEUP records, poll(2) returns at once whenever
            // data is waiting, and a reader that chases the producer record by record makes
            // every hit pay for cache-line transfers. Draining every 10 ms batches them.
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Sends a batch, waiting while the channel is full (the ring then fills and the kernel counts
/// drops) but never past `stop`. False once the receiver is gone: the caller keeps draining so
/// that the kernel keeps counting.
fn send(tx: &mpsc::Sender<Vec<Event>>, mut batch: Vec<Event>, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(batch) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(b)) => {
                if stop.load(Ordering::Relaxed) {
                    return true;
                }
                batch = b;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
