#!/usr/bin/env bash
# Cost per event of tracing one USDT probe (an int and a string) fired in a tight loop:
# no tracer, bpftrace count(), bpftrace printf, and `usdtop trace` streaming every event with
# its string to /dev/null. The loop is pinned to one CPU, tracers to another; each case is the
# median of RUNS runs. Needs root, gcc, bpftrace, taskset. Usage: bench/trace.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-3}
LOOP_CPU=1
TRACER_CPU=0
work=$(mktemp -d /tmp/usdtop-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

gcc -O2 -o "$work/fixture" tests/fixtures/usdt_fixture.c
cargo build --release --quiet
USDTOP=$PWD/target/release/usdtop
BIN=$work/fixture

now_ns() { date +%s%N; }
# Runs the loop once; prints elapsed ns.
run_loop() {
  local t0 t1
  t0=$(now_ns)
  taskset -c $LOOP_CPU "$BIN" loop "$N" >/dev/null
  t1=$(now_ns)
  echo $((t1 - t0))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Starts a tracer in the background (command in "$@"), waits until the line matching
# $READY appears in $work/tracer.log, runs the loop, stops the tracer; prints elapsed ns.
with_tracer() {
  local ready=$1; shift
  : >"$work/tracer.log"
  taskset -c $TRACER_CPU "$@" >"$work/tracer.out" 2>"$work/tracer.log" &
  local pid=$!
  for _ in $(seq 200); do
    grep -q "$ready" "$work/tracer.log" "$work/tracer.out" 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.5
  local ns
  ns=$(run_loop)
  sleep 0.3
  kill -INT $pid
  wait $pid 2>/dev/null || true
  echo "$ns"
}

measure() { # name, then a command that prints ns
  local name=$1; shift
  local all=()
  for _ in $(seq "$RUNS"); do all+=("$("$@")"); done
  printf '%s\n' "${all[@]}" | median
}

base=$(measure base run_loop)
count=$(measure count with_tracer Attaching bpftrace -e "usdt:$BIN:fixture:tick { @c = count(); }")
printf_=$(measure printf with_tracer Attaching bpftrace -e "usdt:$BIN:fixture:tick { printf(\"%d %s\\n\", arg0, str(arg1)); }")
usdtop_runs=()
drops=()
for _ in $(seq "$RUNS"); do
  usdtop_runs+=("$(with_tracer tracing "$USDTOP" trace --str 1 "$BIN:fixture:tick")")
  drops+=("$(grep -o '[0-9]* dropped' "$work/tracer.log" | cut -d' ' -f1)")
  grep 'events printed' "$work/tracer.log" >&2 || true
done
usdtop=$(printf '%s\n' "${usdtop_runs[@]}" | median)

per() { echo "scale=1; ($1 - $base) / $N" | bc; }
c=$(per "$count"); p=$(per "$printf_"); u=$(per "$usdtop")
echo
echo "events per run: $N, median of $RUNS runs, loop pinned to CPU $LOOP_CPU"
printf '%-36s %10s ns/event\n' "no tracer (loop cost)" "$(echo "scale=1; $base / $N" | bc)"
printf '%-36s %10s ns/event added\n' "bpftrace count()" "$c"
printf '%-36s %10s ns/event added\n' "bpftrace printf" "$p"
printf '%-36s %10s ns/event added\n' "usdtop trace (every event + string)" "$u"
echo "usdtop drops per run: ${drops[*]}"
echo "usdtop / bpftrace count():  $(echo "scale=2; $u / $c" | bc)x   (target <= 1.5x)"
echo "bpftrace printf / usdtop:   $(echo "scale=2; $p / $u" | bc)x   (target >= 8x)"
