//! Time windows and a ring of per-second slots (the building block of windowed statistics).

use serde::Serialize;

pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Which span of time a statistic covers, ending at "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Window {
    Last10s,
    Last1m,
    All,
}

impl Window {
    /// Length in whole seconds, `None` for all time.
    pub fn secs(self) -> Option<u64> {
        match self {
            Window::Last10s => Some(10),
            Window::Last1m => Some(60),
            Window::All => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Last10s => "10s",
            Window::Last1m => "1m",
            Window::All => "all",
        }
    }

    /// The next window in the order 10s → 1m → all → 10s (for a toggle key).
    pub fn next(self) -> Window {
        match self {
            Window::Last10s => Window::Last1m,
            Window::Last1m => Window::All,
            Window::All => Window::Last10s,
        }
    }
}

/// The longest window a ring must cover, in seconds.
pub const RING_SECS: usize = 60;

/// A ring of per-second slots, each tagged with the second it holds so stale slots are
/// recognised (and reset) lazily instead of by a timer.
#[derive(Debug, Clone)]
pub struct SecondRing<T> {
    slots: Vec<(u64, Option<T>)>,
}

impl<T> Default for SecondRing<T> {
    fn default() -> Self {
        SecondRing::new()
    }
}

impl<T> SecondRing<T> {
    pub fn new() -> Self {
        SecondRing {
            slots: (0..RING_SECS).map(|_| (u64::MAX, None)).collect(),
        }
    }

    /// The slot for second `sec`, created with `make` (or reset with `reset`) if it held an
    /// older second.
    pub fn slot_mut(
        &mut self,
        sec: u64,
        make: impl FnOnce() -> T,
        reset: impl FnOnce(&mut T),
    ) -> &mut T {
        let i = (sec % RING_SECS as u64) as usize;
        let (tag, value) = &mut self.slots[i];
        let stale = *tag != sec;
        *tag = sec;
        let existed = value.is_some();
        let v = value.get_or_insert_with(make);
        if stale && existed {
            reset(v);
        }
        v
    }

    /// Slots holding seconds in `(now_sec - secs, now_sec]`.
    pub fn in_window(&self, now_sec: u64, secs: u64) -> impl Iterator<Item = &T> {
        let oldest = now_sec.saturating_sub(secs.saturating_sub(1));
        self.slots.iter().filter_map(move |(tag, v)| {
            if *tag != u64::MAX && *tag >= oldest && *tag <= now_sec {
                v.as_ref()
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(ring: &mut SecondRing<u64>, sec: u64, n: u64) {
        *ring.slot_mut(sec, || 0, |v| *v = 0) += n;
    }

    #[test]
    fn a_window_sums_only_the_seconds_it_covers() {
        let mut ring = SecondRing::new();
        add(&mut ring, 100, 1);
        add(&mut ring, 105, 2);
        add(&mut ring, 109, 4);
        assert_eq!(ring.in_window(109, 10).sum::<u64>(), 7);
        assert_eq!(
            ring.in_window(110, 10).sum::<u64>(),
            6,
            "second 100 has left the window"
        );
        assert_eq!(ring.in_window(109, 1).sum::<u64>(), 4);
    }

    #[test]
    fn a_slot_reused_a_minute_later_starts_from_zero() {
        let mut ring = SecondRing::new();
        add(&mut ring, 5, 3);
        add(&mut ring, 5 + RING_SECS as u64, 1);
        assert_eq!(ring.in_window(5 + RING_SECS as u64, 60).sum::<u64>(), 1);
    }

    #[test]
    fn windows_cycle_for_the_toggle_key() {
        assert_eq!(Window::Last10s.next().next().next(), Window::Last10s);
        assert_eq!(Window::All.secs(), None);
    }
}
