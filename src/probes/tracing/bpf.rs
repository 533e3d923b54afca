//! The user-space mirror of bpf/usdt.bpf.c: map names, `#[repr(C)]` layouts of the site spec and
//! the event header, and the encoding of one site's [`ArgSpec`]s into a spec. Keep in sync with
//! the C file (the layout tests below pin the sizes).

use super::event::Integer;
use crate::probes::discovery::argspec::{ArgLoc, ArgSpec};

/// The compiled program, built by build.rs from bpf/usdt.bpf.c.
pub static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/usdt.bpf.o"));

pub const PROG_HIT: &str = "usdt_hit";
/// The same program, sleepable: may fault a string's pages in (bpf/usdt.bpf.c: read_str).
pub const PROG_HIT_SLEEPABLE: &str = "usdt_hit_sleepable";
pub const PROG_FORK: &str = "on_fork";
pub const PROG_EXIT: &str = "on_exit";
pub const MAP_SPECS: &str = "site_specs";
pub const MAP_FILTER: &str = "pid_filter";
pub const MAP_FILTER_FAST: &str = "filter_fast";
pub const MAP_HITS: &str = "hits";
pub const MAP_DROPS: &str = "drops";
pub const MAP_UNREADABLE: &str = "unreadable";
pub const MAP_FAULT_FAILS: &str = "fault_fails";
pub const MAP_EVENTS: &str = "events";

pub const MAX_ARGS: usize = 12;
pub const MAX_SITES: u32 = 16384;
pub const MAX_PROBES: u32 = 4096;
/// Longest string read per argument, NUL included.
pub const STR_LEN: usize = 256;
/// At most this many string arguments are read per event.
pub const MAX_STRS: usize = 8;

pub const STR_TRUNCATED: u64 = 1 << 32;
pub const STR_FAULT: u64 = 2 << 32;
pub const STR_NULL: u64 = 4 << 32;

const NO_REG: u16 = 0xffff;
const NO_STR: u8 = 0xff;

/// What a hit does in the kernel (`site_spec.mode`).
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
}

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
    pub _pad: [u8; 5],
}

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

// SAFETY: plain `#[repr(C)]` integers with explicit padding; any bit pattern is valid.
unsafe impl aya::Pod for RawSiteSpec {}

/// The fixed part of every ring-buffer record; string bytes follow it.
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

impl RawEventHdr {
    /// Reads a header from the front of a record (None if the record is too short).
    pub fn parse(bytes: &[u8]) -> Option<RawEventHdr> {
        if bytes.len() < std::mem::size_of::<RawEventHdr>() {
            return None;
        }
        // SAFETY: length checked; every bit pattern is a valid RawEventHdr; unaligned read.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEventHdr>()) })
    }
}

/// How one argument of a site is decoded in user space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPlan {
    /// An integer of `size` bytes, signed or not (the spec's `-N@` / `N@`).
    Int {
        size: u8,
        signed: bool,
    },
    Str,
    /// Not readable in BPF; the text says why.
    Unsupported(String),
}

/// Encodes one site: the kernel spec plus the decoding plan for its arguments.
/// `strings` are the argument indices to read as C strings (only the first MAX_STRS count).
pub fn encode_site(
    probe_id: u32,
    mode: Mode,
    filter_mask: u64,
    site_addr: u64,
    args: &[ArgSpec],
    strings: &[usize],
) -> (RawSiteSpec, Vec<ArgPlan>) {
    let mut spec = RawSiteSpec {
        probe_id,
        mode: mode as u8,
        filter_slot: if filter_mask == 0 {
            0
        } else {
            filter_mask.trailing_zeros() as u8
        },
        filter_mask,
        site_addr,
        ..Default::default()
    };
    let mut plans = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i >= MAX_ARGS {
            plans.push(ArgPlan::Unsupported(format!(
                "{}: more than {MAX_ARGS} arguments",
                arg.text
            )));
            continue;
        }
        let (raw, mut plan) = encode_arg(arg);
        let mut raw = raw;
        raw.str_slot = NO_STR;
        if strings.contains(&i) && matches!(plan, ArgPlan::Int { .. }) {
            if (spec.nr_strs as usize) < MAX_STRS {
                raw.str_slot = spec.nr_strs;
                spec.nr_strs += 1;
                plan = ArgPlan::Str;
            } else {
                plan = ArgPlan::Unsupported(format!(
                    "{}: more than {MAX_STRS} string arguments",
                    arg.text
                ));
            }
        }
        spec.args[i] = raw;
        spec.nr_args = (i + 1) as u8;
        plans.push(plan);
    }
    (spec, plans)
}

fn encode_arg(arg: &ArgSpec) -> (RawArgSpec, ArgPlan) {
    let mut raw = RawArgSpec {
        size: arg.size,
        is_signed: arg.signed as u8,
        reg_off: NO_REG,
        idx_reg_off: NO_REG,
        ..Default::default()
    };
    let unsupported = |why: String| {
        (
            RawArgSpec {
                kind: ArgKind::Unsupported as u8,
                ..Default::default()
            },
            ArgPlan::Unsupported(why),
        )
    };
    match &arg.loc {
        ArgLoc::Const(v) => {
            // Already cut and extended as the value would be read (gcc writes `1@$-16` for 240),
            // so in-kernel keys and the streamed value agree.
            raw.kind = ArgKind::Const as u8;
            raw.val = Integer::from_raw(*v as u64, arg.size, arg.signed).bits();
        }
        ArgLoc::Reg(r) => {
            raw.kind = ArgKind::Reg as u8;
            raw.reg_off = r.reg.pt_regs_offset();
            raw.width = r.width;
            raw.shift = r.shift;
        }
        ArgLoc::Mem { base, offset } => {
            raw.kind = ArgKind::Mem as u8;
            raw.reg_off = base.pt_regs_offset();
            raw.val = *offset as u64;
        }
        ArgLoc::RipSym {
            symbol,
            offset,
            addr,
        } => match addr {
            Some(a) => {
                raw.kind = ArgKind::RipSym as u8;
                raw.val = a.wrapping_add(*offset as u64);
            }
            None => return unsupported(format!("{}: symbol `{symbol}` not found", arg.text)),
        },
        ArgLoc::Indexed {
            base,
            index,
            scale,
            offset,
        } => {
            raw.kind = ArgKind::Indexed as u8;
            raw.reg_off = base.map_or(NO_REG, |b| b.pt_regs_offset());
            raw.idx_reg_off = index.pt_regs_offset();
            raw.scale = *scale;
            raw.val = *offset as u64;
        }
        ArgLoc::Unsupported(why) => return unsupported(format!("{}: {why}", arg.text)),
    }
    (
        raw,
        ArgPlan::Int {
            size: arg.size,
            signed: arg.signed,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::discovery::argspec::parse_args;
    use std::mem::size_of;

    #[test]
    fn layouts_match_the_c_program() {
        assert_eq!(size_of::<RawArgSpec>(), 24);
        assert_eq!(size_of::<RawSiteSpec>(), 24 + 12 * 24);
        assert_eq!(size_of::<RawEventHdr>(), 40 + 12 * 8);
    }

    #[test]
    fn strings_get_slots_in_argument_order_and_vectors_are_unsupported() {
        let args = parse_args("8@%rdi -4@%esi 8@-16(%rbp) 8@%xmm0").unwrap();
        let (spec, plans) = encode_site(7, Mode::Stream, 0, 0x1000, &args, &[0, 2, 3]);
        assert_eq!(spec.nr_args, 4);
        assert_eq!(spec.nr_strs, 2);
        assert_eq!((spec.args[0].str_slot, spec.args[2].str_slot), (0, 1));
        assert_eq!(spec.args[1].str_slot, NO_STR);
        assert_eq!(spec.args[1].reg_off, 104);
        assert_eq!(spec.args[1].width, 4);
        let int = ArgPlan::Int {
            size: 4,
            signed: true,
        };
        assert_eq!(plans[..3], [ArgPlan::Str, int, ArgPlan::Str]);
        assert!(matches!(&plans[3], ArgPlan::Unsupported(t) if t.contains("xmm0")));
    }

    #[test]
    fn constants_are_encoded_cut_to_size_and_extended_by_sign() {
        let args = parse_args("1@$-16 -1@$-16 2@$-3600 4@$-202182160 8@$-1 -4@$-7").unwrap();
        let (spec, plans) = encode_site(1, Mode::Stream, 0, 0, &args, &[]);
        let vals: Vec<u64> = spec.args[..6].iter().map(|a| a.val).collect();
        assert_eq!(
            vals,
            [
                240,
                -16i64 as u64,
                61936,
                4092785136,
                u64::MAX,
                -7i64 as u64
            ]
        );
        assert_eq!(
            plans[0],
            ArgPlan::Int {
                size: 1,
                signed: false
            }
        );
    }
}
