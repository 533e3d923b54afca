#!/usr/bin/env bash
# usdtop export: its own CPU idle and at a steady hit rate, the time of a scrape, and its memory
# over a long run. Run as root: bash bench/export.sh   (prints a markdown section)
#
#  1. Idle: export attached to aggfix:tick of a fixture that fires nothing, IDLE s; CPU of the
#     usdtop process (utime+stime from /proc) per second of wall time.
#  2. Busy: the fixture fires aggfix:tick (int + string key, 3 keys) at RATE per second; export
#     counts them by the string in the kernel (--count ... --by arg1); the same CPU figure. The
#     probes' own cost is charged to the firing process (see "Cost per event"), not to usdtop.
#  3. Scrape: /metrics of a latency export (aggfix start/done pairs, 3 keys, every kernel bucket
#     served) fetched SCRAPES times with curl; min and median of the total time, and its size.
#  4. Memory: a latency export of start/done pairs fired back to back (a loop, not a wait),
#     scraped every 0.2 s for LONG s; its RSS every 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=${RATE:-100000}
IDLE=${IDLE:-10}
BUSY=${BUSY:-10}
SCRAPES=${SCRAPES:-50}
LONG=${LONG:-60}

cargo build --release --quiet
U=$ROOT/target/release/usdtop
WORK=$(mktemp -d /tmp/usdtop-bench-export.XXXXXX)
FIX=$WORK/aggfix
cc -O2 -o "$FIX" tests/fixtures/aggfix.c
command -v curl >/dev/null || { echo "curl is missing: bash .ci/install-deps" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# Starts `usdtop export ARGS` on a free port; sets EXP (pid) and ADDR.
start_export() {
    "$U" export --listen 127.0.0.1:0 "$@" 2>"$WORK/err" &
    EXP=$!
    PIDS+=("$EXP")
    for _ in $(seq 600); do
        ADDR=$(grep -o 'http://[0-9.:]*' "$WORK/err" | head -1 | sed 's|http://||') || true
        [[ -n $ADDR ]] && return
        sleep 0.1
    done
    echo "export did not start: $(cat "$WORK/err")" >&2
    exit 1
}

# CPU per wall second of process $1 over $2 seconds, in percent of one core.
cpu_percent() {
    local hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$1")
    sleep "$2"
    t1=$(cpu_ticks "$1")
    echo "scale=2; 100 * ($t1 - $t0) / $hz / $2" | bc
}

echo "### usdtop export (bench/export.sh)"
echo
echo "| what | figure |"
echo "|---|---|"

# 1. Idle.
start_export --count "$FIX:aggfix:tick" --by arg1
idle=$(cpu_percent "$EXP" "$IDLE")
echo "| CPU idle (attached, no hits, ${IDLE} s) | ${idle} % of a core |"
kill "$EXP"; wait "$EXP" 2>/dev/null || true

# 2. Busy.
start_export --count "$FIX:aggfix:tick" --by arg1
"$FIX" rate "$RATE" $((BUSY + 5)) --no-wait >/dev/null &
PIDS+=($!)
sleep 2
busy=$(cpu_percent "$EXP" "$BUSY")
hits=$(curl -s "http://$ADDR/metrics" | awk '/^usdt_probe_hits_total/ { print $2 }')
echo "| CPU at ${RATE} hits/s (${BUSY} s; ${hits} hits counted by then) | ${busy} % of a core |"
kill "$EXP"; wait "$EXP" 2>/dev/null || true

# 3. Scrape time.
start_export --latency "$FIX:aggfix:req__start" --done aggfix:req__done --by arg1
"$FIX" pairs 1000 100 --no-wait >/dev/null
sleep 2 # the figures served are read from the kernel every second
times=()
for _ in $(seq "$SCRAPES"); do
    times+=("$(curl -s -o "$WORK/m" -w '%{time_total}' "http://$ADDR/metrics")")
done
size=$(wc -c <"$WORK/m")
lines=$(wc -l <"$WORK/m")
min=$(printf '%s\n' "${times[@]}" | sort -g | head -1)
med=$(printf '%s\n' "${times[@]}" | median)
echo "| scrape of 1 pair x 3 keys ($lines lines, $size bytes), $SCRAPES scrapes | min ${min} s, median ${med} s |"
kill "$EXP"; wait "$EXP" 2>/dev/null || true

# 4. Memory over a long run.
start_export --latency "$FIX:aggfix:req__start" --done aggfix:req__done --by arg1 --max-keys 100
"$FIX" pairs 1000000000000 0 --no-wait >/dev/null &
PIDS+=($!)
samples=()
end=$((SECONDS + LONG))
i=0
while ((SECONDS < end)); do
    curl -s -o /dev/null "http://$ADDR/metrics"
    if ((i % 50 == 0)); then samples+=("$(rss_kb "$EXP")"); fi
    i=$((i + 1))
    sleep 0.2
done
echo "| RSS over ${LONG} s of back-to-back pairs, scraped every 0.2 s (kB, every 10 s) | ${samples[*]} |"
