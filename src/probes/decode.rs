//! Turns ring-buffer records into [`Event`]s: integers as read, strings made safe for a terminal,
//! unreadable argument forms as [`ArgValue::Unsupported`].

use super::bpf::{ArgPlan, RawEventHdr, STR_FAULT, STR_NULL, STR_TRUNCATED};
use super::event::{ArgValue, Event, ProbeKey};
use std::collections::HashMap;
use std::sync::Arc;

/// What the decoder knows about one attached site (keyed by its cookie).
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub probe: Arc<ProbeKey>,
    pub plans: Vec<ArgPlan>,
}

pub type SiteTable = HashMap<u32, SiteInfo>;

/// The `Unsupported` text of a string argument that was a NULL pointer.
pub const NULL_STRING: &str = "NULL";

/// Marker appended to a string that was longer than the kernel read.
pub const TRUNCATED_MARK: &str = "…";

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
            ArgPlan::Int => ArgValue::Int(raw as i64),
            ArgPlan::Unsupported(why) => ArgValue::Unsupported(why.clone()),
            ArgPlan::Str if raw & STR_NULL != 0 => ArgValue::Unsupported(NULL_STRING.into()),
            ArgPlan::Str if raw & STR_FAULT != 0 => {
                ArgValue::Unsupported("string not readable (unmapped pointer)".into())
            }
            ArgPlan::Str => {
                let len = (raw as u32 as usize).min(strs.len());
                let mut s = terminal_safe(&strs[..len]);
                strs = &strs[len..];
                if raw & STR_TRUNCATED != 0 {
                    s.push_str(TRUNCATED_MARK);
                }
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

/// Lossy UTF-8 with control characters (C0, DEL, C1, so ESC too) escaped, so that a traced
/// string cannot move the cursor or change colours.
pub fn terminal_safe(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::bpf::RawEventHdr;

    fn record(hdr: RawEventHdr, strs: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; std::mem::size_of::<RawEventHdr>()];
        // SAFETY: v is exactly one header long.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast::<RawEventHdr>(), hdr) };
        v.extend_from_slice(strs);
        v
    }

    #[test]
    fn escape_sequences_in_strings_are_made_harmless() {
        assert_eq!(terminal_safe(b"a\x1b[31mb\n\x7f"), "a\\x1b[31mb\\n\\x7f");
        assert_eq!(terminal_safe("é\u{9b}".as_bytes()), "é\\x9b");
        assert_eq!(terminal_safe(b"plain /x?y=1"), "plain /x?y=1");
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
            ArgPlan::Int,
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
                ArgValue::Int(-2),
                ArgValue::Str("/x…".into()),
                ArgValue::Unsupported("string not readable (unmapped pointer)".into()),
                ArgValue::Unsupported("NULL".into()),
                ArgValue::Unsupported("8@%xmm0: vector".into()),
            ]
        );
        hdr.cookie = 4;
        assert!(decode(&record(hdr, b""), &sites).is_none());
    }
}
