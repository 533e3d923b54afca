#!/usr/bin/env bash
# What per-function latency of a call-shaped pair costs per call at a high call rate:
# `usdtop latency --by` paired in the kernel on a stack per thread (bpf/calls.bpf.h), the same
# streamed to user space (--mode stream), and bpftrace doing the equivalent (a depth per thread,
# @start[tid, depth], a hist() per function name read with str()). tests/fixtures/callloop.c
# fires callloop:fn__entry/fn__return(name) as outer -> inner, N times in a tight loop (2 calls,
# 4 probe hits an iteration), pinned to CPU 1, the tracer on CPU 0; cost = CPU time of the
# firing thread per call minus the untraced one. Rows are interleaved in ROUNDS rounds; min and
# median. Prints a markdown table. Needs root, gcc, bpftrace, taskset.
# Usage: bash bench/calls.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500000}
ROUNDS=${2:-5}
WORK=$(mktemp -d /tmp/usdtop-calls.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FIX=$WORK/callloop
gcc -O2 -o "$FIX" tests/fixtures/callloop.c
cargo build --release --quiet
U=$PWD/target/release/usdtop
CALLS=$((2 * N))

BT='usdt:'$FIX':callloop:fn__entry { @depth[tid]++; @start[tid, @depth[tid]] = nsecs; }
usdt:'$FIX':callloop:fn__return /@depth[tid] > 0/ {
    @ns[str(arg0)] = hist(nsecs - @start[tid, @depth[tid]]);
    delete(@start[tid, @depth[tid]]);
    @depth[tid]--;
}'

# CPU time (user + system, in clock ticks of 10 ms) of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One run; prints "ns_per_call paired mismatched drops tracer_cpu_ms" (paired: calls the tracer
# timed; tracer_cpu_ms: the tracer's own CPU time while the fixture fired, user space and the
# kernel work it did itself, not the probes' BPF work, which runs on the firing thread).
run() {
    local tracer=$1
    if [[ $tracer == none ]]; then
        taskset -c 1 "$FIX" "$N" --no-wait >"$WORK/fx.out"
        awk -v n="$CALLS" '/^cpu_ns/ { printf "%.1f - - - -\n", $2 / n }' "$WORK/fx.out"
        return
    fi
    taskset -c 1 "$FIX" "$N" >"$WORK/fx.out" &
    local fpid=$!
    case $tracer in
    bpftrace)
        taskset -c 0 bpftrace -q -e "$BT" -p "$fpid" >"$WORK/tr.out" 2>&1 &
        ;;
    kernel | stream)
        taskset -c 0 "$U" latency -p "$fpid" "$FIX:callloop:fn__entry" --by arg0 --json \
            --mode "$tracer" >"$WORK/tr.out" 2>"$WORK/tr.err" &
        ;;
    esac
    local tpid=$!
    for _ in $(seq 600); do
        grep -q '^ready' "$WORK/fx.out" 2>/dev/null && break
        sleep 0.1
    done
    local c0
    c0=$(cpu_ticks "$tpid")
    while kill -0 "$fpid" 2>/dev/null && ! grep -q '^cpu_ns' "$WORK/fx.out"; do
        sleep 0.02
    done
    local cpu_ms=$((($(cpu_ticks "$tpid") - c0) * 10))
    wait "$fpid"
    # bpftrace runs until interrupted; usdtop -p ends by itself when the process has exited.
    [[ $tracer == bpftrace ]] && kill -INT "$tpid" 2>/dev/null
    wait "$tpid" || true
    local paired=- mismatched=- drops=-
    if [[ $tracer == bpftrace ]]; then
        # Every bucket count of both histograms.
        paired=$(awk '/^\[/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) { s += $i; break } }
            END { print s + 0 }' "$WORK/tr.out")
    else
        read -r paired mismatched drops < <(tail -1 "$WORK/tr.out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
m = r.get("calls", {}).get("mismatches", r["pairing"]["unmatched_done"])
print(r["count"], m, r["drops"])')
    fi
    awk -v n="$CALLS" -v p="$paired" -v m="$mismatched" -v d="$drops" -v c="$cpu_ms" \
        '/^cpu_ns/ { printf "%.1f %s %s %s %s\n", $2 / n, p, m, d, c }' "$WORK/fx.out"
}

TRACERS=(none kernel bpftrace stream)
declare -A PER LAST CPU
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for t in "${TRACERS[@]}"; do
        read -r ns paired mismatched drops cpu < <(run "$t")
        PER[$t]="${PER[$t]:-}$ns "
        CPU[$t]="${CPU[$t]:-}$cpu "
        LAST[$t]="$paired | $mismatched | $drops"
    done
done

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
name() {
    case $1 in
    none) echo "no tracer" ;;
    kernel) echo 'usdtop latency --by arg0 (kernel call stacks)' ;;
    stream) echo 'usdtop latency --by arg0 --mode stream (every event to user space)' ;;
    bpftrace) echo 'bpftrace @start[tid, depth], hist() by str(arg0)' ;;
    esac
}
echo "| tracer | ns/call (median) | ns/call (min) | ns added per call (median / min) | tracer's own CPU, ms (median) | calls timed (last run, of $CALLS) | mismatched (last run) | ring drops (last run) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
base=$(printf '%s\n' ${PER[none]} | median)
bmin=$(printf '%s\n' ${PER[none]} | sort -g | head -1)
for t in "${TRACERS[@]}"; do
    m=$(printf '%s\n' ${PER[$t]} | median)
    lo=$(printf '%s\n' ${PER[$t]} | sort -g | head -1)
    added=$(awk -v m="$m" -v b="$base" -v l="$lo" -v bl="$bmin" 'BEGIN { printf "%.0f / %.0f", m - b, l - bl }')
    [[ $t == none ]] && added="—"
    cpu=$(printf '%s\n' ${CPU[$t]} | median)
    echo "| $(name "$t") | $m | $lo | $added | $cpu | ${LAST[$t]} |"
done
echo
echo "Individual runs (ns/call, in round order; the tracer's CPU in ms):"
echo
for t in "${TRACERS[@]}"; do
    echo "- $(name "$t"): ${PER[$t]% } (CPU ${CPU[$t]% })"
done
