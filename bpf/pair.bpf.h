// SPDX-License-Identifier: GPL-2.0
//
// In-kernel start/done pairing (MODE_PAIR), included by usdt.bpf.c after read_arg(). For hot
// probes the kernel keeps the start times and the latency histogram, and only a sample of the
// requests (1 in `sample_every`, both the start and the done event) goes to the ring buffer for
// the request log. User-space side and map layouts: src/probes/kernel/kpair.rs; the structs are
// in bpf/abi.h.
//
//   pair_cfgs   ARRAY   u32 probe id            -> struct pair_cfg (role of that probe)
//   pair_starts LRU_HASH struct pair_key        -> struct pair_start (bounded: the least
//                                                  recently used start is dropped when full;
//                                                  ts_ns = 0 marks an empty per-thread slot)
//   pair_stats  PERCPU_ARRAY pair * PS_NR + stat -> u64
//   pair_hist   PERCPU_ARRAY pair * PAIR_BUCKETS + bucket -> u64 (log2 with 8 sub-buckets)

// Limits, roles, stats and the structs below: bpf/abi.h.

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, u32);
	__type(value, struct pair_cfg);
} pair_cfgs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PAIR_MAX_STARTS);
	__type(key, struct pair_key);
	__type(value, struct pair_start);
} pair_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PAIRS * PS_NR);
	__type(key, u32);
	__type(value, u64);
} pair_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PAIRS * PAIR_BUCKETS);
	__type(key, u32);
	__type(value, u64);
} pair_hist SEC(".maps");

static __always_inline u64 pair_stat_add(u32 pair, u32 stat, u64 n)
{
	u32 i = pair * PS_NR + stat;
	u64 *v = bpf_map_lookup_elem(&pair_stats, &i);
	if (!v)
		return 0;
	*v += n;
	return *v;
}

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0, s;
	s = (v > 0xffffffffULL) << 5; v >>= s; r |= s;
	s = (v > 0xffff) << 4; v >>= s; r |= s;
	s = (v > 0xff) << 3; v >>= s; r |= s;
	s = (v > 0xf) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	return r;
}

// Values below 8 ns have their own bucket; above, 8 linear steps per power of two, so a
// percentile read from the buckets is within 12.5 % (the same for any latency range).
static __always_inline u32 pair_bucket(u64 ns)
{
	if (ns < 8)
		return ns;
	u32 l = log2_u64(ns);
	return l * 8 + ((ns >> (l - 3)) & 7);
}

// The start-map key of a hit: its thread, or its key argument (within its process). Also used
// by toplat.bpf.h. Returns nonzero when the key argument index is out of range.
static __always_inline int pair_key_of(void *ctx, const struct site_spec *spec,
				       const struct pair_cfg *cfg, struct pair_key *k)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	k->pair_id = cfg->pair_id;
	k->tgid = pid_tgid >> 32;
	if (cfg->key_arg == PAIR_BY_THREAD) {
		k->key = pid_tgid;
		return 0;
	}
	u32 i = cfg->key_arg;
	if (i >= MAX_ARGS)
		return -1;
	k->key = read_arg(ctx, spec, &spec->args[i]);
	return 0;
}

// Returns 1 when this hit belongs to a sampled request and should be streamed too.
static __always_inline int pair_hit(void *ctx, const struct site_spec *spec)
{
	u32 probe = spec->probe_id;
	const struct pair_cfg *cfg = bpf_map_lookup_elem(&pair_cfgs, &probe);
	if (!cfg || cfg->role == ROLE_NONE || cfg->pair_id >= MAX_PAIRS)
		return 0;
	u64 now = bpf_ktime_get_ns();
	u32 pair = cfg->pair_id;
	struct pair_key k;
	if (pair_key_of(ctx, spec, cfg, &k))
		return 0;

	if (cfg->role == ROLE_START) {
		u64 n = pair_stat_add(pair, PS_STARTS, 1);
		struct pair_start s = {.ts_ns = now};
		if (cfg->sample_every && n % cfg->sample_every == 0)
			s.sampled = 1;
		struct pair_start *old = bpf_map_lookup_elem(&pair_starts, &k);
		if (old) {
			if (old->ts_ns)
				pair_stat_add(pair, PS_REPLACED, 1);
			// Rewriting in place skips the LRU map's node allocation and bucket lock.
			old->sampled = s.sampled;
			old->ts_ns = now;
		} else {
			bpf_map_update_elem(&pair_starts, &k, &s, BPF_ANY);
		}
		return s.sampled;
	}

	struct pair_start *s = bpf_map_lookup_elem(&pair_starts, &k);
	if (!s || !s->ts_ns) {
		pair_stat_add(pair, PS_UNMATCHED, 1);
		return 0;
	}
	u64 lat = now > s->ts_ns ? now - s->ts_ns : 0;
	int sampled = s->sampled != 0;
	// A thread's entry is reused by its next start, so it is only emptied (ts_ns = 0: no
	// open start), which saves a delete and an insert per pair. Key-argument entries are
	// deleted: their keys (fds, pointers) vary, and empty entries would crowd open starts
	// out of the bounded map.
	if (cfg->key_arg == PAIR_BY_THREAD)
		s->ts_ns = 0;
	else
		bpf_map_delete_elem(&pair_starts, &k);
	pair_stat_add(pair, PS_MATCHED, 1);
	pair_stat_add(pair, PS_SUM_NS, lat);
	if (sampled)
		pair_stat_add(pair, PS_SAMPLED, 1);
	u32 b = pair * PAIR_BUCKETS + (pair_bucket(lat) & (PAIR_BUCKETS - 1));
	u64 *h = bpf_map_lookup_elem(&pair_hist, &b);
	if (h)
		*h += 1;
	return sampled;
}
