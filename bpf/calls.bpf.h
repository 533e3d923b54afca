// SPDX-License-Identifier: GPL-2.0
//
// Call-shaped pairs in the kernel (MODE_CALLS): entry/return probes that nest on a thread (a
// function calls a function). Included by usdt.bpf.c after pair.bpf.h, top.bpf.h and
// toplat.bpf.h, whose role config (pair_cfgs), per-pair counters and histogram (pair_stats,
// pair_hist), hashed string key (top_read_key) and per-key latency aggregates (toplat_aggs,
// toplat_record) it reuses. Nothing is streamed: a hot function costs a stack push and a pop.
// User-space side: src/probes/kernel/kcalls.rs; the structs are in bpf/abi.h.
//
//   call_stacks HASH u64 pid_tgid -> struct call_stack (one per thread that entered a call;
//                                    not preallocated, at most CALL_MAX_THREADS; deleted when
//                                    the thread exits, calls_thread_exit)
//   call_zero   ARRAY u32 0       -> struct call_stack (all zero: a new thread's stack)
//
// An entry pushes {time, hash of its key string, probe} on its thread's stack; a return reads
// its own key and pops. How a return is resolved (every case but the first is counted):
//   - its key is the top frame's (or it has no key, or the top frame's key was unreadable):
//     the top frame is its call;
//   - its key is further down: the newest frame with its key is its call, and the frames above
//     it are dropped (PS_UNWOUND): calls that never returned (an exception or longjmp the
//     runtime did not report, a coroutine switched away);
//   - its key is nowhere on the stack (PS_STRAY), or the stack is empty (PS_UNMATCHED): a call
//     entered before tracing began or on another stack; nothing is popped;
//   - beyond CALL_DEPTH open calls, entries are only counted (PS_TOO_DEEP) and returns pop them
//     by depth, so the CALL_DEPTH outer calls still pair with their own returns.
// The latency goes to the pair's histogram and to the key's aggregate (keyed by the entry
// probe and the string), so `latency --by` and `top` get per-function rows from the kernel.

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CALL_MAX_THREADS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, u64);
	__type(value, struct call_stack);
} call_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct call_stack);
} call_zero SEC(".maps");

// The site's key string into `v` (zeroed by the caller) and `k`; CALL_UNKEYED when the site
// reads no string (no --by and no label), TOP_UNREADABLE when it could not be read.
static __always_inline void calls_key(void *ctx, const struct site_spec *spec,
				      struct top_hkey *k, struct top_val *v, const int sleepable)
{
	k->probe_id = spec->probe_id;
	v->count = 1;
	if (!spec->nr_strs)
		k->flags = CALL_UNKEYED;
	else if (top_read_key(ctx, spec, k, v, sleepable))
		k->flags = TOP_UNREADABLE;
}

static __always_inline struct call_stack *calls_stack_of(u64 *tid)
{
	struct call_stack *st = bpf_map_lookup_elem(&call_stacks, tid);
	if (st)
		return st;
	u32 zero = 0;
	const struct call_stack *z = bpf_map_lookup_elem(&call_zero, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&call_stacks, tid, z, BPF_NOEXIST);
	return bpf_map_lookup_elem(&call_stacks, tid);
}

static __always_inline void calls_entry(void *ctx, const struct site_spec *spec, u32 pair,
					u64 now, const int sleepable)
{
	pair_stat_add(pair, PS_STARTS, 1);
	// The key first: a sleepable read may sleep, and no map value is held meanwhile.
	struct top_hkey k = {};
	struct top_val v = {};
	calls_key(ctx, spec, &k, &v, sleepable);
	u64 tid = bpf_get_current_pid_tgid();
	struct call_stack *st = calls_stack_of(&tid);
	if (!st) {
		pair_stat_add(pair, PS_NO_ROOM, 1);
		return;
	}
	u32 d = st->depth;
	if (d >= CALL_DEPTH) {
		// Kept as a depth only, so that the returns of these calls pop them and not the
		// stored frames below.
		if (d < 0x7fffffff)
			st->depth = d + 1;
		pair_stat_add(pair, PS_TOO_DEEP, 1);
		return;
	}
	struct call_frame *f = &st->frames[d & (CALL_DEPTH - 1)];
	f->ts_ns = now;
	f->hash = k.hash;
	f->probe_id = k.probe_id;
	f->flags = k.flags;
	st->depth = d + 1;
}

// Whether frame `f` (the top one when `top`) is the call a return with key `k` ends.
static __always_inline int calls_match(const struct call_frame *f, const struct top_hkey *k,
				       int top)
{
	if ((k->flags | f->flags) & (CALL_UNKEYED | TOP_UNREADABLE))
		return top;
	return f->hash == k->hash && f->flags == k->flags;
}

static __always_inline void calls_return(void *ctx, const struct site_spec *spec, u32 pair,
					 u64 now, const int sleepable)
{
	struct top_hkey k = {};
	struct top_val v = {};
	calls_key(ctx, spec, &k, &v, sleepable);
	u64 tid = bpf_get_current_pid_tgid();
	struct call_stack *st = bpf_map_lookup_elem(&call_stacks, &tid);
	if (!st || st->depth == 0) {
		pair_stat_add(pair, PS_UNMATCHED, 1);
		return;
	}
	u32 d = st->depth;
	if (d > CALL_DEPTH) {
		st->depth = d - 1; // a call too deep to time (counted at its entry)
		return;
	}
	int at = -1;
	for (u32 i = 0; i < CALL_DEPTH; i++) {
		if (i >= d)
			break;
		u32 j = d - 1 - i;
		if (calls_match(&st->frames[j & (CALL_DEPTH - 1)], &k, i == 0)) {
			at = j;
			break;
		}
	}
	if (at < 0) {
		pair_stat_add(pair, PS_STRAY, 1);
		return;
	}
	if (d - 1 - at)
		pair_stat_add(pair, PS_UNWOUND, d - 1 - at);
	const struct call_frame *f = &st->frames[at & (CALL_DEPTH - 1)];
	u64 lat = now > f->ts_ns ? now - f->ts_ns : 0;
	u32 entry_probe = f->probe_id, entry_flags = f->flags;
	st->depth = at;

	pair_stat_add(pair, PS_MATCHED, 1);
	pair_stat_add(pair, PS_SUM_NS, lat);
	u32 b = pair * PAIR_BUCKETS + (pair_bucket(lat) & (PAIR_BUCKETS - 1));
	u64 *h = bpf_map_lookup_elem(&pair_hist, &b);
	if (h)
		*h += 1;
	if ((k.flags | entry_flags) & CALL_UNKEYED)
		return;
	if ((k.flags | entry_flags) & TOP_UNREADABLE) {
		top_stat_add(entry_probe, TS_UNREADABLE);
		return;
	}
	// Keyed by the entry probe, as toplat keys a request by its start.
	k.probe_id = entry_probe;
	toplat_record(&k, &v, lat);
}

static __always_inline void calls_hit(void *ctx, const struct site_spec *spec,
				      const int sleepable)
{
	u32 probe = spec->probe_id;
	const struct pair_cfg *cfg = bpf_map_lookup_elem(&pair_cfgs, &probe);
	if (!cfg || cfg->role == ROLE_NONE || cfg->pair_id >= MAX_PAIRS)
		return;
	u64 now = bpf_ktime_get_ns();
	if (cfg->role == ROLE_START)
		calls_entry(ctx, spec, cfg->pair_id, now, sleepable);
	else
		calls_return(ctx, spec, cfg->pair_id, now, sleepable);
}

// A thread that exits leaves no stack behind (its id may be reused by a new thread).
static __always_inline void calls_thread_exit(u64 pid_tgid)
{
	bpf_map_delete_elem(&call_stacks, &pid_tgid);
}
