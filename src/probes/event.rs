//! Decoded events: what a probe hit looks like once it has left the kernel.

use serde::Serialize;
use std::sync::Arc;

/// Identity of an attached probe, shared by all its events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ProbeKey {
    /// The object the probe lives in (as opened, e.g. `/usr/bin/python3.11`).
    pub path: String,
    pub provider: String,
    pub name: String,
}

impl ProbeKey {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// One decoded argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ArgValue {
    /// Integers are kept as read (sign-extended if the spec says signed).
    Int(i64),
    /// A string argument, already made safe for a terminal (control characters escaped).
    Str(String),
    /// The argument form cannot be read in BPF (e.g. `%xmm0`); the text says which.
    Unsupported(String),
}

/// One probe hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub probe: Arc<ProbeKey>,
    pub args: Vec<ArgValue>,
}

impl Event {
    /// Heap and inline bytes this event holds, roughly: what bounds the event queue.
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self
            .args
            .iter()
            .map(|a| match a {
                ArgValue::Int(_) => 0,
                ArgValue::Str(s) | ArgValue::Unsupported(s) => s.capacity(),
            })
            .sum();
        std::mem::size_of::<Event>()
            + self.comm.capacity()
            + self.args.capacity() * std::mem::size_of::<ArgValue>()
            + strings
    }
}
