//! Standard output on its own thread, behind a queue bounded in bytes: a stalled reader of
//! stdout (a pipe into `less`, a paused terminal) can neither block the event loop — which must
//! stay free to stop on time — nor make usdtop's memory grow. What does not fit is dropped
//! and counted, as is what is still queued when usdtop has to exit.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of formatted output that may wait for stdout.
pub const OUTPUT_QUEUE_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    /// Events whose text reached stdout.
    written: AtomicU64,
    /// stdout refused a write (closed pipe): nothing more can be printed.
    closed: AtomicBool,
    finished: AtomicBool,
}

/// The sending end; the thread writes what it is sent, in order.
pub struct Output {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    shared: Arc<Shared>,
    budget: usize,
    /// Events refused because the queue was full.
    dropped: u64,
    /// Events accepted into the queue.
    accepted: u64,
}

/// What became of the events handed to [`Output`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Events whose text reached stdout.
    pub printed: u64,
    /// Events dropped because stdout was slower than the probes, or still unwritten at exit.
    pub too_slow: u64,
}

/// Writes `chunk`, adding to `written` each line as soon as it has reached the file: every
/// event is one line, so a chunk cut short at exit still counts exactly the events printed.
fn write_counting_lines(
    out: &mut impl Write,
    chunk: &[u8],
    written: &AtomicU64,
) -> std::io::Result<()> {
    let mut rest = chunk;
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                let lines = rest[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                written.fetch_add(lines, Ordering::Release);
                rest = &rest[n..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Output {
    /// Starts the writer thread on file descriptor 1.
    pub fn stdout(budget: usize) -> std::io::Result<Output> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("usdtop-stdout".into())
            .spawn(move || {
                // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never
                // closes it. Writing the fd directly avoids std's stdout lock, which the exit
                // path may need while this thread is blocked in write(2).
                let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
                for chunk in rx {
                    if write_counting_lines(&mut *out, &chunk, &s.written).is_err() {
                        s.closed.store(true, Ordering::Release);
                        break;
                    }
                    s.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
                }
                s.finished.store(true, Ordering::Release);
            })?;
        Ok(Output {
            tx: Some(tx),
            shared,
            budget,
            dropped: 0,
            accepted: 0,
        })
    }

    /// Queues the text of `events` events; false (and counted) when the queue is full.
    pub fn send(&mut self, chunk: Vec<u8>, events: u64) -> bool {
        let queued = self.shared.queued.load(Ordering::Acquire);
        if queued > 0 && queued + chunk.len() > self.budget {
            self.dropped += events;
            return false;
        }
        let Some(tx) = &self.tx else {
            self.dropped += events;
            return false;
        };
        self.shared.queued.fetch_add(chunk.len(), Ordering::AcqRel);
        if tx.send(chunk).is_err() {
            self.dropped += events;
            return false;
        }
        self.accepted += events;
        true
    }

    /// Whether stdout has been closed by its reader.
    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Lets the thread write what is queued, for at most `timeout`; what is left then is
    /// counted as too slow (the thread ends with the process).
    pub fn finish(mut self, timeout: Duration) -> Written {
        drop(self.tx.take());
        let deadline = Instant::now() + timeout;
        while !self.shared.finished.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let printed = self.shared.written.load(Ordering::Acquire);
        Written {
            printed,
            too_slow: self.dropped + (self.accepted - printed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `n` bytes per write, as a pipe with little room does.
    struct Trickle(Vec<u8>, usize);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_count_as_printed_once_they_have_reached_the_file_even_in_pieces() {
        let written = AtomicU64::new(0);
        let mut out = Trickle(Vec::new(), 4);
        write_counting_lines(&mut out, b"one\ntwo\nthree\n", &written).unwrap();
        assert_eq!(out.0, b"one\ntwo\nthree\n");
        assert_eq!(written.load(Ordering::Acquire), 3);
    }
}
