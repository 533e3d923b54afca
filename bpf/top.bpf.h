// SPDX-License-Identifier: GPL-2.0
//
// In-kernel `top` (MODE_TOP), included by usdt.bpf.c after read_arg(): a hit reads the site's
// string argument (the first with a string slot: user space attaches top with only the --by
// argument as a string) into a fixed, zero-padded buffer and counts it in a per-CPU hash, so no
// event goes to the ring buffer. User-space side: src/probes/kernel/ktop.rs; the structs are in
// bpf/abi.h.
//
//   top_counts PERCPU_HASH struct top_hkey -> struct top_val (hits and the string; bounded,
//                                              never evicts: a hit whose key finds the map
//                                              full is counted in TS_OVERFLOW instead)
//   top_slots  PERCPU_ARRAY hash % TOP_SLOTS -> struct top_slot (a cache-like fast path;
//                                                 counts there are not in top_counts)
//   top_stats  PERCPU_ARRAY probe id * TS_NR + stat -> u64

// Limits, stats, flags and the structs below: bpf/abi.h.

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, TOP_MAX_KEYS);
	__type(key, struct top_hkey);
	__type(value, struct top_val);
} top_counts SEC(".maps");

// In front of top_counts, a per-CPU direct-mapped table indexed by the hash: its lookup is
// inlined by the verifier, so a key that owns its slot skips the hash-map lookup (~15 ns of
// ~560). A slot, once claimed, keeps its key; a key whose slot is taken uses top_counts.
// User space adds up both (the same key can be in both).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TOP_SLOTS);
	__type(key, u32);
	__type(value, struct top_slot);
} top_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PROBES * TS_NR);
	__type(key, u32);
	__type(value, u64);
} top_stats SEC(".maps");

static __always_inline void top_stat_add(u32 probe, u32 stat)
{
	u32 i = (probe & (MAX_PROBES - 1)) * TS_NR + stat;
	u64 *v = bpf_map_lookup_elem(&top_stats, &i);
	if (v)
		*v += 1;
}

#define TOP_WORDS (TOP_KEY_LEN / 8)

// A count > 0 tells readers (user space, and programs on this CPU) that the string is there:
// the compiler must not move the count's store before the string's. x86 keeps stores in
// program order, so a compiler barrier is enough.
#define publish_barrier() asm volatile("" ::: "memory")

// Hashes the words of a zero-padded string that hold its `len` bytes (NUL included).
static __always_inline u64 top_hash(const u64 *w, long len)
{
	u64 h = 0x9e3779b97f4a7c15ULL ^ (u64)len;
	u32 nw = (len + 7) / 8;
	for (u32 i = 0; i < TOP_WORDS; i++) {
		if (i >= nw)
			break;
		h = (h ^ w[i]) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 29);
}

// Whether this CPU's copy holds the same string (both zero-padded).
static __always_inline int top_same(const struct top_val *a, const struct top_val *b)
{
	const u64 *x = (const u64 *)a->str, *y = (const u64 *)b->str;
	u64 diff = 0;
	for (int i = 0; i < TOP_WORDS; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

// Counts one hit of `v->str` in an existing entry; returns 0 on a hash collision.
static __always_inline int top_count(struct top_val *c, const struct top_val *v)
{
	if (c->count == 0) {
		// First hit of this key on this CPU: take the string into this CPU's copy.
		__builtin_memcpy(c->str, v->str, TOP_KEY_LEN);
		publish_barrier();
		c->count = 1;
		return 1;
	}
	if (!top_same(c, v))
		return 0;
	c->count += 1;
	return 1;
}

// Counts the hit in the key's direct-mapped slot if the key owns it (or claims it when free);
// returns 0 when top_counts must count it instead.
static __always_inline int top_slot_hit(const struct top_hkey *k, const struct top_val *v)
{
	u32 idx = k->hash & (TOP_SLOTS - 1);
	struct top_slot *s = bpf_map_lookup_elem(&top_slots, &idx);
	if (!s)
		return 0;
	u64 tag = k->hash | 1;
	if (s->tag == tag) {
		if (!s->v.count || s->probe_id != k->probe_id || s->flags != k->flags ||
		    !top_same(&s->v, v))
			return 0;
		s->v.count += 1;
		return 1;
	}
	if (s->tag || __sync_val_compare_and_swap(&s->tag, 0, tag) != 0)
		return 0;
	s->probe_id = k->probe_id;
	s->flags = k->flags;
	// The claimed slot's count is 0: top_count publishes the string, then the count.
	return top_count(&s->v, v);
}

// Reads the site's string argument into `v->str`, which must be zeroed (the helper stops at the
// NUL and the bytes after it are hashed and compared), and fills in `k` but for its probe id.
// Returns nonzero when there is no string to read.
static __always_inline int top_read_key(void *ctx, const struct site_spec *spec,
					struct top_hkey *k, struct top_val *v, const int sleepable)
{
	u64 ptr = 0;
	const struct arg_spec *a = 0;
	for (int i = 0; i < MAX_ARGS; i++) {
		if (i >= spec->nr_args)
			break;
		if (spec->args[i].str_slot == 0) {
			a = &spec->args[i];
			ptr = read_arg(ctx, spec, a);
			break;
		}
	}
	if (!a || !ptr)
		return -1;
	long n = read_arg_str(ctx, spec, a, ptr, v->str, TOP_KEY_LEN, sleepable);
	if (n <= 0) {
		count_unreadable(spec->probe_id, 1);
		return -1;
	}
	k->flags = n == TOP_KEY_LEN ? TOP_TRUNCATED : 0;
	k->hash = top_hash((const u64 *)v->str, n);
	return 0;
}

static __always_inline void top_hit(void *ctx, const struct site_spec *spec, const int sleepable)
{
	u32 probe = spec->probe_id;
	struct top_val v = {.count = 1};
	struct top_hkey k = {.probe_id = probe};
	if (top_read_key(ctx, spec, &k, &v, sleepable)) {
		top_stat_add(probe, TS_UNREADABLE);
		return;
	}
	if (top_slot_hit(&k, &v))
		return;
	struct top_val *c = bpf_map_lookup_elem(&top_counts, &k);
	if (c) {
		if (!top_count(c, &v))
			top_stat_add(probe, TS_OVERFLOW);
		return;
	}
	if (!bpf_map_update_elem(&top_counts, &k, &v, BPF_NOEXIST))
		return;
	// Another CPU may have inserted the same key meanwhile; else the map is full.
	c = bpf_map_lookup_elem(&top_counts, &k);
	if (!c || !top_count(c, &v))
		top_stat_add(probe, TS_OVERFLOW);
}
