// A USDT fixture for the latency/top tests and the benchmarks: provider `aggfix` with
//   req__start(id, label:str)  req__done(id)  tick(i, label:str)
// Modes (argv[1]):
//   pairs N SLEEP_US   N requests on one thread, labels cycling /a /b /c; request i sleeps
//                      SLEEP_US * (1 + i % 3) microseconds between start and done
//   orphans N          N starts with distinct ids and no done, then sleeps until killed
//   loop N             N ticks in a tight loop (int + string argument), for cost benchmarks
//   rate R SECS        ticks paced at R per second for SECS seconds (for the drop benchmark)
// Unless --no-wait follows the mode arguments, it first waits (up to 30 s) until a tracer has
// attached, seen through the semaphores the kernel raises for the attached probes, so a test
// knows every event it fires is traced. It prints "fired N", "elapsed_ns T" (wall time spent
// firing) and "cpu_ns C" (CPU time of the firing thread, user + kernel, which includes the
// uprobe and BPF work done on its behalf but not time lost to other processes) when done.
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

unsigned short aggfix_req__start_semaphore __attribute__((section(".probes")));
unsigned short aggfix_req__done_semaphore __attribute__((section(".probes")));
unsigned short aggfix_tick_semaphore __attribute__((section(".probes")));

static long long clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static const char *labels[] = {"/a", "/b", "/c"};

// Keep the label in a register so the note says `8@%reg`: bpftrace 0.17 cannot read the
// indexed form `8@(%r12,%rax,8)` the compiler would otherwise choose.
static inline const char *label(long i)
{
	const char *l = labels[i % 3];
	__asm__ volatile("" : "+r"(l));
	return l;
}

static int traced(const char *mode)
{
	if (!strcmp(mode, "loop") || !strcmp(mode, "rate"))
		return aggfix_tick_semaphore > 0;
	// A tracer attaches the start first; the grace period below covers the done.
	return aggfix_req__start_semaphore > 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s pairs N SLEEP_US | orphans N | loop N [--no-wait]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	long sleep_us = (!strcmp(mode, "pairs") && argc > 3) ? atol(argv[3]) : 0;
	long secs = (!strcmp(mode, "rate") && argc > 3) ? atol(argv[3]) : 1;
	int wait = strcmp(argv[argc - 1], "--no-wait") != 0;

	if (wait) {
		for (int i = 0; i < 30000 && !traced(mode); i++)
			usleep(1000);
		if (!traced(mode)) {
			fprintf(stderr, "fixture: no tracer attached within 30 s\n");
			return 3;
		}
		// Attachments happen site by site; give the tracer a moment to finish.
		usleep(200000);
	}
	printf("ready %d\n", getpid());
	fflush(stdout);

	long long t0 = now_ns();
	long long cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	long fired = n;
	if (!strcmp(mode, "loop")) {
		for (long i = 0; i < n; i++)
			DTRACE_PROBE2(aggfix, tick, i, label(i));
	} else if (!strcmp(mode, "pairs")) {
		for (long i = 0; i < n; i++) {
			DTRACE_PROBE2(aggfix, req__start, i, label(i));
			if (sleep_us)
				usleep(sleep_us * (1 + i % 3));
			DTRACE_PROBE1(aggfix, req__done, i);
		}
	} else if (!strcmp(mode, "rate")) {
		// n per second: catch up to the schedule every 100 us, so bursts stay small.
		long long end = t0 + secs * 1000000000LL;
		long i = 0;
		for (long long t = t0; t < end; t = now_ns()) {
			long due = (long)((double)(t - t0) * n / 1e9);
			for (; i < due; i++)
				DTRACE_PROBE2(aggfix, tick, i, label(i));
			usleep(100);
		}
		fired = i;
	} else if (!strcmp(mode, "orphans")) {
		for (long i = 0; i < n; i++)
			DTRACE_PROBE2(aggfix, req__start, i, label(i));
		printf("fired %ld\n", n);
		fflush(stdout);
		for (;;)
			pause();
	} else {
		fprintf(stderr, "fixture: unknown mode %s\n", mode);
		return 2;
	}
	long long elapsed = now_ns() - t0;
	long long cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	printf("fired %ld\nelapsed_ns %lld\ncpu_ns %lld\n", fired, elapsed, cpu);
	fflush(stdout);
	return 0;
}
