//! The queue between the ring-buffer reader and whoever consumes events (stdout, the TUI, an
//! aggregation), bounded in bytes rather than in batches: a batch may hold one event or 4096
//! events with long strings, so a count of batches bounds nothing.
//!
//! When the consumer is slower than the probes, the reader drops whole batches at the source and
//! counts their events as "dropped: output too slow" — separate from the kernel's ring drops —
//! so memory stays bounded and nothing is discarded uncounted.

use super::event::Event;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Default bound of the queue: enough for several seconds of a fast probe's events.
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

struct Shared {
    /// Bytes queued and not yet taken by the consumer.
    queued: AtomicUsize,
    budget: usize,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
}

/// What the consumer receives: batches of decoded events.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<(Vec<Event>, usize)>,
    shared: Arc<Shared>,
}

/// The reader's end.
pub(super) struct EventSink {
    tx: mpsc::UnboundedSender<(Vec<Event>, usize)>,
    shared: Arc<Shared>,
}

/// A queue holding at most `budget` bytes of events (at least one batch always fits).
pub(super) fn bounded(budget: usize) -> (EventSink, EventStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        budget,
        dropped: AtomicU64::new(0),
    });
    (
        EventSink {
            tx,
            shared: shared.clone(),
        },
        EventStream { rx, shared },
    )
}

/// A handle on the slow-consumer drop count that outlives the stream.
#[derive(Clone)]
pub(super) struct DropCount(Arc<Shared>);

impl DropCount {
    pub fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// What sending a batch did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    Queued,
    /// The queue was full; the batch's events were counted as dropped.
    Dropped,
    /// The consumer is gone.
    Closed,
}

impl EventSink {
    pub fn drop_count(&self) -> DropCount {
        DropCount(self.shared.clone())
    }

    pub fn send(&self, batch: Vec<Event>) -> Sent {
        let bytes = batch.iter().map(Event::approx_bytes).sum::<usize>();
        let queued = self.shared.queued.load(Ordering::Acquire);
        // An empty queue takes any batch, so a budget smaller than one batch still moves events.
        if queued > 0 && queued + bytes > self.shared.budget {
            self.shared
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Sent::Dropped;
        }
        self.shared.queued.fetch_add(bytes, Ordering::AcqRel);
        match self.tx.send((batch, bytes)) {
            Ok(()) => Sent::Queued,
            Err(_) => {
                self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
                Sent::Closed
            }
        }
    }
}

impl EventStream {
    fn take(&self, (batch, bytes): (Vec<Event>, usize)) -> Vec<Event> {
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        batch
    }

    /// The next batch; `None` once the reader has stopped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        let item = self.rx.recv().await?;
        Some(self.take(item))
    }

    /// The next batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Vec<Event>> {
        let item = self.rx.try_recv().ok()?;
        Some(self.take(item))
    }

    /// Bytes queued now.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Empties the queue and counts what was in it as dropped: for a consumer that stops
    /// before it has read everything, so that events received are never discarded uncounted.
    pub fn discard(&mut self) -> u64 {
        let mut n = 0u64;
        while let Some(batch) = self.try_recv() {
            n += batch.len() as u64;
        }
        self.shared.dropped.fetch_add(n, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::tracing::event::ProbeKey;

    fn events(n: usize) -> Vec<Event> {
        let probe = Arc::new(ProbeKey {
            path: "/x".into(),
            provider: "p".into(),
            name: "n".into(),
        });
        (0..n)
            .map(|i| Event {
                ts_ns: i as u64,
                pid: 1,
                tid: 1,
                comm: "c".into(),
                probe: probe.clone(),
                args: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_full_queue_drops_whole_batches_and_counts_their_events() {
        let one = events(10).iter().map(Event::approx_bytes).sum::<usize>();
        let (sink, mut stream) = bounded(one * 2);
        assert_eq!(sink.send(events(10)), Sent::Queued);
        assert_eq!(sink.send(events(10)), Sent::Queued);
        assert_eq!(sink.send(events(10)), Sent::Dropped);
        assert_eq!(sink.drop_count().get(), 10);
        assert_eq!(stream.try_recv().map(|b| b.len()), Some(10));
        assert_eq!(sink.send(events(10)), Sent::Queued, "room again once read");
        assert_eq!(stream.queued_bytes(), one * 2);
    }

    #[test]
    fn an_empty_queue_takes_a_batch_bigger_than_the_budget() {
        let (sink, mut stream) = bounded(1);
        assert_eq!(sink.send(events(100)), Sent::Queued);
        assert_eq!(sink.send(events(1)), Sent::Dropped);
        assert_eq!(stream.try_recv().map(|b| b.len()), Some(100));
        assert_eq!(stream.queued_bytes(), 0);
    }

    #[test]
    fn discarding_counts_what_the_consumer_never_read() {
        let (sink, mut stream) = bounded(1 << 20);
        sink.send(events(3));
        sink.send(events(4));
        assert_eq!(stream.discard(), 7);
        assert_eq!(sink.drop_count().get(), 7);
        assert_eq!(stream.queued_bytes(), 0);
    }

    #[test]
    fn a_gone_consumer_closes_the_queue() {
        let (sink, stream) = bounded(1 << 20);
        drop(stream);
        assert_eq!(sink.send(events(1)), Sent::Closed);
    }
}
