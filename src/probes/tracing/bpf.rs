//! The user-space side of bpf/usdt.bpf.c: the compiled program, its program and map names, and
//! the encoding of one site's [`ArgSpec`]s into a site spec. The shared layouts and constants
//! are in [`super::abi`] (checked against bpf/abi.h by build.rs) and re-exported here.

use super::abi::{ArgKind, RawArgSpec, NO_LEN, NO_REG, NO_STR};
pub use super::abi::{
    Mode, RawEventHdr, RawSiteSpec, MAX_ARGS, MAX_PROBES, MAX_SITES, MAX_STRS, STR_FAULT, STR_LEN,
    STR_NULL, STR_TRUNCATED,
};
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
pub const MAP_FOLLOW: &str = "follow";

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
/// `strings` are the argument indices to read as strings (only the first MAX_STRS count): C
/// strings, but for those `lengths` pairs with their length argument (pointer + length strings,
/// not NUL-terminated; the length must be an integer argument of the site).
pub fn encode_site(
    probe_id: u32,
    mode: Mode,
    filter_mask: u64,
    site_addr: u64,
    args: &[ArgSpec],
    strings: &[usize],
    lengths: &[(usize, usize)],
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
        raw.len_arg = NO_LEN;
        let len_arg = lengths.iter().find(|(s, _)| *s == i).map(|&(_, l)| l);
        if strings.contains(&i) && matches!(plan, ArgPlan::Int { .. }) {
            let bad_len = len_arg.and_then(|l| length_unusable(l, i, args, strings));
            if let Some(why) = bad_len {
                plan = ArgPlan::Unsupported(format!("{}: {why}", arg.text));
            } else if (spec.nr_strs as usize) < MAX_STRS {
                raw.str_slot = spec.nr_strs;
                raw.len_arg = len_arg.map_or(NO_LEN, |l| l as u8);
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

/// Why argument `len` cannot give the length of string argument `string`, if it cannot: the
/// kernel reads it as an integer, so it must be one (not a string, not an unreadable form).
fn length_unusable(
    len: usize,
    string: usize,
    args: &[ArgSpec],
    strings: &[usize],
) -> Option<String> {
    let Some(arg) = args.get(len).filter(|_| len < MAX_ARGS && len != string) else {
        return Some(format!(
            "its length argument {len} is not another argument of the site"
        ));
    };
    if strings.contains(&len) {
        return Some(format!("its length argument {len} is read as a string"));
    }
    match encode_arg(arg).1 {
        ArgPlan::Int { .. } => None,
        _ => Some(format!(
            "its length argument {len} ({}) cannot be read",
            arg.text
        )),
    }
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

    #[test]
    fn strings_get_slots_in_argument_order_and_vectors_are_unsupported() {
        let args = parse_args("8@%rdi -4@%esi 8@-16(%rbp) 8@%xmm0").unwrap();
        let (spec, plans) = encode_site(7, Mode::Stream, 0, 0x1000, &args, &[0, 2, 3], &[]);
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
    fn pointer_and_length_strings_carry_their_length_argument() {
        // hotspot:thread__start at one site of OpenJDK 17's libjvm.so.
        let args = parse_args("8@%r13 -4@-60(%rbp) -8@-56(%rbp) 8@%r15 1@%al").unwrap();
        let (spec, plans) = encode_site(3, Mode::Stream, 0, 0, &args, &[0], &[(0, 1)]);
        assert_eq!((spec.args[0].str_slot, spec.args[0].len_arg), (0, 1));
        assert_eq!(spec.args[1].len_arg, NO_LEN);
        assert_eq!(spec.nr_strs, 1);
        assert_eq!(plans[0], ArgPlan::Str);
        // Read as a C string when no length is given.
        let (spec, _) = encode_site(3, Mode::Stream, 0, 0, &args, &[0], &[]);
        assert_eq!(spec.args[0].len_arg, NO_LEN);
    }

    #[test]
    fn a_length_that_is_no_integer_argument_makes_the_string_unsupported() {
        let args = parse_args("8@%rdi -4@%esi 8@%xmm0").unwrap();
        for (strings, lengths, why) in [
            (&[0][..], &[(0, 7)][..], "not another argument"),
            (&[0], &[(0, 0)], "not another argument"),
            (&[0, 1], &[(0, 1)], "read as a string"),
            (&[0], &[(0, 2)], "cannot be read"),
        ] {
            let (spec, plans) = encode_site(3, Mode::Stream, 0, 0, &args, strings, lengths);
            assert!(
                matches!(&plans[0], ArgPlan::Unsupported(t) if t.contains(why)),
                "{lengths:?}: {:?}",
                plans[0]
            );
            assert_eq!(spec.args[0].str_slot, NO_STR);
        }
    }

    #[test]
    fn constants_are_encoded_cut_to_size_and_extended_by_sign() {
        let args = parse_args("1@$-16 -1@$-16 2@$-3600 4@$-202182160 8@$-1 -4@$-7").unwrap();
        let (spec, plans) = encode_site(1, Mode::Stream, 0, 0, &args, &[], &[]);
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
