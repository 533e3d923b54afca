//! Tracing: attaching a BPF program at every site of a probe (uprobe-multi links, or per-site
//! perf-event links as the fallback; process filter and fork following; privilege checks), and the event stream (ring reader, decoder, bounded queue, events).
//! Imports `discovery` only; the kernel ABI's Rust side lives in `abi` (checked against
//! bpf/abi.h at build time), the program and its names in `bpf`.

pub mod abi;
mod attach;
pub mod bpf;
pub mod clock;
mod decode;
pub mod engine;
pub mod event;
mod filter;
mod follow;
pub mod limits;
mod multi;
pub mod privilege;
pub mod queue;
mod reader;
