#!/usr/bin/env bash
# Attaching and detaching at scale (issue 11), usdtop's two attach paths next to bpftrace 0.17 in
# one run. Run as root: bash bench/attach.sh   (prints a markdown section; ROUNDS=5 by default)
#
#  1. Attach + 1 s + detach: the wall time of `usdtop trace -v -p PID PROBES --duration 1` for
#     1 site (aggfix:req__done of a fixture), 71 sites (postgresql:* of a throwaway PostgreSQL 15
#     postmaster) and ~480 sites (hotspot_jni:* of OpenJDK 17's libjvm.so in a sleeping java),
#     on the uprobe-multi path, on the per-site path (USDTOP_ATTACH_PATH=per-site), and bpftrace
#     -p PID with `@ = count()` and `interval:s:1 { exit(); }`. usdtop's -v attach and detach
#     times and its time to "tracing" are shown too. The per-site path and bpftrace take about a
#     minute for hotspot_jni:* (kernel: one RCU wait per site), so they run BIG_ROUNDS (1) times.
#  2. A one-site attach while another tracer detaches 71 sites: tracer X traces postgresql:*
#     for 1 s; the moment X ends its trace (its summary line, or bpftrace's printf from the
#     interval probe), `usdtop trace -v` of one fixture site starts; its time from launch to
#     "tracing", against the same with nothing else running.
#  3. Isolation: process A and an unrelated copy of the same fixture binary; a tracer traces
#     aggfix:tick with -p A; the copy runs aggfix:tick in a tight loop (started after the attach)
#     and its iterations per second are measured; the tick semaphore is read from /proc/PID/mem
#     in that copy and in an idle copy started before the attach (both must stay 0).
# Rounds interleave the tracers. PARTS="1 2 3" selects parts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
BIG_ROUNDS=${BIG_ROUNDS:-1}
PARTS=${PARTS:-1 2 3}

PG=/usr/lib/postgresql/15/bin
JDK=/usr/lib/jvm/java-17-openjdk-amd64
need() { [[ -e $1 ]] || command -v "$1" >/dev/null || {
    echo "$1 is missing (package $2): bash .ci/install-deps" >&2
    exit 1
}; }
need bpftrace bpftrace
need cc build-essential
need readelf binutils
need runuser util-linux
need "$PG/postgres" postgresql-15
need "$PG/initdb" postgresql-15
need "$PG/pg_ctl" postgresql-15
need "$JDK/bin/java" openjdk-17-jdk-headless
need "$JDK/bin/javac" openjdk-17-jdk-headless
LIBJVM=$JDK/lib/server/libjvm.so
need "$LIBJVM" openjdk-17-jdk-headless

cargo build --release --quiet
U=$ROOT/target/release/usdtop
WORK=$(mktemp -d /tmp/usdtop-bench-attach.XXXXXX)
FIX=$WORK/aggfix
cc -O2 -o "$FIX" tests/fixtures/aggfix.c
PGDIR=$(mktemp -d /tmp/usdtop-bench-attach-pg.XXXXXX)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    runuser -u postgres -- "$PG/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK" "$PGDIR"
}
trap cleanup EXIT

# Process A: the fixture, ticking 1000 times a second for an hour.
"$FIX" rate 1000 3600 --no-wait >/dev/null &
A=$!
PIDS+=("$A")

# A throwaway PostgreSQL 15 cluster on a unix socket in its own dir (as tests/common/postgres.rs).
chown postgres:postgres "$PGDIR"
runuser -u postgres -- "$PG/initdb" -D "$PGDIR/data" --auth=trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$PG/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-k $PGDIR -p 5432 -c listen_addresses='' -c fsync=off" start >/dev/null
PGPID=$(head -1 "$PGDIR/data/postmaster.pid")

# A java that sleeps (OpenJDK 17).
source bench/sleeping_java.sh
start_sleeping_java "$WORK"
PIDS+=("$JPID")

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
minimum() { sort -g | head -1; }
maximum() { sort -g | tail -1; }
# Every line of stdin prefixed with the ms since $1 (no fork per line: EPOCHREALTIME).
stamp() { while IFS= read -r line; do echo "$(($(now_ms) - $1)) $line"; done; }
# The number in front of the first stamped line matching $2 in file $1 ("-" if none).
when() { awk -v re="$2" '$0 ~ re { print $1; found = 1; exit } END { if (!found) print "-" }' "$1"; }
# The number after $2 in the first line of file $1 that has it ("-" if none).
after() { grep -o "$2 [0-9.]*" "$1" | head -1 | awk '{ print $NF } END { if (!NR) print "-" }'; }

# usdtop trace -v with attach path $1 (multi|per-site), the rest its arguments, for 1 s.
# Prints: wall_ms ms_to_tracing attach_ms detach_ms sites probes.
usdtop_once() {
    local path=$1 t0
    shift
    t0=$(now_ms)
    { USDTOP_ATTACH_PATH=$path "$U" trace -v "$@" --duration 1 2>&1 >/dev/null || echo "FAILED"; } |
        stamp "$t0" >"$WORK/out"
    local wall=$(($(now_ms) - t0))
    if grep -q FAILED "$WORK/out"; then
        sed 's/^/    /' "$WORK/out" | tail -5 >&2
        echo "failed - - - - -"
        return
    fi
    echo "$wall $(when "$WORK/out" 'usdtop: tracing') $(after "$WORK/out" 'site.s. in') \
$(after "$WORK/out" 'detached in') $(after "$WORK/out" 'attached') \
$(after "$WORK/out" 'tracing')"
}

# The file descriptors a tracing usdtop (attach path $1, the rest its arguments) holds, once it
# says "tracing": "total/bpf_links/perf_events".
usdtop_fds() {
    local path=$1 pid fds
    shift
    USDTOP_ATTACH_PATH=$path "$U" trace -v "$@" --duration 2 >/dev/null 2>"$WORK/fds.err" &
    pid=$!
    for _ in $(seq 600); do grep -q 'usdtop: tracing' "$WORK/fds.err" && break; sleep 0.05; done
    fds=$(ls -l "/proc/$pid/fd" 2>/dev/null | awk '/->/ { n++ } /bpf_link/ { l++ } /perf_event/ { p++ }
        END { printf "%d/%d/%d", n, l, p }')
    wait "$pid" || true
    echo "$fds"
}

# bpftrace -p $1 on every probe of provider $3 in object $2, for 1 s. Prints: wall_ms.
bpftrace_once() {
    local t0
    t0=$(now_ms)
    if ! bpftrace -p "$1" -e "usdt:$2:$3:* { @ = count(); } interval:s:1 { exit(); }" \
        >/dev/null 2>"$WORK/err"; then
        tail -3 "$WORK/err" | sed 's/^/    /' >&2
        echo failed
        return
    fi
    echo $(($(now_ms) - t0))
}

stats() { # "min / median" of the numbers in $1 (a space-separated list), "-" if none
    local v
    v=$(tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' || true)
    if [[ -z $v ]]; then echo "-"; else echo "$(minimum <<<"$v") / $(median <<<"$v")"; fi
}

echo "## Attach and detach at scale (bench/attach.sh)"
echo
echo "$(uname -r), $(nproc) cores, bpftrace $(bpftrace --version | awk '{ print $2 }'), $ROUNDS rounds"
echo "(BIG_ROUNDS=$BIG_ROUNDS for hotspot_jni:* on the per-site path and bpftrace), load average at"
echo "start: $(cut -d' ' -f1-3 /proc/loadavg); the postmaster has $(pgrep -c -P "$PGPID") children. Times in ms,"
echo "\"min / median\"."

# ---- 1. attach + 1 s + detach ------------------------------------------------------------------
if [[ $PARTS == *1* ]]; then
    # name|pid|usdtop probe|object for bpftrace|provider|big
    TARGETS=(
        "aggfix:req__done (fixture)|$A|aggfix:req__done|$FIX|aggfix|"
        "postgresql:* (postmaster)|$PGPID|postgresql:*|$PG/postgres|postgresql|"
        "hotspot_jni:* (OpenJDK 17 libjvm)|$JPID|hotspot_jni:*|$LIBJVM|hotspot_jni|big"
    )
    declare -A WALL TOTR ATT DET SITES
    declare -A FDS
    for entry in "${TARGETS[@]}"; do
        IFS='|' read -r name pid probe obj prov big <<<"$entry"
        FDS[$name|usdtop multi]=$(usdtop_fds multi -p "$pid" "$probe")
        [[ -n $big ]] || FDS[$name|usdtop per-site]=$(usdtop_fds per-site -p "$pid" "$probe")
    done
    for round in $(seq "$ROUNDS"); do
        for entry in "${TARGETS[@]}"; do
            IFS='|' read -r name pid probe obj prov big <<<"$entry"
            for path in multi per-site; do
                [[ -n $big && $path == per-site && $round -gt $BIG_ROUNDS ]] && continue
                read -r w t a d s p <<<"$(usdtop_once "$path" -p "$pid" "$probe")"
                k="$name|usdtop $path"
                WALL[$k]+="$w "
                TOTR[$k]+="$t "
                ATT[$k]+="$a "
                DET[$k]+="$d "
                SITES[$name]="$s sites, $p probes"
            done
            [[ -n $big && $round -gt $BIG_ROUNDS ]] && continue
            WALL[$name|bpftrace]+="$(bpftrace_once "$pid" "$obj" "$prov") "
        done
    done
    echo
    echo "### Attach + 1 s + detach: \`trace -p PID PROBES --duration 1\`"
    echo
    echo "Wall time from launch to exit (bpftrace: \`-p PID -e 'usdt:OBJ:PROVIDER:* { @ = count(); }"
    echo "interval:s:1 { exit(); }'\`), usdtop's time to its \"tracing\" line and its own -v attach and"
    echo "detach times; the file descriptors usdtop holds while tracing (all / BPF links / perf events,"
    echo "one extra run; not measured for the per-site path on hotspot_jni:*)."
    echo
    echo "| sites | tracer | rounds | wall | to \"tracing\" | attach (-v) | detach (-v) | fds: all/links/perf |"
    echo "|---|---|---|---|---|---|---|---|"
    for entry in "${TARGETS[@]}"; do
        IFS='|' read -r name _ <<<"$entry"
        label="${SITES[$name]:-?}: $name"
        for tracer in "usdtop multi" "usdtop per-site" bpftrace; do
            k="$name|$tracer"
            v=${WALL[$k]:-}
            n=$(wc -w <<<"$v")
            if [[ $tracer == bpftrace ]]; then
                echo "| $label | bpftrace 0.17 | $n | $(stats "$v") | | | | |"
            else
                echo "| $label | $tracer | $n | $(stats "$v") | $(stats "${TOTR[$k]:-}") |" \
                    "$(stats "${ATT[$k]:-}") | $(stats "${DET[$k]:-}") | ${FDS[$k]:-} |"
            fi
        done
    done
fi

# ---- 2. a one-site attach while another tracer detaches 71 sites ---------------------------------
# Launches the one-site tracer Y (attach path $1) and prints its ms to "tracing" and -v attach ms
# into file $2.
y_once() {
    local t0
    t0=$(now_ms)
    { USDTOP_ATTACH_PATH=$1 "$U" trace -v -p "$A" aggfix:req__done --duration 1 2>&1 >/dev/null ||
        true; } | stamp "$t0" >"$2.log"
    echo "$(when "$2.log" 'usdtop: tracing') $(after "$2.log" 'site.s. in')" >"$2.tmp"
    mv "$2.tmp" "$2"
}
# Tracer X (usdtop multi|usdtop per-site|bpftrace) on postgresql:* for 1 s; Y (path $2) starts
# when X ends its trace. Prints Y's "ms_to_tracing attach_ms".
contended_once() {
    local x=$1 y=$2 res=$WORK/y.$RANDOM
    local xcmd trigger
    case $x in
    "usdtop multi") xcmd=(env USDTOP_ATTACH_PATH=multi "$U" trace -v -p "$PGPID" 'postgresql:*' --duration 1)
        trigger='events printed' ;;
    "usdtop per-site") xcmd=(env USDTOP_ATTACH_PATH=per-site "$U" trace -v -p "$PGPID" 'postgresql:*' --duration 1)
        trigger='events printed' ;;
    bpftrace) xcmd=(bpftrace -p "$PGPID" -e "usdt:$PG/postgres:postgresql:* { @ = count(); } interval:s:1 { printf(\"ending\\n\"); exit(); }")
        trigger='^ending' ;;
    none) y_once "$y" "$res"
        cat "$res"
        return ;;
    esac
    { "${xcmd[@]}" 2>&1 || true; } | {
        started=
        while IFS= read -r line; do
            if [[ -z $started && $line =~ $trigger ]]; then
                started=1
                y_once "$y" "$res" &
            fi
        done
        wait
    }
    [[ -f $res ]] && cat "$res" || echo "- -"
}
if [[ $PARTS == *2* ]]; then
    XS=("none" "usdtop multi" "usdtop per-site" "bpftrace")
    declare -A YT YA
    for round in $(seq "$ROUNDS"); do
        for x in "${XS[@]}"; do
            for y in multi per-site; do
                read -r t a <<<"$(contended_once "$x" "$y")"
                YT[$x|$y]+="$t "
                YA[$x|$y]+="$a "
            done
        done
    done
    echo
    echo "### A one-site attach while another tracer detaches 71 sites"
    echo
    echo "Tracer X traces \`postgresql:*\` (71 sites) of the postmaster for 1 s; the moment it ends its"
    echo "trace, \`usdtop trace -v -p A aggfix:req__done\` (1 site) starts: its time from launch to"
    echo "\"tracing\" and its -v attach time."
    echo
    echo "| X (detaching 71 sites) | one-site usdtop path | to \"tracing\" | attach (-v) |"
    echo "|---|---|---|---|"
    for x in "${XS[@]}"; do
        for y in multi per-site; do
            echo "| ${x/none/nothing else} | $y | $(stats "${YT[$x|$y]}") | $(stats "${YA[$x|$y]}") |"
        done
    done
fi

# ---- 3. isolation ------------------------------------------------------------------------------
SEM=$(readelf -n "$FIX" | awk '/Name: tick/ { getline; print $NF; exit }')
# The u16 tick semaphore in process $1 (the fixture is PIE: load base + link-time address).
sem_of() {
    local base
    base=$(awk -v f="$FIX" '$6 == f && $3 == "00000000" { split($1, a, "-"); print a[1]; exit }' \
        "/proc/$1/maps" 2>/dev/null) || true
    [[ -n $base ]] || { echo "?"; return; }
    dd if="/proc/$1/mem" bs=2 count=1 iflag=skip_bytes skip=$((0x$base + SEM)) 2>/dev/null |
        od -An -tu2 | tr -d ' '
}
# Loop speed (iterations/s) of a fresh copy of the fixture ticking N times; also its semaphore
# as the loop starts. Prints "iterations_per_s semaphore".
loop_speed() {
    local n=$1 pid sem
    rm -f "$WORK/loop" # not the last run's "ready"
    "$FIX" loop "$n" --no-wait >"$WORK/loop" &
    pid=$!
    # Its semaphore once it runs the loop (it prints "ready" first).
    for _ in $(seq 500); do grep -qs ready "$WORK/loop" && break; sleep 0.01; done
    sem=$(sem_of "$pid")
    wait "$pid"
    awk -v n="$n" -v s="${sem:-?}" '/^elapsed_ns/ { printf "%.3g %s\n", n / $2 * 1e9, s }' "$WORK/loop"
}
# SIGINT to tracer $1, again if it is still there after 10 s (a background job starts with SIGINT
# ignored: one that comes before the tracer's own handler is lost), SIGTERM after 40 s.
stop_tracer() {
    kill -INT "$1" 2>/dev/null || true
    for i in $(seq 400); do
        kill -0 "$1" 2>/dev/null || break
        ((i % 100)) || kill -INT "$1" 2>/dev/null || true
        sleep 0.1
    done
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" || true
}
if [[ $PARTS == *3* ]]; then
    "$FIX" orphans 0 --no-wait >/dev/null &
    IDLE=$!
    PIDS+=("$IDLE")
    # name|command (@A@ = process A)
    ISO=(
        "no tracer|"
        "usdtop trace -p A (uprobe-multi, per process)|$U trace -p @A@ aggfix:tick"
        "usdtop trace -p A --exact-forks|$U trace -p @A@ aggfix:tick --exact-forks"
        "usdtop trace -p A (per-site)|env USDTOP_ATTACH_PATH=per-site $U trace -p @A@ aggfix:tick"
        "bpftrace -p A|bpftrace -p @A@ -e 'usdt:$FIX:aggfix:tick { @ = count(); }'"
    )
    declare -A SPEED SEMB SEMI
    for round in $(seq "$ROUNDS"); do
        for entry in "${ISO[@]}"; do
            name=${entry%%|*}
            cmd=${entry#*|}
            tpid=
            if [[ -n $cmd ]]; then
                bash -c "exec ${cmd//@A@/$A}" >/dev/null 2>"$WORK/err" &
                tpid=$!
                # Attached when A's semaphore is up.
                for _ in $(seq 600); do [[ $(sem_of "$A") -gt 0 ]] && break; sleep 0.1; done
                if [[ $(sem_of "$A") -eq 0 ]]; then
                    echo "$name: not attached within 60 s; round $round skipped" >&2
                    stop_tracer "$tpid"
                    continue
                fi
                sleep 0.2
            fi
            # Calibrate the loop length to about a second.
            read -r rate _ <<<"$(loop_speed 1000000)"
            # A fast loop of 1e6 takes about 1 ms: once more with 1e8, less swayed by preemption.
            if awk -v r="$rate" 'BEGIN { exit !(r > 1e8) }'; then
                read -r rate _ <<<"$(loop_speed 100000000)"
            fi
            n=$(awk -v r="$rate" 'BEGIN { n = r; if (n < 1e6) n = 1e6; if (n > 2e9) n = 2e9; printf "%d", n }')
            read -r speed semb <<<"$(loop_speed "$n")"
            SPEED[$name]+="$speed "
            SEMB[$name]+="$semb "
            SEMI[$name]+="$(sem_of "$IDLE") "
            [[ -z $tpid ]] || stop_tracer "$tpid"
        done
    done
    echo
    echo "### Isolation: an unrelated copy of the traced binary"
    echo
    echo "A tracer traces aggfix:tick (3 sites) with -p A while another process of the same binary"
    echo "runs aggfix:tick in a tight loop (started after the attach; about 1 s): its iterations"
    echo "per second (best and median of the rounds), and the tick semaphore of that copy and of an"
    echo "idle copy started before the attach (values seen over the rounds)."
    echo
    echo "| tracer | loop iterations/s (best / median) | semaphore of the looping copy | of the idle copy |"
    echo "|---|---|---|---|"
    for entry in "${ISO[@]}"; do
        name=${entry%%|*}
        v=$(tr ' ' '\n' <<<"${SPEED[$name]}" | grep -E '^[0-9.e+]+$' || true)
        echo "| $name | $(maximum <<<"$v") / $(median <<<"$v") |" \
            "$(tr ' ' '\n' <<<"${SEMB[$name]}" | grep . | sort -u | paste -sd,) |" \
            "$(tr ' ' '\n' <<<"${SEMI[$name]}" | grep . | sort -u | paste -sd,) |"
    done
fi
