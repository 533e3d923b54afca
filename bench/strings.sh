#!/usr/bin/env bash
# What reading string arguments costs per event, by kind of pointer, and what faulting strings
# in (`usdtop trace --fault-strings always`, the default: a sleepable program that faults a
# string's page in when the non-faulting read fails) adds over `--fault-strings never`.
# tests/fixtures/strloop.c fires strloop:tick(i, ptr) N times in a tight loop, pinned to CPU 1,
# the tracer on CPU 0; cost = CPU time of the firing thread per event minus the untraced one.
# Rows are interleaved in ROUNDS rounds; min and median. Prints a markdown table.
# Needs root, gcc, bpftrace, taskset. Usage: bash bench/strings.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-5}
WORK=$(mktemp -d /tmp/usdtop-strings.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FIX=$WORK/strloop
gcc -O2 -o "$FIX" tests/fixtures/strloop.c
cargo build --release --quiet
U=$PWD/target/release/usdtop

# One run; prints "ns_per_event drops unreadable".
run() {
    local kind=$1 tracer=$2
    if [[ $tracer == none ]]; then
        taskset -c 1 "$FIX" "$N" "$kind" --no-wait >"$WORK/fx.out"
        awk -v n="$N" '/^cpu_ns/ { printf "%.1f 0 -\n", $2 / n }' "$WORK/fx.out"
        return
    fi
    taskset -c 1 "$FIX" "$N" "$kind" >"$WORK/fx.out" &
    local fpid=$!
    case $tracer in
    bpftrace)
        taskset -c 0 bpftrace -q -e "usdt:$FIX:strloop:tick { @[str(arg1)] = count(); }" \
            -p "$fpid" >"$WORK/tr.out" 2>&1 &
        ;;
    always | never)
        taskset -c 0 "$U" trace --str 1 --fault-strings "$tracer" -p "$fpid" \
            "$FIX:strloop:tick" >/dev/null 2>"$WORK/tr.out" &
        ;;
    esac
    local tpid=$!
    wait "$fpid"
    # bpftrace runs until interrupted; usdtop -p ends by itself when the process has exited.
    [[ $tracer == bpftrace ]] && kill -INT "$tpid" 2>/dev/null
    wait "$tpid" || true
    local drops=0 unreadable=-
    if [[ $tracer != bpftrace ]]; then
        read -r drops unreadable < <(sed -n 's/.* \([0-9]*\) dropped (ring buffer full).* \([0-9]*\) strings unreadable$/\1 \2/p' "$WORK/tr.out" | tail -1)
    fi
    awk -v n="$N" -v d="${drops:-0}" -v u="${unreadable:--}" '/^cpu_ns/ { printf "%.1f %s %s\n", $2 / n, d, u }' "$WORK/fx.out"
}

KINDS=(hot bad low)
TRACERS=(none bpftrace never always)
declare -A PER DROPS UNREAD
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for kind in "${KINDS[@]}"; do
        for t in "${TRACERS[@]}"; do
            read -r ns d u < <(run "$kind" "$t")
            PER[$kind/$t]="${PER[$kind/$t]:-}$ns "
            DROPS[$kind/$t]=$((${DROPS[$kind/$t]:-0} + d))
            UNREAD[$kind/$t]=$u
        done
    done
done

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
name() {
    case $1 in
    none) echo "no tracer" ;;
    bpftrace) echo 'bpftrace `@[str(arg1)] = count()`' ;;
    never) echo 'usdtop trace --str 1 --fault-strings never (plain program)' ;;
    always) echo 'usdtop trace --str 1 (sleepable program, faults strings in)' ;;
    esac
}
echo "| pointer | tracer | ns/event (median) | ns/event (min) | ns added (median / min) | unreadable strings (last run) | ring drops (all runs) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for kind in "${KINDS[@]}"; do
    base=$(printf '%s\n' ${PER[$kind/none]} | median)
    bmin=$(printf '%s\n' ${PER[$kind/none]} | sort -g | head -1)
    for t in "${TRACERS[@]}"; do
        m=$(printf '%s\n' ${PER[$kind/$t]} | median)
        lo=$(printf '%s\n' ${PER[$kind/$t]} | sort -g | head -1)
        added=$(awk -v m="$m" -v b="$base" -v l="$lo" -v bl="$bmin" 'BEGIN { printf "%.0f / %.0f", m - b, l - bl }')
        [[ $t == none ]] && added="—"
        echo "| $kind | $(name "$t") | $m | $lo | $added | ${UNREAD[$kind/$t]} | ${DROPS[$kind/$t]} |"
    done
done
echo
echo "Individual runs (ns/event, in round order):"
echo
for kind in "${KINDS[@]}"; do
    for t in "${TRACERS[@]}"; do
        echo "- $kind, $(name "$t"): ${PER[$kind/$t]% }"
    done
done
