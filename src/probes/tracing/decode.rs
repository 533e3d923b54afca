//! Turns ring-buffer records into [`Event`]s: integers by the SDT size and sign rule, strings as
//! the exact bytes read (escaped only at the output edge), NULL and unreadable string pointers as
//! [`ArgValue::Null`] and [`ArgValue::Unreadable`], argument forms BPF cannot read as
//! [`ArgValue::Unsupported`].

use super::bpf::{ArgPlan, RawEventHdr, STR_FAULT, STR_NULL, STR_TRUNCATED};
use super::event::{terminal_safe, ArgValue, Event, Integer, ProbeKey, StrValue};
use std::collections::HashMap;
use std::sync::Arc;

/// What the decoder knows about one attached site (keyed by its cookie).
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub probe: Arc<ProbeKey>,
    pub plans: Vec<ArgPlan>,
}

pub type SiteTable = HashMap<u32, SiteInfo>;

/// Decodes one record; `None` if it is malformed or its site was detached meanwhile.
pub fn decode(record: &[u8], sites: &SiteTable) -> Option<Event> {
    let hdr = RawEventHdr::parse(record)?;
    let site = sites.get(&hdr.cookie)?;
    let mut strs = &record[std::mem::size_of::<RawEventHdr>()..];
    let nr = (hdr.nr_args as usize).min(hdr.args.len());
    let mut args = Vec::with_capacity(site.plans.len());
    for (i, plan) in site.plans.iter().enumerate() {
        let raw = if i < nr { hdr.args[i] } else { 0 };
        args.push(match plan {
            ArgPlan::Int { size, signed } => ArgValue::Int(Integer::from_raw(raw, *size, *signed)),
            ArgPlan::Unsupported(why) => ArgValue::Unsupported(why.clone()),
            ArgPlan::Str if raw & STR_NULL != 0 => ArgValue::Null,
            ArgPlan::Str if raw & STR_FAULT != 0 => ArgValue::Unreadable,
            ArgPlan::Str => {
                let len = (raw as u32 as usize).min(strs.len());
                let s = StrValue::new(strs[..len].to_vec(), raw & STR_TRUNCATED != 0);
                strs = &strs[len..];
                ArgValue::Str(s)
            }
        });
    }
    Some(Event {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        comm: terminal_safe(until_nul(&hdr.comm)),
        probe: site.probe.clone(),
        args,
    })
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::tracing::bpf::RawEventHdr;

    fn record(hdr: RawEventHdr, strs: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; std::mem::size_of::<RawEventHdr>()];
        // SAFETY: v is exactly one header long.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast::<RawEventHdr>(), hdr) };
        v.extend_from_slice(strs);
        v
    }

    #[test]
    fn a_record_decodes_ints_strings_in_order_truncation_and_faults() {
        let probe = Arc::new(ProbeKey {
            path: "/bin/x".into(),
            provider: "p".into(),
            name: "n".into(),
        });
        let plans = vec![
            ArgPlan::Str,
            ArgPlan::Int {
                size: 4,
                signed: true,
            },
            ArgPlan::Str,
            ArgPlan::Str,
            ArgPlan::Str,
            ArgPlan::Unsupported("8@%xmm0: vector".into()),
        ];
        let sites = SiteTable::from([(3, SiteInfo { probe, plans })]);
        let mut hdr = RawEventHdr {
            ts_ns: 5,
            pid: 10,
            tid: 11,
            cookie: 3,
            nr_args: 6,
            ..Default::default()
        };
        hdr.comm[..3].copy_from_slice(b"cmd");
        hdr.args[..4].copy_from_slice(&[3, (-2i64) as u64, 2 | STR_TRUNCATED, STR_FAULT]);
        hdr.args[4] = STR_NULL;
        let e = decode(&record(hdr, b"GET/x"), &sites).unwrap();
        assert_eq!((e.pid, e.tid, e.comm.as_str()), (10, 11, "cmd"));
        assert_eq!(
            e.args,
            vec![
                ArgValue::Str("GET".into()),
                ArgValue::signed(-2),
                ArgValue::Str(StrValue::new(b"/x".to_vec(), true)),
                ArgValue::Unreadable,
                ArgValue::Null,
                ArgValue::Unsupported("8@%xmm0: vector".into()),
            ]
        );
        hdr.cookie = 4;
        assert!(decode(&record(hdr, b""), &sites).is_none());
    }

    #[test]
    fn strings_keep_their_exact_bytes() {
        let probe = Arc::new(ProbeKey::default());
        let sites = SiteTable::from([(
            1,
            SiteInfo {
                probe,
                plans: vec![ArgPlan::Str],
            },
        )]);
        let mut hdr = RawEventHdr {
            cookie: 1,
            nr_args: 1,
            ..Default::default()
        };
        let text = b"a\x1b[2J\n\xe2\x80\xae\xff";
        hdr.args[0] = text.len() as u64;
        let e = decode(&record(hdr, text), &sites).unwrap();
        assert_eq!(
            e.args,
            vec![ArgValue::Str(StrValue::new(text.to_vec(), false))]
        );
    }

    /// What C does when it converts a value of the argument's type to a 64-bit integer.
    fn c_conversion(raw: u64, size: u8, signed: bool) -> ArgValue {
        match (size, signed) {
            (1, true) => ArgValue::signed(raw as u8 as i8 as i64),
            (2, true) => ArgValue::signed(raw as u16 as i16 as i64),
            (4, true) => ArgValue::signed(raw as u32 as i32 as i64),
            (_, true) => ArgValue::signed(raw as i64),
            (1, false) => ArgValue::unsigned(raw as u8 as u64),
            (2, false) => ArgValue::unsigned(raw as u16 as u64),
            (4, false) => ArgValue::unsigned(raw as u32 as u64),
            (_, false) => ArgValue::unsigned(raw),
        }
    }

    proptest::proptest! {
        #[test]
        fn integers_decode_as_c_converts_them(
            args in proptest::collection::vec(
                (proptest::sample::select(vec![1u8, 2, 4, 8]), proptest::bool::ANY, proptest::num::u64::ANY),
                1..=crate::probes::tracing::bpf::MAX_ARGS,
            )
        ) {
            let plans = args.iter().map(|&(size, signed, _)| ArgPlan::Int { size, signed }).collect();
            let probe = Arc::new(ProbeKey::default());
            let sites = SiteTable::from([(9, SiteInfo { probe, plans })]);
            let mut hdr = RawEventHdr { cookie: 9, nr_args: args.len() as u16, ..Default::default() };
            for (i, &(_, _, raw)) in args.iter().enumerate() {
                hdr.args[i] = raw;
            }
            let e = decode(&record(hdr, b""), &sites).unwrap();
            let want: Vec<ArgValue> =
                args.iter().map(|&(size, signed, raw)| c_conversion(raw, size, signed)).collect();
            proptest::prop_assert_eq!(e.args, want);
        }
    }
}
