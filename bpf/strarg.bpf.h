// SPDX-License-Identifier: GPL-2.0
//
// String arguments of both kinds: NUL-terminated (C strings), and pointer + length, where another
// argument of the site holds the length (arg_spec.len_arg). The JVM passes every string so, and
// its strings are not NUL-terminated: hotspot:thread__start(name, name_len, ...).
// A length is trusted only within bounds: at most STR_LEN - 1 bytes are read, the limit of a C
// string (a longer string is cut and flagged STR_TRUNCATED), and a negative length makes the
// string unreadable (STR_FAULT, counted) instead of being read.
// Included by usdt.bpf.c after read_arg() and the fault-in helpers.

#pragma once

// The length of a pointer + length string whose length is argument `i`, by that argument's own
// SDT size and sign: -1 when it is negative (or `i` is no argument), STR_LEN when it is longer
// than a string can be here. A global function: verified once, not at every string argument.
__noinline s64 str_arg_len(void *ctx __attribute__((btf_decl_tag("arg:ctx"))),
			   const struct site_spec *spec, u32 i)
{
	if (!spec || i >= MAX_ARGS)
		return -1;
	const struct arg_spec *la = &spec->args[i];
	u64 v = read_arg(ctx, spec, la);
	if (la->is_signed && (s64)v < 0)
		return -1;
	return v >= STR_LEN ? STR_LEN : v;
}

// Reads pointer + length string argument `a` of `spec` (its pointer not NULL) into e->strs at
// `off`, never faulting. Returns its event slot (as read_str_slot). A global function: verified
// once, not in every iteration of fill_event's loop over the arguments (and 5 arguments at most,
// so the pointer is read again here rather than passed).
__noinline u64 read_sized_slot(void *ctx __attribute__((btf_decl_tag("arg:ctx"))),
			       const struct site_spec *spec, const struct arg_spec *a,
			       struct event_buf *e, u32 off)
{
	if (!spec || !a || !e)
		return STR_FAULT;
	u64 p = read_arg(ctx, spec, a);
	s64 len = str_arg_len(ctx, spec, a->len_arg);
	if (len < 0)
		return STR_FAULT;
	u32 n = len < STR_LEN ? len : STR_LEN - 1;
	if (bpf_probe_read_user(&e->strs[off & (STR_AREA - 1)], n & (STR_LEN - 1), (void *)p))
		return STR_FAULT;
	return n | (len >= STR_LEN ? STR_TRUNCATED : 0);
}

// Reads string argument `a`, whose pointer `p` is not NULL, into e->strs at `off` (room for
// STR_LEN bytes), never faulting. Returns its event slot: the bytes read (without a NUL) |
// STR_TRUNCATED, or STR_FAULT when it cannot be read.
static __always_inline u64 read_str_slot(void *ctx, const struct site_spec *spec,
					 const struct arg_spec *a, u64 p, struct event_buf *e,
					 u32 off)
{
	if (a->len_arg != NO_LEN)
		return read_sized_slot(ctx, spec, a, e, off);
	long n = bpf_probe_read_user_str(&e->strs[off & (STR_AREA - 1)], STR_LEN, (void *)p);
	if (n <= 0)
		return STR_FAULT;
	return (u64)(n - 1) | (n == STR_LEN ? STR_TRUNCATED : 0);
}

// read_str() for string argument `a` of either kind, whose pointer `p` is not NULL, into `dst`
// (room for `max` bytes, a power of two of at most STR_LEN; zeroed, so that a pointer + length
// string ends with a NUL too). Returns as bpf_probe_read_user_str: the bytes read and the NUL,
// `max` when the string was cut (or is max - 1 bytes long), < 0 when it cannot be read.
static __always_inline long read_arg_str(void *ctx, const struct site_spec *spec,
					 const struct arg_spec *a, u64 p, void *dst, u32 max,
					 const int sleepable)
{
	if (a->len_arg == NO_LEN)
		return read_str(dst, max, p, spec->probe_id, sleepable);
	s64 len = str_arg_len(ctx, spec, a->len_arg);
	if (len < 0)
		return -1;
	u32 n = (len < max ? len : max - 1) & (max - 1);
	if (!bpf_probe_read_user(dst, n, (void *)p))
		return n + 1;
	if (!sleepable || n == 0 || fault_in_str_probe(spec->probe_id, dst, max, p, n) <= 0 ||
	    bpf_probe_read_user(dst, n, (void *)p))
		return -1;
	return n + 1;
}

// Faults in the pages of string argument `a` (sleepable programs only) as the process's own read
// would; `tmp` (STR_LEN bytes) is overwritten. > 0 when the string is readable now.
static __always_inline long fault_in_arg(void *ctx, const struct site_spec *spec,
					 const struct arg_spec *a, void *tmp)
{
	u64 p = read_arg(ctx, spec, a);
	if (a->len_arg == NO_LEN)
		return fault_in_str_probe(spec->probe_id, tmp, STR_LEN, p, -1);
	s64 len = str_arg_len(ctx, spec, a->len_arg);
	if (len <= 0)
		return -1;
	return fault_in_str_probe(spec->probe_id, tmp, STR_LEN, p, len < STR_LEN ? len : STR_LEN - 1);
}
