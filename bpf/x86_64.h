// SPDX-License-Identifier: GPL-2.0
//
// Everything x86-64 in the BPF program: where a uprobe's saved registers are in struct pt_regs,
// and how to load one by its offset. The Rust side is src/probes/discovery/argspec/x86_64.rs
// (register names -> these offsets); build.rs checks both against each other and these offsets
// against the kernel's struct pt_regs (<asm/ptrace.h>), failing the build on a mismatch.

#pragma once

#include "abi.h"

#define PT_REGS_R15_OFF 0
#define PT_REGS_R14_OFF 8
#define PT_REGS_R13_OFF 16
#define PT_REGS_R12_OFF 24
#define PT_REGS_RBP_OFF 32
#define PT_REGS_RBX_OFF 40
#define PT_REGS_R11_OFF 48
#define PT_REGS_R10_OFF 56
#define PT_REGS_R9_OFF 64
#define PT_REGS_R8_OFF 72
#define PT_REGS_RAX_OFF 80
#define PT_REGS_RCX_OFF 88
#define PT_REGS_RDX_OFF 96
#define PT_REGS_RSI_OFF 104
#define PT_REGS_RDI_OFF 112
#define PT_REGS_RIP_OFF 128
#define PT_REGS_RSP_OFF 152

// BPF only (build.rs's host check program reads just the offsets above).
#ifdef __bpf__

// Context loads must use the unmodified ctx pointer with a constant offset (the verifier
// rejects ctx + variable); inline asm stops clang from hoisting the offset into the pointer.
// This is much cheaper than a bpf_probe_read_kernel call per register. Two levels so that `off`
// (a PT_REGS_*_OFF name) is expanded to its number before it is pasted into the asm text.
#define CTX_LOAD(ctx, off) CTX_LOAD_(ctx, off)
#define CTX_LOAD_(ctx, off)                                                                \
	({                                                                                 \
		u64 __v;                                                                   \
		asm volatile("%0 = *(u64 *)(%1 + " #off ")" : "=r"(__v) : "r"(ctx));       \
		__v;                                                                       \
	})

#define REG_CASE(off)                                                                      \
	case off:                                                                          \
		return CTX_LOAD(ctx, off)

// The saved register at pt_regs byte offset `off` (0 for an offset that names no register).
static __always_inline u64 read_reg(void *ctx, u16 off)
{
	switch (off) {
	REG_CASE(PT_REGS_R15_OFF);
	REG_CASE(PT_REGS_R14_OFF);
	REG_CASE(PT_REGS_R13_OFF);
	REG_CASE(PT_REGS_R12_OFF);
	REG_CASE(PT_REGS_RBP_OFF);
	REG_CASE(PT_REGS_RBX_OFF);
	REG_CASE(PT_REGS_R11_OFF);
	REG_CASE(PT_REGS_R10_OFF);
	REG_CASE(PT_REGS_R9_OFF);
	REG_CASE(PT_REGS_R8_OFF);
	REG_CASE(PT_REGS_RAX_OFF);
	REG_CASE(PT_REGS_RCX_OFF);
	REG_CASE(PT_REGS_RDX_OFF);
	REG_CASE(PT_REGS_RSI_OFF);
	REG_CASE(PT_REGS_RDI_OFF);
	REG_CASE(PT_REGS_RIP_OFF);
	REG_CASE(PT_REGS_RSP_OFF);
	default:
		return 0;
	}
}

#endif // __bpf__
