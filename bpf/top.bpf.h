// SPDX-License-Identifier: GPL-2.0
//
// In-kernel `top` (MODE_TOP), included by usdt.bpf.c after read_arg(): a hit reads the site's
// string argument (the first with a string slot: user space attaches top with only the --by
// argument as a string) into a fixed, zero-padded key and counts it in a per-CPU hash, so no
// event goes to the ring buffer. User-space side: src/probes/ktop.rs (keep both in sync).
//
//   top_counts PERCPU_HASH struct top_key -> u64 hits   (bounded; never evicts: a hit whose
//                                                         key finds the map full is counted
//                                                         in TS_OVERFLOW instead)
//   top_stats  PERCPU_ARRAY probe id * TS_NR + stat -> u64

// 64 bytes as bpftrace's str(): half the key to hash and zero than 128 (581 vs 625 ns/event).
#define TOP_KEY_LEN 64
#define TOP_MAX_KEYS 16384

enum top_stat {
	TS_UNREADABLE = 0, // no readable string argument (NULL, unmapped, unsupported form)
	TS_OVERFLOW = 1,   // the key was new and the map was full
	TS_NR = 4,
};

#define TOP_TRUNCATED 1

struct top_key {
	u32 probe_id;
	u32 flags; // TOP_TRUNCATED: the string was TOP_KEY_LEN - 1 bytes or longer
	char str[TOP_KEY_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, TOP_MAX_KEYS);
	__type(key, struct top_key);
	__type(value, u64);
} top_counts SEC(".maps");

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

static __always_inline void top_hit(void *ctx, const struct site_spec *spec)
{
	u32 probe = spec->probe_id;
	u64 ptr = 0;
	int found = 0;
	for (int i = 0; i < MAX_ARGS; i++) {
		if (i >= spec->nr_args)
			break;
		const struct arg_spec *a = &spec->args[i];
		if (a->str_slot == 0) {
			ptr = read_arg(ctx, spec, a);
			found = 1;
			break;
		}
	}
	if (!found || !ptr) {
		top_stat_add(probe, TS_UNREADABLE);
		return;
	}
	// Zeroed first: the helper stops at the NUL and the bytes after it are part of the key.
	struct top_key k = {.probe_id = probe};
	long n = bpf_probe_read_user_str(k.str, TOP_KEY_LEN, (void *)ptr);
	if (n <= 0) {
		top_stat_add(probe, TS_UNREADABLE);
		return;
	}
	if (n == TOP_KEY_LEN)
		k.flags = TOP_TRUNCATED;
	u64 *c = bpf_map_lookup_elem(&top_counts, &k);
	if (c) {
		*c += 1;
		return;
	}
	u64 one = 1;
	if (!bpf_map_update_elem(&top_counts, &k, &one, BPF_NOEXIST))
		return;
	// Another CPU may have inserted the same key meanwhile; else the map is full.
	c = bpf_map_lookup_elem(&top_counts, &k);
	if (c)
		*c += 1;
	else
		top_stat_add(probe, TS_OVERFLOW);
}
