//! User-space side of in-kernel `top` (bpf/top.bpf.h, `Mode::Top`): per (probe, string) hit
//! counts summed over CPUs, and the hits the kernel could not key (unreadable string, full map).
//! Keys are cut at [`KEY_LEN`]` - 1` bytes (marked) and made safe for a terminal as streamed
//! strings are.

pub use crate::probes::tracing::abi::Stat;
use crate::probes::tracing::abi::{
    RawTopHkey, RawTopSlot, RawTopVal, TOP_KEY_LEN, TOP_SLOTS, TOP_TRUNCATED, TS_NR,
};
use crate::probes::tracing::engine::{Engine, ProbeId};
use crate::probes::tracing::event::{terminal_safe, TRUNCATED_MARK};
use aya::maps::{MapData, MapError, PerCpuArray, PerCpuHashMap};
use std::collections::HashMap;
use thiserror::Error;

pub const MAP_COUNTS: &str = "top_counts";
pub const MAP_STATS: &str = "top_stats";
pub const MAP_SLOTS: &str = "top_slots";
/// Bytes of a key, NUL included: longer strings are cut to `KEY_LEN - 1`.
pub const KEY_LEN: usize = TOP_KEY_LEN;

#[derive(Debug, Error)]
pub enum KtopError {
    #[error("BPF map `{0}` is missing (already taken, or the program predates in-kernel top)")]
    Missing(&'static str),
    #[error("BPF map `{map}`: {source}")]
    Map { map: &'static str, source: MapError },
}

/// Cumulative figures of one probe since it was attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelTopCounts {
    /// Hits per key text (terminal-safe, `…` when cut).
    pub keys: HashMap<String, u64>,
    /// Hits without a readable string argument.
    pub unreadable: u64,
    /// Hits of a new key while the kernel map was full, or whose 64-bit hash was another
    /// string's (not in `keys`).
    pub overflow: u64,
}

impl KernelTopCounts {
    /// What happened between `earlier` and `self` (for per-interval reports); keys without new
    /// hits are left out.
    pub fn since(&self, earlier: &KernelTopCounts) -> KernelTopCounts {
        KernelTopCounts {
            keys: self
                .keys
                .iter()
                .map(|(k, n)| {
                    (
                        k,
                        n.saturating_sub(earlier.keys.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.clone(), n))
                .collect(),
            unreadable: self.unreadable.saturating_sub(earlier.unreadable),
            overflow: self.overflow.saturating_sub(earlier.overflow),
        }
    }

    pub fn total(&self) -> u64 {
        self.keys.values().sum::<u64>() + self.unreadable + self.overflow
    }
}

/// The text a kernel key stands for: `str` is the string bytes, zero-padded.
pub fn kernel_key_text(str: &[u8; KEY_LEN], flags: u32) -> String {
    let len = str.iter().position(|&c| c == 0).unwrap_or(KEY_LEN);
    let mut s = terminal_safe(&str[..len]);
    if flags & TOP_TRUNCATED != 0 {
        s.push_str(TRUNCATED_MARK);
    }
    s
}

/// The top maps of a loaded program.
pub struct KernelTop {
    counts: PerCpuHashMap<MapData, RawTopHkey, RawTopVal>,
    slots: PerCpuArray<MapData, RawTopSlot>,
    stats: PerCpuArray<MapData, u64>,
}

impl KernelTop {
    /// Takes the top maps from the engine (once per engine).
    pub fn new(engine: &mut Engine) -> Result<KernelTop, KtopError> {
        let mut take = |name: &'static str| engine.take_map(name).ok_or(KtopError::Missing(name));
        let counts =
            PerCpuHashMap::try_from(take(MAP_COUNTS)?).map_err(|source| KtopError::Map {
                map: MAP_COUNTS,
                source,
            })?;
        let slots = PerCpuArray::try_from(take(MAP_SLOTS)?).map_err(|source| KtopError::Map {
            map: MAP_SLOTS,
            source,
        })?;
        let stats = PerCpuArray::try_from(take(MAP_STATS)?).map_err(|source| KtopError::Map {
            map: MAP_STATS,
            source,
        })?;
        Ok(KernelTop {
            counts,
            slots,
            stats,
        })
    }

    /// Everything counted for the probes `ids` (one probe attached in several objects has
    /// several ids; their counts add up).
    pub fn read(&self, ids: &[ProbeId]) -> KernelTopCounts {
        let mut out = KernelTopCounts::default();
        for (key, values) in self.counts.iter().filter_map(Result::ok) {
            if !ids.iter().any(|id| id.0 == key.probe_id) {
                continue;
            }
            // Only CPUs that saw the key hold its string (the others' copies are zeroed).
            let Some(first) = values.iter().find(|v| v.count > 0) else {
                continue;
            };
            let hits = values.iter().map(|v| v.count).sum::<u64>();
            *out.keys
                .entry(kernel_key_text(&first.str, key.flags))
                .or_insert(0) += hits;
        }
        // Each CPU's slot holds its own key, counted only there.
        for idx in 0..TOP_SLOTS {
            let Ok(per_cpu) = self.slots.get(&idx, 0) else {
                continue;
            };
            for slot in per_cpu.iter() {
                if slot.tag == 0 || slot.v.count == 0 || !ids.iter().any(|id| id.0 == slot.probe_id)
                {
                    continue;
                }
                *out.keys
                    .entry(kernel_key_text(&slot.v.str, slot.flags))
                    .or_insert(0) += slot.v.count;
            }
        }
        out.unreadable = self.stat(ids, Stat::Unreadable);
        out.overflow = self.stat(ids, Stat::Overflow);
        out
    }

    /// One counter of `top_stats`, summed over CPUs and the probes `ids`.
    pub fn stat(&self, ids: &[ProbeId], stat: Stat) -> u64 {
        ids.iter()
            .map(|id| {
                self.stats
                    .get(&(id.0 * TS_NR + stat as u32), 0)
                    .map(|v| v.iter().sum::<u64>())
                    .unwrap_or(0)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &[u8], flags: u32) -> String {
        let mut str = [0; KEY_LEN];
        str[..s.len()].copy_from_slice(s);
        kernel_key_text(&str, flags)
    }

    #[test]
    fn layout_matches_the_c_structs() {
        assert_eq!(std::mem::size_of::<RawTopHkey>(), 16);
        assert_eq!(std::mem::size_of::<RawTopVal>(), 8 + KEY_LEN);
        assert_eq!(std::mem::size_of::<RawTopSlot>(), 16 + 8 + KEY_LEN);
    }

    #[test]
    fn keys_are_terminal_safe_and_cut_keys_are_marked() {
        assert_eq!(text(b"/a", 0), "/a");
        assert_eq!(text(b"\x1b[2J", 0), "\\x1b[2J");
        assert_eq!(text(&[b'x'; KEY_LEN - 1], 1).chars().count(), KEY_LEN);
    }

    #[test]
    fn an_interval_holds_only_its_own_hits() {
        let mut a = KernelTopCounts::default();
        a.keys.insert("/a".into(), 5);
        a.keys.insert("/b".into(), 2);
        let mut b = a.clone();
        *b.keys.get_mut("/a").unwrap() += 3;
        b.overflow = 4;
        let d = b.since(&a);
        assert_eq!(d.keys, HashMap::from([("/a".to_string(), 3)]));
        assert_eq!((d.overflow, d.total()), (4, 7));
    }
}
