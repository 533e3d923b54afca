#!/usr/bin/env bash
# Stopping under load and memory with a stalled reader, usdtop next to bpftrace in one run.
# Run as root: bash bench/stop.sh   (prints a markdown section; ROUNDS=5 by default)
#
#  1. Time to stop: a fixture fires aggfix:tick (int + string) at a steady RATE per second (and
#     start/done pairs back to back); each tracer runs 2 s, then gets SIGINT; the time from the
#     signal to its exit is measured. Rounds interleave the tracers; min and median are shown.
#  2. A stalled reader: each tracer prints every event into a pipe nobody reads for STALL s;
#     its peak RSS (VmHWM) just before the reader starts, and the time to stop after SIGINT
#     while the pipe is still full.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
RATE=${RATE:-200000}
STALL=${STALL:-5}

cargo build --release --quiet
U=$ROOT/target/release/usdtop
WORK=$(mktemp -d /tmp/usdtop-bench-stop.XXXXXX)
FIX=$WORK/aggfix
cc -O2 -o "$FIX" tests/fixtures/aggfix.c
command -v bpftrace >/dev/null || { echo "bpftrace is missing: bash .ci/install-deps" >&2; exit 1; }

TICKS_PID=
PAIRS_PID=
cleanup() {
    kill "$TICKS_PID" "$PAIRS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$FIX" rate "$RATE" 3600 --no-wait >/dev/null &
TICKS_PID=$!
"$FIX" pairs 1000000000000 0 --no-wait >/dev/null &
PAIRS_PID=$!
sleep 0.5

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
minimum() { sort -g | head -1; }
peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# name|command (@T@ = ticks pid, @P@ = pairs pid)
TRACERS=(
    "usdtop trace|$U trace -p @T@ aggfix:tick"
    "usdtop latency (stream)|$U latency -p @P@ aggfix:req__start aggfix:req__done --by arg1 --mode stream"
    "usdtop top (stream)|$U top -p @T@ aggfix:tick --by arg1 --mode stream"
    "usdtop top (kernel)|$U top -p @T@ aggfix:tick --by arg1 --mode kernel"
    "bpftrace printf|bpftrace -p @T@ -e 'usdt:$FIX:aggfix:tick { printf(\"%d %s\\n\", arg0, str(arg1)); }'"
    "bpftrace hist (pairs)|bpftrace -p @P@ -e 'usdt:$FIX:aggfix:req__start { @s[tid] = nsecs; } usdt:$FIX:aggfix:req__done /@s[tid]/ { @h = hist(nsecs - @s[tid]); delete(@s[tid]); }'"
)

declare -A STOPS
for round in $(seq "$ROUNDS"); do
    for entry in "${TRACERS[@]}"; do
        name=${entry%%|*}
        cmd=${entry#*|}
        cmd=${cmd//@T@/$TICKS_PID}
        cmd=${cmd//@P@/$PAIRS_PID}
        bash -c "exec $cmd" >/dev/null 2>"$WORK/err" &
        pid=$!
        sleep 2
        t0=$(date +%s%N)
        kill -INT "$pid"
        wait "$pid" || true
        STOPS[$name]+="$(ms_since "$t0") "
    done
done

echo "## Stopping under load (bench/stop.sh)"
echo
echo "aggfix:tick at $RATE events/s (and start/done pairs back to back); SIGINT after 2 s of"
echo "tracing; time from the signal to the exit, $ROUNDS interleaved rounds."
echo
echo "| tracer | min ms | median ms |"
echo "|---|---|---|"
for entry in "${TRACERS[@]}"; do
    name=${entry%%|*}
    v=${STOPS[$name]}
    echo "| $name | $(tr ' ' '\n' <<<"$v" | grep . | minimum) | $(tr ' ' '\n' <<<"$v" | grep . | median) |"
done

# 2. Stalled reader.
STALLED=(
    "usdtop trace|$U trace -p $TICKS_PID aggfix:tick --str 1"
    "bpftrace printf|bpftrace -p $TICKS_PID -e 'usdt:$FIX:aggfix:tick { printf(\"%d %s\\n\", arg0, str(arg1)); }'"
)
echo
echo "## A stalled reader of stdout"
echo
echo "Every event of aggfix:tick at $RATE/s printed into a pipe that nobody reads for $STALL s."
echo
echo "| tracer | peak RSS MiB | stop after SIGINT, pipe still full (ms) | summary |"
echo "|---|---|---|---|"
for entry in "${STALLED[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    mkfifo "$WORK/pipe"
    bash -c "exec $cmd" >"$WORK/pipe" 2>"$WORK/err" &
    pid=$!
    exec 3<"$WORK/pipe"   # opened, never read: the pipe fills and stays full
    sleep "$STALL"
    peak=$(( $(peak_kb "$pid") / 1024 ))
    t0=$(date +%s%N)
    kill -INT "$pid"
    # The tracer must stop without anyone reading; give it 30 s, then read to let it go.
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    stopped=$(ms_since "$t0")
    if kill -0 "$pid" 2>/dev/null; then
        stopped=">30000 (only after the pipe was read)"
        cat <&3 >/dev/null &
    fi
    wait "$pid" || true
    exec 3<&-
    rm -f "$WORK/pipe"
    summary=$(grep -E "events printed|Lost|lost" "$WORK/err" | head -1 | tr '|' '/' || true)
    echo "| $name | $peak | $stopped | ${summary:-—} |"
done
