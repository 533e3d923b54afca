// SPDX-License-Identifier: GPL-2.0
//
// In-kernel `top` with latency per key (MODE_TOPLAT), included by usdt.bpf.c after pair.bpf.h
// and top.bpf.h, whose role config (pair_cfgs), start key (pair_key_of), hashed string key
// (top_read_key, top_count), buckets (pair_bucket) and per-probe stats (top_stats) it reuses. A
// start reads the --by string and remembers {ts, key} per request; its done adds the latency to
// that key's per-CPU aggregate. Counts are of completed requests, as the streamed `top` counts
// them. User-space side and map layouts: src/probes/kernel/ktoplat.rs; the structs are in
// bpf/abi.h.
//
//   toplat_starts LRU_HASH struct pair_key -> struct toplat_start (bounded: the least recently
//                                              used start is dropped when full; ts_ns = 0
//                                              marks an empty per-thread slot)
//   toplat_aggs   PERCPU_HASH struct top_hkey -> struct toplat_agg (bounded, never evicts: a
//                                              done whose key finds it full, or whose hash is
//                                              another string's, is counted in TS_OVERFLOW;
//                                              not preallocated, so memory follows the keys)
//   toplat_zero   ARRAY u32 0 -> struct toplat_agg (all zero: the value a new key starts from)
//
// Buckets: pair_bucket()'s log2 x 8 scheme (1/8 of a power of two wide) from 256 ns to 2^40 ns
// (18 min), shorter and longer latencies clamped into the first and last bucket. Memory at most
// TL_MAX_KEYS x sizeof(struct toplat_agg) x CPUs = 2048 x 2128 B = 4.4 MB per CPU.

// Limits and the structs below: bpf/abi.h.

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TL_MAX_STARTS);
	__type(key, struct pair_key);
	__type(value, struct toplat_start);
} toplat_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, TL_MAX_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct top_hkey);
	__type(value, struct toplat_agg);
} toplat_aggs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct toplat_agg);
} toplat_zero SEC(".maps");

// Reads the start's key into `s`, whose string must be zeroed (see top_read_key).
static __always_inline void toplat_key(void *ctx, const struct site_spec *spec,
				       struct toplat_start *s, const int sleepable)
{
	s->k.probe_id = spec->probe_id;
	s->v.count = 1;
	if (top_read_key(ctx, spec, &s->k, &s->v, sleepable))
		s->k.flags = TOP_UNREADABLE;
}

// Adds a completed request of key `k` (string `v->str`) to its per-CPU aggregate. Also used by
// calls.bpf.h.
static __always_inline void toplat_record(const struct top_hkey *k, const struct top_val *v,
					  u64 lat)
{
	u32 b = pair_bucket(lat);
	b = b < TL_FIRST_BUCKET ? 0 : b - TL_FIRST_BUCKET;
	if (b >= TL_BUCKETS)
		b = TL_BUCKETS - 1;
	struct toplat_agg *a = bpf_map_lookup_elem(&toplat_aggs, k);
	if (!a) {
		u32 zero = 0;
		const struct toplat_agg *z = bpf_map_lookup_elem(&toplat_zero, &zero);
		if (!z)
			return;
		// NOEXIST: another CPU may have inserted the same key meanwhile; else the map is full.
		bpf_map_update_elem(&toplat_aggs, k, z, BPF_NOEXIST);
		a = bpf_map_lookup_elem(&toplat_aggs, k);
	}
	if (!a || !top_count(&a->v, v)) {
		top_stat_add(k->probe_id, TS_OVERFLOW);
		return;
	}
	a->sum_ns += lat;
	a->buckets[b & (TL_BUCKETS - 1)] += 1;
}

static __always_inline void toplat_hit(void *ctx, const struct site_spec *spec,
				       const int sleepable)
{
	u32 probe = spec->probe_id;
	const struct pair_cfg *cfg = bpf_map_lookup_elem(&pair_cfgs, &probe);
	if (!cfg || cfg->role == ROLE_NONE)
		return;
	u64 now = bpf_ktime_get_ns();
	struct pair_key pk;
	if (pair_key_of(ctx, spec, cfg, &pk))
		return;
	struct toplat_start *s = bpf_map_lookup_elem(&toplat_starts, &pk);

	if (cfg->role == ROLE_START) {
		if (s) {
			if (s->ts_ns)
				top_stat_add(probe, TS_REPLACED);
			// Read into the entry in place: no 96-byte copy and no LRU node allocation.
			__builtin_memset(s->v.str, 0, TOP_KEY_LEN);
			toplat_key(ctx, spec, s, sleepable);
			s->ts_ns = now;
			return;
		}
		struct toplat_start n = {.ts_ns = now};
		toplat_key(ctx, spec, &n, sleepable);
		bpf_map_update_elem(&toplat_starts, &pk, &n, BPF_ANY);
		return;
	}

	if (!s || !s->ts_ns) {
		top_stat_add(probe, TS_UNMATCHED);
		return;
	}
	u64 lat = now > s->ts_ns ? now - s->ts_ns : 0;
	if (s->k.flags & TOP_UNREADABLE)
		top_stat_add(s->k.probe_id, TS_UNREADABLE);
	else
		toplat_record(&s->k, &s->v, lat);
	// As in pair_hit: a thread's entry is only emptied for its next start; key-argument
	// entries are deleted (after their key was used above).
	if (cfg->key_arg == PAIR_BY_THREAD)
		s->ts_ns = 0;
	else
		bpf_map_delete_elem(&toplat_starts, &pk);
}
