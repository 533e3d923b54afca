// SPDX-License-Identifier: GPL-2.0
//
// usdtop's one generic USDT program. Every site usdtop attaches — through a uprobe-multi link
// (one per probe, src/probes/tracing/multi.rs) or a uprobe perf event (one per site, the
// fallback) — runs `usdt_hit` with a BPF cookie; the cookie indexes `site_specs`, which says
// how to read that site's arguments (argument specs belong to the site, not the probe).
//
// Map layouts (structs in bpf/abi.h, checked against src/probes/tracing/abi.rs by build.rs):
//   site_specs  ARRAY  u32 cookie        -> struct site_spec   (written by user space at attach)
//   pid_filter  HASH   u32 tgid          -> u64 filter mask    (bit i = member of filter slot i)
//   filter_fast ARRAY  u32 filter slot   -> u32 tgid admitted without the pid_filter lookup
//   hits        PERCPU_ARRAY u32 probe id -> u64 hits          (after the process filter)
//   drops       PERCPU_ARRAY u32 0       -> u64 events lost because the ring buffer was full
//   unreadable  PERCPU_ARRAY u32 probe id -> u64 string arguments (not NULL) left unreadable
//   fault_fails ARRAY u32 probe id        -> u32 failed attempts in a row to fault a string in
//   events      RINGBUF                  <- struct event_hdr + packed string bytes
//   follow      RINGBUF                  <- struct follow_rec (forks and exits of the filtered)
//   scratch     PERCPU_ARRAY u32 0       -> struct event_buf   (event assembled here, then copied)
//
// Two entry points share one body: `usdt_hit` never faults, `usdt_hit_sleepable` (a sleepable
// uprobe) may fault a string's pages into the traced process when the non-faulting read fails
// (literals in .rodata pages the process has not touched yet); see read_str().
//
// Extension point: `site_spec.mode` selects what a hit does. MODE_STREAM sends every event to
// user space, MODE_COUNT only bumps `hits`, MODE_PAIR pairs starts with dones in the kernel
// (pair.bpf.h), MODE_TOP counts hits per string argument in the kernel (top.bpf.h), MODE_TOPLAT
// pairs them too and keeps a latency histogram per string (toplat.bpf.h), MODE_CALLS pairs
// nested entry/return probes on a stack per thread (calls.bpf.h).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "abi.h"
#include "x86_64.h"

struct event_buf {
	struct event_hdr hdr;
	char strs[STR_AREA + STR_LEN];
	// Not sent. Strings left unreadable: kept in the map, not in a register, so that the
	// verifier need not tell loop iterations apart by it (it would not prune).
	u32 nr_bad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SITES);
	__type(key, u32);
	__type(value, struct site_spec);
} site_specs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u64);
} pid_filter SEC(".maps");

// The process named on the command line (-p) fires most hits; comparing its tgid here costs
// an inlined array load instead of a hash lookup (~25 ns a hit). Cleared when it exits, so a
// reused pid is not admitted.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u32);
} filter_fast SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, u32);
	__type(value, u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, u32);
	__type(value, u64);
} unreadable SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, u32);
	__type(value, u32);
} fault_fails SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct event_buf);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

// Forks and exits of filtered processes, for the per-process links of the uprobe-multi path
// (src/probes/tracing/follow.rs). Woken per record: a child's link must be made before its
// first probe fires.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} follow SEC(".maps");

static __always_inline u64 read_mem(u64 addr, u32 size)
{
	u64 v = 0;
	if (size == 0 || size > 8)
		size = 8;
	bpf_probe_read_user(&v, size, (void *)addr);
	return v;
}

// Read one argument; strings are read later from the resulting pointer.
static __always_inline u64 read_arg(void *ctx, const struct site_spec *spec, const struct arg_spec *a)
{
	u64 v = 0, addr;
	u32 size = a->size;

	switch (a->kind) {
	case ARG_CONST:
		return a->val;
	case ARG_REG:
		v = read_reg(ctx, a->reg_off) >> (a->shift & 63);
		if (a->width < 8)
			v &= (1ULL << ((a->width & 7) * 8)) - 1;
		break;
	case ARG_MEM:
		addr = read_reg(ctx, a->reg_off) + a->val;
		v = read_mem(addr, size);
		break;
	case ARG_RIP_SYM:
		// In a uprobe the saved ip is the probed address, so ip - site_addr is the load bias.
		addr = a->val + (read_reg(ctx, PT_REGS_RIP_OFF) - spec->site_addr);
		v = read_mem(addr, size);
		break;
	case ARG_INDEXED:
		addr = a->val + read_reg(ctx, a->idx_reg_off) * a->scale;
		if (a->reg_off != NO_REG)
			addr += read_reg(ctx, a->reg_off);
		v = read_mem(addr, size);
		break;
	default:
		return 0;
	}
	if (size < 8) {
		u32 bits = 64 - (size & 7) * 8;
		if (a->is_signed)
			v = (u64)(((s64)(v << bits)) >> bits);
		else
			v = (v << bits) >> bits;
	}
	return v;
}

// The few task_struct fields used, relocated against the kernel's BTF (CO-RE).
struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

static __always_inline int admitted(const struct site_spec *spec)
{
	u64 mask = spec->filter_mask;
	if (!mask)
		return 1;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 slot = spec->filter_slot & 63;
	u32 *fast = bpf_map_lookup_elem(&filter_fast, &slot);
	if (fast && *fast == tgid)
		return 1;
	u64 *m = bpf_map_lookup_elem(&pid_filter, &tgid);
	return m && (*m & mask);
}

static __always_inline void count_hit(u32 probe_id)
{
	u64 *h = bpf_map_lookup_elem(&hits, &probe_id);
	if (h)
		*h += 1;
}

static __always_inline void count_drop(void)
{
	u32 zero = 0;
	u64 *d = bpf_map_lookup_elem(&drops, &zero);
	if (d)
		*d += 1;
}

static __always_inline void count_unreadable(u32 probe_id, u64 n)
{
	u64 *u = bpf_map_lookup_elem(&unreadable, &probe_id);
	if (u)
		*u += n;
}

#define PAGE_SIZE 4096
#define MMAP_MIN_ADDR 65536

// Makes the pages of the string at `p` resident in the traced process, as the process's own
// read would: bpf_copy_from_user faults, bpf_probe_read_user_str never does. Sleepable programs
// only. `tmp` (len bytes) is overwritten. Returns the length read into `tmp` (as
// bpf_probe_read_user_str), or < 0 if the string is still unreadable (a really bad pointer).
// A kfunc (bpf_copy_from_user_str) would do this in one call, but aya 0.14 cannot link kfuncs.
static __always_inline long fault_in_str(void *tmp, u32 len, u64 p)
{
	char b;
	if (bpf_copy_from_user(&b, 1, (void *)p))
		return -1;
	long n = bpf_probe_read_user_str(tmp, len, (void *)p);
	if (n > 0)
		return n;
	// The string runs on into the next page (len < PAGE_SIZE: at most one more). Its first
	// byte is faulted in only now that the string is known to reach it.
	u64 next = (p | (PAGE_SIZE - 1)) + 1;
	if (next - p >= len || bpf_copy_from_user(&b, 1, (void *)next))
		return -1;
	return bpf_probe_read_user_str(tmp, len, (void *)p);
}

// Makes the `n` bytes at `p` (0 < n < PAGE_SIZE: at most two pages) resident in the traced
// process, for a pointer + length string (bpf/strarg.bpf.h). Sleepable programs only. Returns n,
// or < 0 if they are still unreadable.
static __always_inline long fault_in_bytes(u64 p, u32 n)
{
	char b;
	if (bpf_copy_from_user(&b, 1, (void *)p) || bpf_copy_from_user(&b, 1, (void *)(p + n - 1)))
		return -1;
	return n;
}

// A failed attempt to fault a string in (a bad pointer, not a cold page) costs ~750 ns on top of
// the failed read. After FAULT_TRIES failures in a row, a probe tries one hit in 64 only.
#define FAULT_TRIES 8

// fault_in_str (nbytes < 0: a C string) or fault_in_bytes (nbytes > 0: a pointer + length
// string), unless the probe's recent attempts say its pointers are bad.
static __always_inline long fault_in_str_probe(u32 probe_id, void *tmp, u32 len, u64 p, s64 nbytes)
{
	// Below vm.mmap_min_addr (64 KiB here) nothing is mapped: a small integer read as a
	// string (--str on a number) is not worth a fault.
	if (p < MMAP_MIN_ADDR)
		return -1;
	u32 *fails = bpf_map_lookup_elem(&fault_fails, &probe_id);
	if (!fails)
		return -1;
	u32 f = *fails;
	if (f >= FAULT_TRIES && (f & 63)) {
		*fails = f + 1;
		return -1;
	}
	long n = nbytes < 0 ? fault_in_str(tmp, len, p) : fault_in_bytes(p, nbytes);
	*fails = n > 0 ? 0 : f + 1;
	return n;
}

// Reads a user string into `dst`; a sleepable program retries once its pages are faulted in.
static __always_inline long read_str(void *dst, u32 len, u64 p, u32 probe_id, const int sleepable)
{
	long n = bpf_probe_read_user_str(dst, len, (void *)p);
	if (n > 0 || !sleepable)
		return n;
	return fault_in_str_probe(probe_id, dst, len, p, -1);
}

#include "strarg.bpf.h"
#include "pair.bpf.h"
#include "top.bpf.h"
#include "toplat.bpf.h"
#include "calls.bpf.h"

// Fills `e` with this hit (header, arguments and strings, never faulting). Returns how many
// string arguments could not be read (not NULL, not out of room): their slots hold STR_FAULT.
// A global function: the verifier checks it once, not at each of its call sites (the sleepable
// program calls it twice); that halves the extra load time of the sleepable program (0.5 s).
__noinline u32 fill_event(void *ctx __attribute__((btf_decl_tag("arg:ctx"))),
			  const struct site_spec *spec, u32 cookie, struct event_buf *e)
{
	if (!spec || !e)
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	e->hdr.ts_ns = bpf_ktime_get_ns();
	e->hdr.pid = pid_tgid >> 32;
	e->hdr.tid = (u32)pid_tgid;
	e->hdr.cookie = cookie;
	e->hdr.nr_args = spec->nr_args;
	// Two loads through the BTF task pointer: cheaper than bpf_get_current_comm's copy loop.
	// Bytes after the NUL may be stale; user space stops at the NUL.
	struct task_struct *task = bpf_get_current_task_btf();
	*(u64 *)&e->hdr.comm[0] = *(u64 *)&task->comm[0];
	*(u64 *)&e->hdr.comm[8] = *(u64 *)&task->comm[8];

	u32 off = 0;
	e->nr_bad = 0;
	for (int i = 0; i < MAX_ARGS; i++) {
		if (i >= spec->nr_args)
			break;
		const struct arg_spec *a = &spec->args[i];
		u64 v = read_arg(ctx, spec, a);
		if (a->str_slot != NO_STR && v == 0) {
			v = STR_NULL;
		} else if (a->str_slot != NO_STR && off <= STR_AREA - STR_LEN) {
			v = read_str_slot(ctx, spec, a, v, e, off);
			if (v & STR_FAULT)
				e->nr_bad++;
			else
				// The mask never changes the value (8 strings fit in STR_AREA) but gives
				// every iteration the same range, so the verifier can prune (3x faster load).
				off = (off + (u32)v) & (STR_AREA - 1);
		} else if (a->str_slot != NO_STR) {
			v = STR_FAULT | STR_TRUNCATED;
		}
		e->hdr.args[i] = v;
	}
	e->hdr.str_bytes = off;
	return e->nr_bad;
}

// Streams one hit. A sleepable program that could not read a string faults its pages in and
// then fills the event again from the start: while it slept, another task on this CPU may have
// used the per-CPU scratch buffer, so nothing written before the fault is trusted.
static __always_inline void stream_hit(void *ctx, const struct site_spec *spec, u32 cookie,
				       const int sleepable)
{
	u32 zero = 0;
	struct event_buf *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return;
	u32 bad = fill_event(ctx, spec, cookie, e);
	if (sleepable && bad) {
		int paged = 0;
		for (int i = 0; i < MAX_ARGS; i++) {
			if (i >= spec->nr_args)
				break;
			if (e->hdr.args[i] != STR_FAULT)
				continue;
			// The scratch strings are a throwaway destination here (refilled below).
			if (fault_in_arg(ctx, spec, &spec->args[i], e->strs) > 0)
				paged = 1;
		}
		if (paged)
			bad = fill_event(ctx, spec, cookie, e);
	}
	if (bad)
		count_unreadable(spec->probe_id, bad);

	u32 off = e->hdr.str_bytes;
	u32 size = sizeof(e->hdr) + (off & (STR_AREA - 1));
	if (off >= STR_AREA)
		size = sizeof(e->hdr) + STR_AREA;
	// Never wake the reader: it drains the ring every 10 ms (a wakeup per event costs ~4x).
	if (bpf_ringbuf_output(&events, e, size, BPF_RB_NO_WAKEUP))
		count_drop();
}

static __always_inline int hit(struct pt_regs *ctx, const int sleepable)
{
	u32 cookie = bpf_get_attach_cookie(ctx);
	const struct site_spec *spec = bpf_map_lookup_elem(&site_specs, &cookie);
	if (!spec || !admitted(spec))
		return 0;
	count_hit(spec->probe_id);
	if (spec->mode == MODE_TOP) {
		top_hit(ctx, spec, sleepable);
		return 0;
	} else if (spec->mode == MODE_TOPLAT) {
		toplat_hit(ctx, spec, sleepable);
		return 0;
	} else if (spec->mode == MODE_CALLS) {
		calls_hit(ctx, spec, sleepable);
		return 0;
	} else if (spec->mode == MODE_PAIR) {
		if (!pair_hit(ctx, spec))
			return 0;
	} else if (spec->mode != MODE_STREAM) {
		return 0;
	}
	stream_hit(ctx, spec, cookie, sleepable);
	return 0;
}

SEC("uprobe")
int usdt_hit(struct pt_regs *ctx)
{
	return hit(ctx, 0);
}

// Attached instead of usdt_hit to sites with string arguments unless the user said not to
// fault (src/probes/tracing/engine.rs: FaultStrings).
SEC("uprobe.s")
int usdt_hit_sleepable(struct pt_regs *ctx)
{
	return hit(ctx, 1);
}

// Process filter: children forked after the filter was set inherit their parent's mask, so
// workers of forking servers (postgres backends, php -S workers) are traced too.

SEC("tp_btf/sched_process_fork")
int on_fork(u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	u32 ptgid = BPF_CORE_READ(parent, tgid);
	u64 *m = bpf_map_lookup_elem(&pid_filter, &ptgid);
	if (!m)
		return 0;
	u64 mask = *m;
	u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ctgid == ptgid)
		return 0;
	bpf_map_update_elem(&pid_filter, &ctgid, &mask, BPF_ANY);
	struct follow_rec r = {
		.kind = FOLLOW_FORK, .tgid = ctgid, .mask = mask, .ts_ns = bpf_ktime_get_ns()};
	bpf_ringbuf_output(&follow, &r, sizeof(r), BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int on_exit(u64 *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx[0];
	u32 pid = BPF_CORE_READ(p, pid);
	u32 tgid = BPF_CORE_READ(p, tgid);
	calls_thread_exit((u64)tgid << 32 | pid);
	if (pid != tgid)
		return 0;
	u64 *m = bpf_map_lookup_elem(&pid_filter, &tgid);
	if (!m)
		return 0;
	u64 mask = *m;
	for (u32 slot = 0; slot < 64; slot++) {
		if (!(mask & (1ULL << slot)))
			continue;
		u32 *fast = bpf_map_lookup_elem(&filter_fast, &slot);
		if (fast && *fast == tgid)
			*fast = 0;
	}
	bpf_map_delete_elem(&pid_filter, &tgid);
	struct follow_rec r = {
		.kind = FOLLOW_EXIT, .tgid = tgid, .mask = mask, .ts_ns = bpf_ktime_get_ns()};
	bpf_ringbuf_output(&follow, &r, sizeof(r), BPF_RB_FORCE_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
