/* The kernel's side of the uprobe-multi attach path alone, without usdtop (bench/multi_links.sh):
 * a program that does nothing, attached with BPF_LINK_CREATE (BPF_TRACE_UPROBE_MULTI) at the
 * file offsets read from stdin ("OFFSET" per line) of PATH for process PID, either as one link
 * carrying every site ("one") or as one link per site ("per"), then every link closed in turn.
 * Prints the time of the creates and of the closes.
 *   multi_links PATH PID one|per < offsets
 * Kernel headers older than 6.6 lack the uprobe-multi members, so they are spelled out here. */
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TRACE_UPROBE_MULTI 48 /* enum bpf_attach_type: BPF_TRACE_UPROBE_MULTI */
#define MAX_SITES 8192

/* bpf_attr.link_create with its uprobe_multi member (include/uapi/linux/bpf.h, 6.6+). */
struct uprobe_multi_create {
	uint32_t prog_fd, target_fd, attach_type, flags;
	uint64_t path, offsets, ref_ctr_offsets, cookies;
	uint32_t cnt, multi_flags, pid;
};

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s PATH PID one|per < offsets\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	uint32_t pid = (uint32_t)atoi(argv[2]);
	int per_site = !strcmp(argv[3], "per");
	static uint64_t offsets[MAX_SITES], cookies[MAX_SITES];
	static int links[MAX_SITES];
	unsigned long long off;
	int n = 0;
	while (n < MAX_SITES && scanf("%llu", &off) == 1) {
		offsets[n] = off;
		cookies[n] = n;
		n++;
	}

	struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	union bpf_attr load;
	memset(&load, 0, sizeof load);
	load.prog_type = BPF_PROG_TYPE_KPROBE;
	load.expected_attach_type = TRACE_UPROBE_MULTI;
	load.insns = (uint64_t)(uintptr_t)insns;
	load.insn_cnt = 2;
	load.license = (uint64_t)(uintptr_t)"GPL";
	int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
	if (prog < 0) {
		perror("BPF_PROG_LOAD");
		return 1;
	}

	int nlinks = per_site ? n : 1;
	double t0 = now_ms();
	for (int i = 0; i < nlinks; i++) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof attr);
		struct uprobe_multi_create *c = (void *)&attr;
		c->prog_fd = (uint32_t)prog;
		c->attach_type = TRACE_UPROBE_MULTI;
		c->path = (uint64_t)(uintptr_t)path;
		c->offsets = (uint64_t)(uintptr_t)(per_site ? &offsets[i] : offsets);
		c->cookies = (uint64_t)(uintptr_t)(per_site ? &cookies[i] : cookies);
		c->cnt = per_site ? 1 : (uint32_t)n;
		c->pid = pid;
		links[i] = (int)syscall(SYS_bpf, BPF_LINK_CREATE, &attr, sizeof attr);
		if (links[i] < 0) {
			perror("BPF_LINK_CREATE");
			return 1;
		}
	}
	double t1 = now_ms();
	for (int i = 0; i < nlinks; i++)
		close(links[i]);
	double t2 = now_ms();
	printf("%d sites in %d link(s): create %.1f ms, close %.1f ms\n", n, nlinks, t1 - t0, t2 - t1);
	return 0;
}
