// SPDX-License-Identifier: GPL-2.0
//
// usdtop's kernel ABI: every struct, mode, limit and flag shared by the BPF program and user
// space, written once. The BPF C includes it (usdt.bpf.c); the Rust mirror is
// src/probes/tracing/abi.rs, and build.rs fails the build when the two disagree: it compiles
// this header for the BPF target, dumps the layout clang gives every struct below, and checks
// each field's offset and type and each struct's size against the Rust `#[repr(C)]` structs,
// and every #define below against the Rust constant of the same name.
//
// Only fixed-width types (u8..u64, char arrays): BPF is 64-bit little-endian like x86-64, so a
// layout is the same in the BPF program and in user space. Padding is explicit.
//
// Not here: x86-64 register offsets (bpf/x86_64.h), and BPF-only state (scratch buffers, map
// definitions, tuning of the fault-in path) that user space never reads.

#pragma once

#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;

// ---- Sites and streamed events (usdt.bpf.c) ----

#define MAX_ARGS 12
#define MAX_SITES 16384
#define MAX_PROBES 4096
#define STR_LEN 256
#define MAX_STRS 8
#define STR_AREA (STR_LEN * MAX_STRS) // a power of two: offsets are masked with it

enum arg_kind {
	ARG_CONST = 0,	 // value = val
	ARG_REG = 1,	 // value = (reg >> shift), masked to width
	ARG_MEM = 2,	 // value = *(reg + val)
	ARG_RIP_SYM = 3, // value = *(val + (ip - site_addr)); val = symbol vaddr + offset
	ARG_INDEXED = 4, // value = *(reg + idx_reg * scale + val); reg_off = NO_REG when absent
	ARG_UNSUPPORTED = 5,
};

enum mode {
	MODE_STREAM = 0,
	MODE_COUNT = 1,
	MODE_PAIR = 2, // start/done pairing in the kernel: bpf/pair.bpf.h
	MODE_TOP = 3,  // count hits per string argument in the kernel: bpf/top.bpf.h
	MODE_TOPLAT = 4, // latency per string argument of a start: bpf/toplat.bpf.h
	MODE_CALLS = 5,	 // call-shaped pairs (entry/return, nested) on a stack per thread:
			 // bpf/calls.bpf.h
};

#define NO_REG 0xffff
#define NO_STR 0xff
#define NO_LEN 0xff

struct arg_spec {
	u64 val;	 // constant, memory offset, or symbol vaddr + offset
	u16 reg_off;	 // pt_regs byte offset of the (base) register (bpf/x86_64.h)
	u16 idx_reg_off; // pt_regs byte offset of the index register
	u8 kind;	 // enum arg_kind
	u8 size;	 // 1, 2, 4 or 8 bytes
	u8 is_signed;
	u8 shift;	 // register bits to drop (8 for %ah)
	u8 width;	 // register width in bytes (4 for %esi)
	u8 scale;
	u8 str_slot;	 // NO_STR, or the order of this string among the site's strings
	u8 len_arg;	 // NO_LEN (a NUL-terminated string), or the argument holding its length
			 // (a pointer + length string, e.g. the JVM's: bpf/strarg.bpf.h)
	u8 _pad[4];
};

struct site_spec {
	u32 probe_id;
	u8 mode;
	u8 nr_args;
	u8 nr_strs;
	u8 filter_slot;	 // the bit set in filter_mask (when it is not 0)
	u64 filter_mask; // 0 = every process; else the tgid's mask in pid_filter must share a bit
	u64 site_addr;	 // link-time vaddr of the site, for rip-relative arguments
	struct arg_spec args[MAX_ARGS];
};

// String argument slots in event_hdr.args hold (len | flags << 32); the bytes follow the header
// packed in argument order, each without its NUL.
#define STR_TRUNCATED (1ULL << 32)
#define STR_FAULT (2ULL << 32)
#define STR_NULL (4ULL << 32)

struct event_hdr {
	u64 ts_ns;
	u32 pid;
	u32 tid;
	u32 cookie;
	u16 nr_args;
	u16 str_bytes;
	char comm[16];
	u64 args[MAX_ARGS];
};

// ---- Following a process tree (usdt.bpf.c: on_fork, on_exit -> the `follow` ring) ----

// A process in the filter forked (a child to attach per-process links to) or exited (its links
// to close). Only processes in `pid_filter` are reported.
#define FOLLOW_FORK 1
#define FOLLOW_EXIT 2

struct follow_rec {
	u32 kind; // FOLLOW_FORK or FOLLOW_EXIT
	u32 tgid; // the child, or the process that exited
	u64 mask; // its filter mask (pid_filter)
	u64 ts_ns; // when (bpf_ktime_get_ns): how long a child waited for its links
};

// ---- In-kernel start/done pairing (pair.bpf.h) ----

#define MAX_PAIRS 64
#define PAIR_BUCKETS 512
#define PAIR_MAX_STARTS 65536
#define PAIR_BY_THREAD 0xff

enum pair_role {
	ROLE_NONE = 0,
	ROLE_START = 1,
	ROLE_DONE = 2,
};

enum pair_stat {
	PS_STARTS = 0,
	PS_MATCHED = 1,
	PS_UNMATCHED = 2,
	PS_REPLACED = 3,
	PS_SUM_NS = 4,
	PS_SAMPLED = 5,
	// Call-shaped pairs only (calls.bpf.h); PS_UNMATCHED there counts returns on an empty stack.
	PS_UNWOUND = 6,	  // frames dropped because a return matched a frame below them
	PS_TOO_DEEP = 7,  // calls entered beyond CALL_DEPTH open calls (not timed)
	PS_STRAY = 8,	  // returns whose key is nowhere on the thread's stack (stack left as it is)
	PS_NO_ROOM = 9,	  // entries of threads the stack map had no room for (not timed)
	PS_NR = 16,
};

struct pair_cfg {
	u16 pair_id;
	u8 role;	 // enum pair_role
	u8 key_arg;	 // argument index holding the key, or PAIR_BY_THREAD
	u32 sample_every; // stream 1 request in this many; 0 = none
};

struct pair_key {
	u64 key; // the key argument, or pid_tgid when paired by thread
	u32 pair_id;
	u32 tgid;
};

struct pair_start {
	u64 ts_ns;
	u64 sampled;
};

// ---- In-kernel top (top.bpf.h) ----

// 64 bytes as bpftrace's str(): half the key to hash and zero than 128 (581 vs 625 ns/event).
#define TOP_KEY_LEN 64
#define TOP_MAX_KEYS 16384
// Entries of the per-CPU direct-mapped table in front of top_counts (top.bpf.h).
#define TOP_SLOTS 1024

enum top_stat {
	TS_UNREADABLE = 0, // no readable string argument (NULL, unmapped, unsupported form)
	TS_OVERFLOW = 1,   // the key was new and the map was full, or its hash belongs to another
			   // string (a 64-bit hash collision: counted here, never merged)
	TS_UNMATCHED = 2,  // toplat.bpf.h: a done found no start
	TS_REPLACED = 3,   // toplat.bpf.h: a start found an open start with the same key
	TS_NR = 4,
};

#define TOP_TRUNCATED 1
#define TOP_UNREADABLE 2 // toplat.bpf.h: the start's string could not be read (no key)

// The map is keyed by a 64-bit hash of the string, not the string: the kernel hashes and
// compares 16 key bytes instead of 72, which saves about a third of the per-hit cost. The
// string itself is kept in the value and compared on every hit, so a collision is counted
// (TS_OVERFLOW), never merged into another key's count.
struct top_hkey {
	u32 probe_id;
	u32 flags; // TOP_TRUNCATED: the string was TOP_KEY_LEN - 1 bytes or longer
	u64 hash;
};

// Per-CPU value; a CPU's copy stays zeroed (count 0, no string) until that CPU sees the key.
struct top_val {
	u64 count;
	char str[TOP_KEY_LEN];
};

struct top_slot {
	u64 tag; // hash | 1 once claimed (claimed atomically), 0 while free
	u32 probe_id;
	u32 flags;
	struct top_val v; // v.count is set last: 0 means not filled in yet
};

// ---- In-kernel top with latency per key (toplat.bpf.h) ----

#define TL_MAX_KEYS 2048
#define TL_MAX_STARTS 16384
#define TL_FIRST_BUCKET 64 // pair_bucket(256)
#define TL_BUCKETS 256	    // a power of two: the index is masked with it

struct toplat_start {
	u64 ts_ns;
	struct top_hkey k; // flags has TOP_UNREADABLE when the start had no readable string
	struct top_val v;  // v.count = 1: what top_count adds
};

// v first, so top_count() serves: v.count is this CPU's completed requests, v.str the string.
struct toplat_agg {
	struct top_val v;
	u64 sum_ns;
	u64 buckets[TL_BUCKETS];
};

// ---- Call-shaped pairs: entry/return on a bounded stack per thread (calls.bpf.h) ----

#define CALL_DEPTH 32 // frames kept per thread; a power of two: frame indices are masked with it
#define CALL_MAX_THREADS 16384
#define CALL_UNKEYED 4 // call_frame.flags: the entry had no key argument to read

struct call_frame {
	u64 ts_ns;
	u64 hash;     // top_hkey.hash of the entry's key string
	u32 probe_id; // the entry probe
	u32 flags;    // top_hkey.flags (TOP_TRUNCATED, TOP_UNREADABLE) or CALL_UNKEYED
};

struct call_stack {
	u32 depth; // open calls, also those beyond CALL_DEPTH (only the first CALL_DEPTH are kept)
	u32 _pad;
	struct call_frame frames[CALL_DEPTH];
};
