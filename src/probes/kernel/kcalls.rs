//! User-space side of call-shaped pairs in the kernel (bpf/calls.bpf.h, `Mode::Calls`): entry
//! and return probes that nest on a thread, paired on a bounded stack per thread. Gives the
//! probes their roles and reads back the pair's histogram, its latency per key (function name)
//! and how the returns that did not pair with their own entry were resolved. Roles, counters and
//! the histogram live in the pairing maps ([`KernelPairs`]), per-key figures in the top-latency
//! aggregates (`toplat_aggs`), unreadable keys in `top_stats` ([`KernelTop`]).

use super::kpair::{KernelPairStats, KernelPairs, KpairError, Role};
use super::ktop::KernelTop;
use super::ktoplat::{self, Aggs, KeyLatency, KtoplatError};
use crate::probes::tracing::abi::{
    RawCallStack, Stat, CALL_DEPTH, PS_NO_ROOM, PS_STRAY, PS_TOO_DEEP, PS_UNWOUND,
};
use crate::probes::tracing::engine::{Engine, ProbeId};
use aya::maps::{HashMap as BpfHashMap, MapData};
use serde::Serialize;
use std::collections::HashMap;

pub const MAP_STACKS: &str = "call_stacks";
/// Open calls kept per thread (bpf/abi.h `CALL_DEPTH`).
pub const DEPTH: usize = CALL_DEPTH;
/// Pair id in the kernel's counters: one pair per program run.
const PAIR_ID: u16 = 0;

/// Returns and calls that did not pair one entry with its own return, by how the kernel
/// resolved them (bpf/calls.bpf.h). None of them is timed under a wrong key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallMismatches {
    /// Returns on a thread with no open call: calls entered before tracing began.
    pub no_open_call: u64,
    /// Returns whose key is nowhere on the thread's stack; nothing was popped.
    pub not_on_stack: u64,
    /// Open calls dropped because a return matched a call below them: calls that never
    /// returned (an exception or longjmp the runtime did not report, a coroutine switched away).
    pub unwound: u64,
    /// Calls entered deeper than [`DEPTH`] open calls: counted, not timed.
    pub too_deep: u64,
    /// Calls of threads the kernel's stack map had no room for: counted, not timed.
    pub no_room: u64,
}

impl CallMismatches {
    pub fn since(&self, earlier: &CallMismatches) -> CallMismatches {
        CallMismatches {
            no_open_call: self.no_open_call.saturating_sub(earlier.no_open_call),
            not_on_stack: self.not_on_stack.saturating_sub(earlier.not_on_stack),
            unwound: self.unwound.saturating_sub(earlier.unwound),
            too_deep: self.too_deep.saturating_sub(earlier.too_deep),
            no_room: self.no_room.saturating_sub(earlier.no_room),
        }
    }

    /// Everything that did not pair one entry with its own return.
    pub fn total(&self) -> u64 {
        self.no_open_call + self.not_on_stack + self.unwound + self.too_deep + self.no_room
    }
}

/// Cumulative figures of a call-shaped pair since it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCallStats {
    /// Entries (`starts`), paired returns, returns with no open call (`unmatched_done`), and the
    /// histogram of every paired call.
    pub pair: KernelPairStats,
    /// Paired calls per key text (terminal-safe, `…` when cut).
    pub keys: HashMap<String, KeyLatency>,
    pub mismatches: CallMismatches,
    /// Paired calls whose key could not be read (in the histogram, not in `keys`).
    pub unreadable: u64,
    /// Paired calls of a new key while the kernel's key map was full (not in `keys`).
    pub overflow: u64,
}

impl KernelCallStats {
    /// What happened between `earlier` and `self`; keys without new calls are left out.
    pub fn since(&self, earlier: &KernelCallStats) -> KernelCallStats {
        KernelCallStats {
            pair: self.pair.since(&earlier.pair),
            keys: ktoplat::keys_since(&self.keys, &earlier.keys),
            mismatches: self.mismatches.since(&earlier.mismatches),
            unreadable: self.unreadable.saturating_sub(earlier.unreadable),
            overflow: self.overflow.saturating_sub(earlier.overflow),
        }
    }
}

/// Calls open on threads with these stack depths: only the first [`DEPTH`] of a thread are kept
/// (and will be timed).
pub fn open_calls(depths: impl IntoIterator<Item = u32>) -> u64 {
    depths
        .into_iter()
        .map(|d| (d as usize).min(DEPTH) as u64)
        .sum()
}

/// The maps call-shaped pairs use besides the pairing maps, taken from the engine once.
pub struct CallMaps {
    top: KernelTop,
    aggs: Aggs,
    stacks: BpfHashMap<MapData, u64, RawCallStack>,
}

impl CallMaps {
    /// Takes the top, top-latency and call-stack maps from the engine (once per engine).
    pub fn take(engine: &mut Engine) -> Result<CallMaps, KtoplatError> {
        let top = KernelTop::new(engine)?;
        let aggs = ktoplat::take_aggs(engine)?;
        let stacks = engine
            .take_map(MAP_STACKS)
            .ok_or(KtoplatError::Missing(MAP_STACKS))?;
        let stacks = BpfHashMap::try_from(stacks).map_err(|source| KtoplatError::Map {
            map: MAP_STACKS,
            source,
        })?;
        Ok(CallMaps { top, aggs, stacks })
    }
}

/// The maps of a loaded program that call-shaped pairs use, with the probes' roles set.
pub struct KernelCalls {
    pairs: KernelPairs,
    maps: CallMaps,
    start_ids: Vec<ProbeId>,
    done_ids: Vec<ProbeId>,
}

impl KernelCalls {
    /// Takes the maps from the engine (once per engine; the pairing, top and top-latency maps
    /// go with them) and makes `start_ids` the entries and `done_ids` the returns (attached with
    /// `Mode::Calls`) of one call-shaped pair. Probes attached with `Mode::Calls` and no role
    /// (a probe attached only to switch a runtime's probes on) are only counted.
    pub fn new(
        engine: &mut Engine,
        start_ids: Vec<ProbeId>,
        done_ids: Vec<ProbeId>,
    ) -> Result<KernelCalls, KtoplatError> {
        let pairs = KernelPairs::new(engine)?;
        let maps = CallMaps::take(engine)?;
        Ok(KernelCalls::with_maps(pairs, maps, start_ids, done_ids)?)
    }

    /// As [`KernelCalls::new`], with maps already taken from the engine (the explorer moves
    /// pairs in and out of the kernel).
    pub fn with_maps(
        mut pairs: KernelPairs,
        maps: CallMaps,
        start_ids: Vec<ProbeId>,
        done_ids: Vec<ProbeId>,
    ) -> Result<KernelCalls, KpairError> {
        // Returns first: an entry configured before its return would leave frames nobody pops.
        for id in &done_ids {
            pairs.set_role(*id, PAIR_ID, Role::Done, None, 0)?;
        }
        for id in &start_ids {
            pairs.set_role(*id, PAIR_ID, Role::Start, None, 0)?;
        }
        Ok(KernelCalls {
            pairs,
            maps,
            start_ids,
            done_ids,
        })
    }

    /// Takes the probes out of the pair, forgets the calls still open (so that a later pairing
    /// does not meet them), and gives back the maps.
    pub fn into_maps(mut self) -> (KernelPairs, CallMaps) {
        for id in self.start_ids.iter().chain(&self.done_ids) {
            let _ = self.pairs.clear_role(*id);
        }
        self.forget_open();
        (self.pairs, self.maps)
    }

    /// Forgets every thread's open calls (after a gap in the attachment: a return after it
    /// must not pair with an entry before it; it finds no open call and is counted so).
    pub fn forget_open(&mut self) {
        let threads: Vec<u64> = self.maps.stacks.keys().filter_map(Result::ok).collect();
        for t in threads {
            let _ = self.maps.stacks.remove(&t);
        }
    }

    /// Everything counted since the pair was configured.
    pub fn read(&self) -> KernelCallStats {
        let stat = |s| self.pairs.stat(PAIR_ID, s);
        let all = [self.start_ids.as_slice(), &self.done_ids].concat();
        let pair = self.pairs.read(PAIR_ID);
        KernelCallStats {
            mismatches: CallMismatches {
                no_open_call: pair.unmatched_done,
                not_on_stack: stat(PS_STRAY),
                unwound: stat(PS_UNWOUND),
                too_deep: stat(PS_TOO_DEEP),
                no_room: stat(PS_NO_ROOM),
            },
            pair,
            keys: ktoplat::read_keys(&self.maps.aggs, &self.start_ids),
            unreadable: self.maps.top.stat(&all, Stat::Unreadable),
            overflow: self.maps.top.stat(&all, Stat::Overflow),
        }
    }

    /// Calls open right now, on every traced thread.
    pub fn open_calls(&self) -> u64 {
        open_calls(
            self.maps
                .stacks
                .iter()
                .filter_map(Result::ok)
                .map(|(_, s)| s.depth),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kept_frames_of_a_thread_count_as_open_calls() {
        assert_eq!(open_calls([]), 0);
        assert_eq!(open_calls([0, 3, 1]), 4);
        assert_eq!(open_calls([DEPTH as u32 + 10, 2]), DEPTH as u64 + 2);
    }

    #[test]
    fn mismatches_of_an_interval_are_the_difference_and_add_up() {
        let earlier = CallMismatches {
            no_open_call: 1,
            unwound: 2,
            ..CallMismatches::default()
        };
        let now = CallMismatches {
            no_open_call: 1,
            not_on_stack: 1,
            unwound: 5,
            too_deep: 8,
            no_room: 0,
        };
        let d = now.since(&earlier);
        assert_eq!(
            d,
            CallMismatches {
                no_open_call: 0,
                not_on_stack: 1,
                unwound: 3,
                too_deep: 8,
                no_room: 0
            }
        );
        assert_eq!(d.total(), 12);
        assert_eq!(earlier.since(&now), CallMismatches::default());
    }
}
