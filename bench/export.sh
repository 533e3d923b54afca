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
#  5. Scrape of 10 pairs x 100 keys: a generated fixture with 10 providers (bench0..bench9), each
#     a start/done pair, fired for 100 keys with latencies spread over 0-0.4 ms; export -c with
#     the 10 pairs; /metrics fetched SCRAPES times as text and as protobuf (what Prometheus asks
#     for with native histograms); min and median time, size and series.
#  6. Memory over a simulated long run (a loop, not a wait): the 10 pairs fired back to back,
#     aggfix:tick counted by a label that never repeats (key churn: the kernel's key map fills
#     and the rest overflow), the kernel read every READ_EVERY s instead of 1 s (HOURS_LONG s
#     hold as many reads as an hour at 1/s when READ_EVERY = HOURS_LONG / 3600), /metrics
#     scraped back to back, and the file reloaded every 10 s, a pair detached and attached in
#     turn. RSS and open fds every 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RATE=${RATE:-100000}
IDLE=${IDLE:-10}
BUSY=${BUSY:-10}
SCRAPES=${SCRAPES:-50}
LONG=${LONG:-60}
HOURS_LONG=${HOURS_LONG:-180}
READ_EVERY=${READ_EVERY:-0.05}

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

# 5. Scrape of 10 pairs x 100 keys.
PAIRS=$WORK/pairs10
{
    echo '#include <sys/sdt.h>'
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo '#include <unistd.h>'
    for k in $(seq 0 9); do
        echo "static void req$k(long i, const char *l, long us) { DTRACE_PROBE2(bench$k, req__start, i, l); if (us) usleep(us); DTRACE_PROBE1(bench$k, req__done, i); }"
    done
    echo 'int main(int argc, char **argv) {'
    echo '    long rounds = argc > 1 ? atol(argv[1]) : 1; /* 0: for ever */'
    echo '    char l[16];'
    echo '    for (long r = 0; rounds == 0 || r < rounds; r++)'
    echo '        for (long j = 0; j < 100; j++) {'
    echo '            snprintf(l, sizeof l, "/key%ld", j);'
    echo '            long us = (j % 20) * 20;'
    for k in $(seq 0 9); do echo "            req$k(r, l, us);"; done
    echo '        }'
    echo '    return 0;'
    echo '}'
} >"$WORK/pairs10.c"
cc -O2 -o "$PAIRS" "$WORK/pairs10.c"
# pairs10.toml: the 10 pairs; pairs9.toml: without bench9 (the reload in 6 swaps them).
for n in 10 9; do
    for k in $(seq 0 $((n - 1))); do
        printf '[[latency]]\nstart = "%s:bench%d:req__start"\ndone = "bench%d:req__done"\nby = "arg1"\n\n' \
            "$PAIRS" "$k" "$k"
    done >"$WORK/pairs$n.toml"
done
t0=$(date +%s.%N)
start_export -c "$WORK/pairs10.toml"
t1=$(date +%s.%N)
echo "| start of export -c with 10 pairs (10 engines loaded, 20 probes attached) to serving | $(echo "$t1 - $t0" | bc | cut -c1-5) s |"
"$PAIRS" 3
sleep 2
PROTO='application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited'
for kind in text protobuf; do
    accept='application/openmetrics-text;version=1.0.0'
    [[ $kind == protobuf ]] && accept=$PROTO
    times=()
    for _ in $(seq "$SCRAPES"); do
        times+=("$(curl -s -H "Accept: $accept" -o "$WORK/m" -w '%{time_total}' "http://$ADDR/metrics")")
    done
    size=$(wc -c <"$WORK/m")
    min=$(printf '%s\n' "${times[@]}" | sort -g | head -1)
    med=$(printf '%s\n' "${times[@]}" | median)
    if [[ $kind == text ]]; then
        series=$(grep -c '^usdt_latency_seconds_count' "$WORK/m")
        lines=$(wc -l <"$WORK/m")
        what="text, $series histograms, $lines lines"
    else
        what="protobuf (classic + native buckets)"
    fi
    echo "| scrape of 10 pairs x 100 keys, $what, $size bytes, $SCRAPES scrapes | min ${min} s, median ${med} s |"
done
echo "| RSS of export serving 10 pairs x 100 keys (10 engines) | $(rss_kb "$EXP") kB |"
idle=$(cpu_percent "$EXP" "$IDLE")
echo "| CPU idle with the 10 pairs attached (no hits, ${IDLE} s) | ${idle} % of a core |"
kill "$EXP"; wait "$EXP" 2>/dev/null || true

# 6. Memory over a simulated long run.
for n in 10 9; do
    printf '[[count]]\nprobe = "%s:aggfix:tick"\nby = "arg1"\n\n' "$FIX" >>"$WORK/pairs$n.toml"
done
cp "$WORK/pairs10.toml" "$WORK/run.toml"
start_export -c "$WORK/run.toml" --read-every "$READ_EVERY"
"$PAIRS" 0 >/dev/null &
PIDS+=($!)
# Every tick a label never seen before: more than the kernel's 16384 keys within a second.
"$FIX" keys 1000000000000 1000000000000 --no-wait >/dev/null &
PIDS+=($!)
t0=$(cpu_ticks "$EXP")
samples=()
fds=()
scrapes=0
reloads=0
end=$((SECONDS + HOURS_LONG))
next=$SECONDS
while ((SECONDS < end)); do
    curl -s -o /dev/null "http://$ADDR/metrics"
    scrapes=$((scrapes + 1))
    if ((SECONDS >= next)); then
        samples+=("$(rss_kb "$EXP")")
        fds+=("$(ls "/proc/$EXP/fd" | wc -l)")
        if ((${#samples[@]} > 1)); then
            # Swap the file: bench9 is detached, then attached again at the next swap.
            if ((reloads % 2 == 0)); then cp "$WORK/pairs9.toml" "$WORK/run.toml"; else cp "$WORK/pairs10.toml" "$WORK/run.toml"; fi
            kill -HUP "$EXP"
            reloads=$((reloads + 1))
        fi
        next=$((next + 10))
    fi
done
cpu=$(echo "scale=1; ($(cpu_ticks "$EXP") - t0) / $(getconf CLK_TCK)" | bc)
curl -s "http://$ADDR/metrics" >"$WORK/m"
hits=$(awk '/^usdt_probe_hits_total/ { s += $2 } END { printf "%d", s }' "$WORK/m")
over=$(awk '/^usdtop_keys_overflow_total/ { s += $2 } END { printf "%d", s }' "$WORK/m")
fails=$(awk '/^usdtop_config_reload_failures_total/ { print $2 }' "$WORK/m")
reads=$(echo "$HOURS_LONG / $READ_EVERY" | bc)
echo "| simulated long run, ${HOURS_LONG} s: kernel read every ${READ_EVERY} s (up to $reads reads, an hour at 1/s is 3600), $scrapes scrapes, $reloads reloads ($fails failed), $hits hits, $over overflowed keys' hits, ${cpu} s CPU | RSS kB every 10 s: ${samples[*]}; open fds: ${fds[*]} |"
