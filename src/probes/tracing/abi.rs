//! The Rust mirror of bpf/abi.h, the kernel ABI: every struct, mode, limit and flag that the BPF
//! program and user space share. Names are the C names (structs as `Raw` + CamelCase).
//!
//! It cannot drift from the header: build.rs dumps the layout clang-19 gives every struct of
//! bpf/abi.h *for the BPF target* and the value of every `#define` there, and writes the
//! compile-time assertions included at the bottom of this file — each struct's size, each
//! field's offset and type, each constant's value, each enum's numbers. A field or constant
//! present on one side only, or placed or typed differently, fails the build. (A check rather
//! than bindgen: no new dependency, and these structs keep their docs, derives and `Pod` impls.)
//! BPF is 64-bit little-endian like x86-64, so the BPF layouts checked are the host's too.

// ---- Sites and streamed events ----

pub const MAX_ARGS: usize = 12;
pub const MAX_SITES: u32 = 16384;
pub const MAX_PROBES: u32 = 4096;
/// Longest string read per argument, NUL included.
pub const STR_LEN: usize = 256;
/// At most this many string arguments are read per event.
pub const MAX_STRS: usize = 8;
/// Room for the string bytes of one event.
pub const STR_AREA: usize = STR_LEN * MAX_STRS;

/// Flags in a string argument's slot of [`RawEventHdr::args`] (the low 32 bits are its length).
pub const STR_TRUNCATED: u64 = 1 << 32;
pub const STR_FAULT: u64 = 2 << 32;
pub const STR_NULL: u64 = 4 << 32;

/// `reg_off` of an indexed argument without a base register.
pub const NO_REG: u16 = 0xffff;
/// `str_slot` of an argument not read as a string.
pub const NO_STR: u8 = 0xff;
/// `len_arg` of a NUL-terminated string (else the index of the argument holding its length).
pub const NO_LEN: u8 = 0xff;

/// What a hit does in the kernel (`site_spec.mode`, `enum mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    /// Every hit goes to the ring buffer with its arguments.
    #[default]
    Stream = 0,
    /// Only the per-probe hit counter moves.
    Count = 1,
    /// Start/done pairing in the kernel (bpf/pair.bpf.h, src/probes/kernel/kpair.rs); sampled
    /// requests are also streamed.
    Pair = 2,
    /// Hits counted per value of the site's (only) string argument in the kernel
    /// (bpf/top.bpf.h, src/probes/kernel/ktop.rs); nothing is streamed.
    Top = 3,
    /// Starts and dones paired in the kernel with a latency histogram per value of the start's
    /// string argument (bpf/toplat.bpf.h, src/probes/kernel/ktoplat.rs); nothing is streamed.
    TopLat = 4,
    /// Call-shaped pairs (entry/return probes that nest) paired on a bounded stack per thread
    /// in the kernel, with a latency histogram per value of the entry's string argument
    /// (bpf/calls.bpf.h, src/probes/kernel/kcalls.rs); nothing is streamed.
    Calls = 5,
}

/// How the kernel reads one argument (`enum arg_kind`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Const = 0,
    Reg = 1,
    Mem = 2,
    RipSym = 3,
    Indexed = 4,
    Unsupported = 5,
}

/// `struct arg_spec`. Register offsets are x86-64 `pt_regs` offsets (discovery::argspec::x86_64).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawArgSpec {
    pub val: u64,
    pub reg_off: u16,
    pub idx_reg_off: u16,
    pub kind: u8,
    pub size: u8,
    pub is_signed: u8,
    pub shift: u8,
    pub width: u8,
    pub scale: u8,
    pub str_slot: u8,
    pub len_arg: u8,
    pub _pad: [u8; 4],
}

/// `struct site_spec`: how the kernel handles the hits of one site.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawSiteSpec {
    pub probe_id: u32,
    pub mode: u8,
    pub nr_args: u8,
    pub nr_strs: u8,
    /// The bit set in `filter_mask` (the slot whose `filter_fast` entry is checked first).
    pub filter_slot: u8,
    pub filter_mask: u64,
    pub site_addr: u64,
    pub args: [RawArgSpec; MAX_ARGS],
}

/// `struct event_hdr`: the fixed part of every ring-buffer record; string bytes follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEventHdr {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub cookie: u32,
    pub nr_args: u16,
    pub str_bytes: u16,
    pub comm: [u8; 16],
    pub args: [u64; MAX_ARGS],
}

// ---- Following a process tree ----

/// `kind` of a [`RawFollowRec`]: a process in the filter forked this child.
pub const FOLLOW_FORK: u32 = 1;
/// `kind` of a [`RawFollowRec`]: this process in the filter exited.
pub const FOLLOW_EXIT: u32 = 2;

/// `struct follow_rec`: one record of the `follow` ring buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawFollowRec {
    pub kind: u32,
    pub tgid: u32,
    pub mask: u64,
    pub ts_ns: u64,
}

// ---- In-kernel start/done pairing ----

pub const MAX_PAIRS: u16 = 64;
pub const PAIR_BUCKETS: usize = 512;
/// Starts the kernel keeps at once (all pairs together); beyond it the least recently used
/// start is dropped, so a done that never comes cannot grow the map.
pub const PAIR_MAX_STARTS: u64 = 65536;
/// `key_arg` of a pair matched by thread.
pub const PAIR_BY_THREAD: u8 = 0xff;

/// What a probe is to its pair (`enum pair_role`; `ROLE_NONE` is a zeroed config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Start = 1,
    Done = 2,
}

/// Counters of a pair, at `pair * PS_NR + stat` in `pair_stats` (`enum pair_stat`).
pub const PS_STARTS: u32 = 0;
pub const PS_MATCHED: u32 = 1;
pub const PS_UNMATCHED: u32 = 2;
pub const PS_REPLACED: u32 = 3;
pub const PS_SUM_NS: u32 = 4;
pub const PS_SAMPLED: u32 = 5;
/// Call-shaped pairs: frames dropped because a return matched a frame below them.
pub const PS_UNWOUND: u32 = 6;
/// Call-shaped pairs: calls entered beyond [`CALL_DEPTH`] open calls (not timed).
pub const PS_TOO_DEEP: u32 = 7;
/// Call-shaped pairs: returns whose key is nowhere on the thread's stack.
pub const PS_STRAY: u32 = 8;
/// Call-shaped pairs: entries of threads the stack map had no room for (not timed).
pub const PS_NO_ROOM: u32 = 9;
pub const PS_NR: u32 = 16;

/// `struct pair_cfg`: a probe's role in its pair.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawPairCfg {
    pub pair_id: u16,
    pub role: u8,
    pub key_arg: u8,
    pub sample_every: u32,
}

/// `struct pair_key`: an open start's key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawPairKey {
    pub key: u64,
    pub pair_id: u32,
    pub tgid: u32,
}

/// `struct pair_start`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawPairStart {
    pub ts_ns: u64,
    pub sampled: u64,
}

// ---- In-kernel top ----

/// Bytes of a key, NUL included: longer strings are cut to `TOP_KEY_LEN - 1`.
pub const TOP_KEY_LEN: usize = 64;
/// Distinct (probe, string) keys the kernel keeps; hits of further keys are counted as overflow.
pub const TOP_MAX_KEYS: u32 = 16384;
/// Entries of the per-CPU direct-mapped table in front of `top_counts`.
pub const TOP_SLOTS: u32 = 1024;
/// `top_hkey.flags`: the string was cut.
pub const TOP_TRUNCATED: u32 = 1;
/// `top_hkey.flags` of a toplat start: its string could not be read.
pub const TOP_UNREADABLE: u32 = 2;

/// The per-probe counters of `top_stats`, at `probe * TS_NR + stat` (`enum top_stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// No readable string argument.
    Unreadable = 0,
    /// A new key found the map full, or its hash was another string's.
    Overflow = 1,
    /// In-kernel top with latency: a done found no start.
    Unmatched = 2,
    /// In-kernel top with latency: a start found an open start with the same key.
    Replaced = 3,
}
pub const TS_NR: u32 = 4;

/// `struct top_hkey`: the kernel keys counts by a hash of the string (cheaper to look up).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTopHkey {
    pub probe_id: u32,
    pub flags: u32,
    pub hash: u64,
}

/// `struct top_val`, one per CPU: that CPU's hits and, once it has seen the key, the string.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTopVal {
    pub count: u64,
    pub str: [u8; TOP_KEY_LEN],
}

/// `struct top_slot`: one CPU's entry of the direct-mapped table (`tag` 0 = free).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTopSlot {
    pub tag: u64,
    pub probe_id: u32,
    pub flags: u32,
    pub v: RawTopVal,
}

// ---- In-kernel top with latency per key ----

/// Distinct (probe, string) keys with latencies the kernel keeps; requests of further keys (or
/// of a string whose 64-bit hash is another's) are counted as overflow. Memory: at most this
/// many × `size_of::<RawToplatAgg>()` × CPUs.
pub const TL_MAX_KEYS: u32 = 2048;
/// Requests in flight the kernel remembers (all probes together); beyond it the least recently
/// used start is dropped.
pub const TL_MAX_STARTS: u64 = 16384;
/// The pairing bucket (`pair_bucket`) of a key's first latency bucket (256 ns).
pub const TL_FIRST_BUCKET: usize = 64;
/// Latency buckets per key.
pub const TL_BUCKETS: usize = 256;

/// `struct toplat_start`: an open request and its key.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawToplatStart {
    pub ts_ns: u64,
    pub k: RawTopHkey,
    pub v: RawTopVal,
}

/// `struct toplat_agg`, one CPU's figures of a key: `v.count` completed requests, `v.str` the
/// string once this CPU has seen the key.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawToplatAgg {
    pub v: RawTopVal,
    pub sum_ns: u64,
    pub buckets: [u64; TL_BUCKETS],
}

// ---- Call-shaped pairs: entry/return on a bounded stack per thread ----

/// Open calls kept per thread; deeper calls are counted, not timed.
pub const CALL_DEPTH: usize = 32;
/// Threads with a call stack at once (all processes together).
pub const CALL_MAX_THREADS: u32 = 16384;
/// `call_frame.flags`: the entry had no key argument to read.
pub const CALL_UNKEYED: u32 = 4;

/// `struct call_frame`: one open call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCallFrame {
    pub ts_ns: u64,
    pub hash: u64,
    pub probe_id: u32,
    pub flags: u32,
}

/// `struct call_stack`: a thread's open calls (`depth` counts those beyond `CALL_DEPTH` too).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCallStack {
    pub depth: u32,
    pub _pad: u32,
    pub frames: [RawCallFrame; CALL_DEPTH],
}

// SAFETY (all): plain `#[repr(C)]` integers and bytes with explicit padding only (the checks
// below pin every field's offset against the C layout); any bit pattern is valid.
unsafe impl aya::Pod for RawSiteSpec {}
// SAFETY: as above.
unsafe impl aya::Pod for RawPairCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for RawPairKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawPairStart {}
// SAFETY: as above.
unsafe impl aya::Pod for RawTopHkey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawTopVal {}
// SAFETY: as above.
unsafe impl aya::Pod for RawTopSlot {}
// SAFETY: as above.
unsafe impl aya::Pod for RawToplatStart {}
// SAFETY: as above.
unsafe impl aya::Pod for RawToplatAgg {}
// SAFETY: as above.
unsafe impl aya::Pod for RawCallFrame {}
// SAFETY: as above.
unsafe impl aya::Pod for RawCallStack {}

// Generated by build.rs from bpf/abi.h: `const _: () = assert!(...)` for every size, offset,
// field type, constant and enum number above.
include!(concat!(env!("OUT_DIR"), "/abi_check.rs"));
