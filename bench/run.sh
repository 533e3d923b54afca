#!/usr/bin/env bash
# usdtop benchmark suite: one command, writes BENCHMARKS.md. Run as root: bash bench/run.sh
#
#  1. Cost per event on a tight-loop fixture (tests/fixtures/aggfix.c, probe aggfix:tick with
#     an int and a string argument; aggfix:req__start/req__done pairs for latency). The fixture
#     measures the CPU time of its firing thread (CLOCK_THREAD_CPUTIME_ID: user + kernel, so the
#     uprobe and BPF work done on its behalf count, time lost to other processes on a shared
#     machine does not); pinned to CPU 1, the tracer to CPU 0; median of COST_RUNS (5) runs. The cost is the
#     traced CPU time per event minus the untraced one.
#  2. PostgreSQL: pgbench -c 2 -T 10 TPS with no tracer, with a bpftrace hist() pairing
#     query__start/done, and with usdtop latency (auto and stream modes); runs alternate,
#     median of PG_RUNS (5). fsync and synchronous_commit are off and the cluster lives in
#     /dev/shm, so the disk does not drown the CPU cost of tracing in noise. A run with
#     bpftrace attaching empty programs to the same two probes measures the floor that any
#     uprobe-based tracer pays (the trap into the kernel and back), whatever its program does.
#  3. The highest paced event rate usdtop top streams without drops (--mode stream: every event
#     through the ring buffer), and its CPU use there; then start/done pairs at full speed.
#  4. usdtop list on the whole machine (bench/list.sh, if present).
#  5. String arguments by kind of pointer (readable, unmapped, tiny), with the plain and the
#     sleepable program (bench/strings.sh).
# Environment: N (events per cost run, default 1000000), COST_RUNS (5), PG_RUNS (5), PAIRS (2000000),
# SKIP_COST=1, SKIP_PG=1, SKIP_RATE=1, SKIP_LIST=1, SKIP_STRINGS=1 (to rerun a part).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

cargo build --release --quiet
U=$ROOT/target/release/usdtop
WORK=$(mktemp -d /tmp/usdtop-bench.XXXXXX)
chmod 755 "$WORK"
PGDATA=$(mktemp -d /dev/shm/usdtop-bench-pg.XXXXXX)
FIX=$WORK/aggfix
cc -O2 -o "$FIX" tests/fixtures/aggfix.c
N=${N:-1000000}
PG=/usr/lib/postgresql/15/bin
TABLES=$WORK/tables.md
: >"$TABLES"

cleanup() {
    if [[ -f $PGDATA/postmaster.pid ]]; then
        runuser -u postgres -- "$PG/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK" "$PGDATA"
}
trap cleanup EXIT

# CPU time (user + system, in clock ticks of 10 ms) of a process so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Waits until FILE has a line starting with WORD (max 60 s).
wait_line() {
    for _ in $(seq 600); do
        grep -q "^$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    return 1
}

# One traced (or untraced) run of the fixture; prints "elapsed_ns events drops".
#   run_fixture MODE TRACER...    MODE = loop | pairs; TRACER words may contain @PID@;
#   TRACER "none" = untraced.
run_fixture() {
    local mode=$1
    shift
    local args=("$mode" "$N")
    [[ $mode == pairs ]] && args+=(0)
    local events=$N
    [[ $mode == pairs ]] && events=$((2 * N))
    if [[ $1 == none ]]; then
        taskset -c 1 "$FIX" "${args[@]}" --no-wait >"$WORK/fx.out"
        echo "$(awk '/^cpu_ns/ { print $2 }' "$WORK/fx.out") $events 0"
        return
    fi
    taskset -c 1 "$FIX" "${args[@]}" >"$WORK/fx.out" &
    local fpid=$!
    local cmd=("${@//@PID@/$fpid}")
    taskset -c 0 "${cmd[@]}" >"$WORK/tracer.out" 2>"$WORK/tracer.err" &
    local tpid=$!
    wait "$fpid"
    # bpftrace runs until interrupted; usdtop -p ends by itself when the process has exited.
    kill -INT "$tpid" 2>/dev/null || true
    wait "$tpid" || true
    local drops=0
    if [[ ${cmd[0]} == "$U" && ${cmd[1]} == trace ]]; then
        drops=$(sed -n 's/.* \([0-9]*\) dropped.*/\1/p' "$WORK/tracer.err" | tail -1)
    elif [[ ${cmd[0]} == "$U" ]]; then
        drops=$( (grep '^{' "$WORK/tracer.out" || true) | tail -1 | jq -r '.drops // 0')
    fi
    drops=${drops:-0}
    echo "$(awk '/^cpu_ns/ { print $2 }' "$WORK/fx.out") $events $drops"
}

# Cost rows, measured in rounds: each round runs every row once, so a slow spell of the shared
# host hits all rows alike instead of the rows that happened to run during it.
#   row NAME MODE TRACER...     (TRACER as for run_fixture)
NROWS=0
row() {
    ROW_NAME[NROWS]=$1
    ROW_MODE[NROWS]=$2
    shift 2
    printf -v "ROW_CMD_$NROWS" '%q ' "$@"
    NROWS=$((NROWS + 1))
}

if [[ ${SKIP_COST:-0} != 1 ]]; then
RUNS=${COST_RUNS:-5}
echo "== 1. cost per event ($N events per run, $RUNS rounds, rows interleaved)"
BT=(bpftrace -q -e)
row "no tracer (tick)" loop none
row "bpftrace count()" loop "${BT[@]}" "usdt:$FIX:aggfix:tick { @c = count(); }" -p @PID@
row "bpftrace @[str(arg1)] = count()" loop "${BT[@]}" "usdt:$FIX:aggfix:tick { @[str(arg1)] = count(); }" -p @PID@
row "bpftrace printf" loop "${BT[@]}" "usdt:$FIX:aggfix:tick { printf(\"%d %s\\n\", arg0, str(arg1)); }" -p @PID@
row "usdtop trace (streaming)" loop "$U" trace -p @PID@ "$FIX:aggfix:tick"
# With a string argument the sleepable program is attached (it faults a string's page in when
# the non-faulting read fails); --fault-strings never attaches the plain one: the difference
# is the price of a sleepable uprobe program when every string is readable.
row "usdtop trace --str 1 (sleepable)" loop "$U" trace --str 1 -p @PID@ "$FIX:aggfix:tick"
row "usdtop trace --str 1 --fault-strings never" loop "$U" trace --str 1 --fault-strings never -p @PID@ "$FIX:aggfix:tick"
# Like with like: bpftrace printf above reads str(arg1) and prints it; so does this row.
row "usdtop trace --str 1 --json (reads and prints the string)" loop "$U" trace --str 1 --json -p @PID@ "$FIX:aggfix:tick"
row "usdtop top --by arg1 (streamed)" loop "$U" top --mode stream -p @PID@ "$FIX:aggfix:tick" --by arg1 --json
row "usdtop top --by arg1 (kernel)" loop "$U" top --mode kernel -p @PID@ "$FIX:aggfix:tick" --by arg1 --json
row "no tracer (start/done pairs)" pairs none
row "bpftrace hist() pairing" pairs "${BT[@]}" "usdt:$FIX:aggfix:req__start { @s[tid] = nsecs; } usdt:$FIX:aggfix:req__done /@s[tid]/ { @h = hist(nsecs - @s[tid]); delete(@s[tid]); }" -p @PID@
row "usdtop latency --mode stream" pairs "$U" latency --mode stream -p @PID@ "$FIX:aggfix:req__start" aggfix:req__done --json
row "usdtop latency --mode kernel --sample 0" pairs "$U" latency --mode kernel --sample 0 -p @PID@ "$FIX:aggfix:req__start" aggfix:req__done --json
row "usdtop latency (auto)" pairs "$U" latency -p @PID@ "$FIX:aggfix:req__start" aggfix:req__done --json
row "usdtop top --by arg1 with latency (kernel)" pairs "$U" top --mode kernel -p @PID@ "$FIX:aggfix:req__start" --done aggfix:req__done --by arg1 --json

declare -a PER DROPS
for round in $(seq "$RUNS"); do
    echo "  round $round of $RUNS"
    for ((i = 0; i < NROWS; i++)); do
        cmd_var="ROW_CMD_$i"
        eval "cmd=(${!cmd_var})"
        read -r ns ev dr < <(run_fixture "${ROW_MODE[i]}" "${cmd[@]}")
        PER[i]="${PER[i]:-}$(awk -v n="$ns" -v e="$ev" 'BEGIN { printf "%.1f", n / e }') "
        DROPS[i]=$((${DROPS[i]:-0} + dr))
    done
done
# name, mode, median, drops, min, runs
: >"$WORK/cost.tsv"
for ((i = 0; i < NROWS; i++)); do
    m=$(printf '%s\n' ${PER[i]} | median)
    lo=$(printf '%s\n' ${PER[i]} | sort -g | head -1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${ROW_NAME[i]}" "${ROW_MODE[i]}" "$m" "${DROPS[i]}" "$lo" "${PER[i]% }" >>"$WORK/cost.tsv"
    printf '  %-48s %8s ns/event median, %8s min (runs: %s; drops: %s)\n' "${ROW_NAME[i]}" "$m" "$lo" "${PER[i]% }" "${DROPS[i]}"
done

{
    echo "### Cost per event (tight loop, $N events per run, CPU time of the firing thread, $RUNS rounds)"
    echo
    echo "Each round runs every row once, in this order. Noise on a shared host only ever adds"
    echo "time, so the minimum of the rounds is the best estimate of a tracer's own cost; the"
    echo "median is shown too. Ratios divide the ns added by what bpftrace \`count()\` adds."
    echo
    echo "| tracer | workload | ns/event (median) | ns/event (min) | ns added (median / min) | vs bpftrace count() (median / min) | ring drops (all runs) |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        $1 == "no tracer (tick)" { base["loop"] = $3; bmin["loop"] = $5 }
        $1 == "no tracer (start/done pairs)" { base["pairs"] = $3; bmin["pairs"] = $5 }
        $1 == "bpftrace count()" { floor = $3; fmin = $5 }
        { rows[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, "\t")
                untraced = f[1] ~ /^no tracer/
                added = f[3] - base[f[2]]
                amin = f[5] - bmin[f[2]]
                ratio = untraced ? "—" : sprintf("%.2fx / %.2fx", added / (floor - base["loop"]), amin / (fmin - bmin["loop"]))
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", f[1], (f[2] == "loop" ? "tick(int, str)" : "start+done, per event"), f[3], f[5], (untraced ? "—" : sprintf("%.0f / %.0f", added, amin)), ratio, f[4]
            }
        }' "$WORK/cost.tsv"
    echo
    echo "Individual runs (ns/event, in round order):"
    echo
    awk -F'\t' '{ printf "- %s: %s\n", $1, $6 }' "$WORK/cost.tsv"
    echo
} >>"$TABLES"

fi

if [[ ${SKIP_PG:-0} != 1 && -x $PG/postgres ]]; then
    echo "== 2. PostgreSQL pgbench -c 2 -T 10 (alternating, median of ${PG_RUNS:-5})"
    chown postgres "$PGDATA" "$WORK"
    runuser -u postgres -- "$PG/initdb" -D "$PGDATA" -A trust --no-sync >/dev/null
    runuser -u postgres -- "$PG/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w \
        -o "-k $WORK -p 5499 -c listen_addresses='' -c fsync=off -c synchronous_commit=off" start >/dev/null
    PGPID=$(head -1 "$PGDATA/postmaster.pid")
    runuser -u postgres -- pgbench -h "$WORK" -p 5499 -i -s 1 postgres >/dev/null 2>&1
    PGB=$PG/postgres
    BT_PG="usdt:$PGB:postgresql:query__start { @s[tid] = nsecs; } usdt:$PGB:postgresql:query__done /@s[tid]/ { @h = hist(nsecs - @s[tid]); delete(@s[tid]); }"
    # Busy CPU time of the whole machine so far, in clock ticks (user+nice+system+irq+softirq;
    # not idle, iowait or steal).
    busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
    # One pgbench run; prints "TPS CPU_US_PER_TRANSACTION". The CPU time per transaction
    # (postgres, pgbench and the tracer together) is far less disturbed by other guests on
    # the host than TPS is.
    pgrun() {
        local b0 b1 out
        b0=$(busy_ticks)
        out=$(runuser -u postgres -- pgbench -h "$WORK" -p 5499 -c 2 -T 10 postgres 2>/dev/null)
        b1=$(busy_ticks)
        awk -v b="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" '
            /^number of transactions actually processed/ { split($0, f, ": "); split(f[2], g, "/"); n = g[1] }
            /^tps/ { tps = $3 }
            END { printf "%s %.1f\n", tps, (n > 0 ? b / hz * 1e6 / n : 0) }' <<<"$out"
    }
    : >"$WORK/pg.tsv"
    for rep in $(seq "${PG_RUNS:-5}"); do
        for cfg in none floor bpftrace usdtop usdtop-stream usdtop-budget; do
            tpid=
            case $cfg in
            floor)
                bpftrace -q -e "usdt:$PGB:postgresql:query__start { } usdt:$PGB:postgresql:query__done { }" >"$WORK/bt.out" 2>&1 &
                tpid=$!
                sleep 4
                ;;
            bpftrace)
                bpftrace -q -e "$BT_PG" >"$WORK/bt.out" 2>&1 &
                tpid=$!
                sleep 4
                ;;
            usdtop | usdtop-stream | usdtop-budget)
                mode=auto budget=()
                [[ $cfg == usdtop-stream ]] && mode=stream
                [[ $cfg == usdtop-budget ]] && budget=(--max-overhead 1)
                "$U" latency --mode $mode -p "$PGPID" --exact-forks "${budget[@]}" postgresql:query__start --json >"$WORK/ul.out" 2>"$WORK/ul.err" &
                tpid=$!
                wait_line "$WORK/ul.err" Tracing
                ;;
            esac
            read -r tps cpu < <(pgrun)
            if [[ -n $tpid ]]; then
                kill -INT "$tpid"
                wait "$tpid" || true
            fi
            extra="" p50=""
            if [[ $cfg == usdtop* ]]; then
                extra=$(grep '^{' "$WORK/ul.out" | tail -1 | jq -r '"mode=\(.mode) count=\(.count) drops=\(.drops) p50=\(.p50_ns) sample_every=\(.sample_every) sampled=\(.sampled.fraction // 1)"')
                p50=$(grep '^{' "$WORK/ul.out" | tail -1 | jq -r '.p50_ns')
            fi
            printf '%s\t%s\t%s\t%s\n' "$cfg" "$tps" "$cpu" "$p50" >>"$WORK/pg.tsv"
            echo "  run $rep $cfg: $tps tps, $cpu us CPU/transaction $extra"
        done
    done
    {
        echo "### PostgreSQL 15, pgbench -c 2 -T 10 (scale 1, fsync off, alternating, median of ${PG_RUNS:-5})"
        echo
        echo "| tracer | TPS (median) | TPS runs | TPS lost | CPU µs per transaction (median) | CPU runs | CPU added | added above the uprobe floor | query p50 µs (median) |"
        echo "|---|---:|---|---:|---:|---|---:|---:|---:|"
        for cfg in none floor bpftrace usdtop usdtop-stream usdtop-budget; do
            m=$(awk -F'\t' -v c="$cfg" '$1 == c { print $2 }' "$WORK/pg.tsv" | median)
            runs=$(awk -F'\t' -v c="$cfg" '$1 == c { printf "%s%.0f", (n++ ? ", " : ""), $2 }' "$WORK/pg.tsv")
            cm=$(awk -F'\t' -v c="$cfg" '$1 == c { print $3 }' "$WORK/pg.tsv" | median)
            cruns=$(awk -F'\t' -v c="$cfg" '$1 == c { printf "%s%.0f", (n++ ? ", " : ""), $3 }' "$WORK/pg.tsv")
            [[ $cfg == none ]] && base=$m && cbase=$cm
            [[ $cfg == floor ]] && cfloor=$cm
            lost=$(awk -v b="$base" -v m="$m" 'BEGIN { printf "%.1f %%", (b - m) / b * 100 }')
            added=$(awk -v b="$cbase" -v m="$cm" 'BEGIN { printf "%.1f %%", (m - b) / b * 100 }')
            above=$(awk -v b="$cbase" -v f="${cfloor:-0}" -v m="$cm" 'BEGIN { printf "%.1f %%", (m - f) / b * 100 }')
            name=$cfg
            [[ $cfg == none ]] && name="no tracer" && lost="—" && added="—" && above="—"
            [[ $cfg == floor ]] && name="uprobe floor: bpftrace, empty programs on both probes" && above="—"
            [[ $cfg == bpftrace ]] && name="bpftrace hist() query__start/done"
            [[ $cfg == usdtop ]] && name="usdtop latency postgresql:query__start (auto: in-kernel pairing)"
            [[ $cfg == usdtop-stream ]] && name="usdtop latency --mode stream"
            [[ $cfg == usdtop-budget ]] && name="usdtop latency --max-overhead 1 (duty-cycled, counts scaled)"
            pm=$(awk -F'\t' -v c="$cfg" '$1 == c && $4 != "" { print $4 / 1000 }' "$WORK/pg.tsv" | median)
            echo "| $name | $(printf '%.0f' "$m") | $runs | $lost | $(printf '%.0f' "$cm") | $cruns | $added | $above | ${pm:-—} |"
        done
        echo
        echo "Every statement fires query__start and query__done once; each hit traps into the kernel"
        echo "and back whatever the attached program does. The floor row attaches programs that do"
        echo "nothing: what is lost there is the price of a uprobe, not of a tracer. CPU per"
        echo "transaction is the busy time of the whole machine (postgres, pgbench, the tracer) over"
        echo "the transactions run; unlike TPS it does not count time other guests of the host took."
        echo
        awk -F'\t' '$1 == "none" { v[++n] = $2 } END {
            lo = v[1]; hi = v[1]
            for (i = 2; i <= n; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
            printf "Without any tracer the runs spread from %.0f to %.0f TPS (%.0f %% of the lowest)", lo, hi, (hi - lo) / lo * 100
        }' "$WORK/pg.tsv"
        awk -F'\t' '$1 == "none" { v[++n] = $3 } END {
            lo = v[1]; hi = v[1]
            for (i = 2; i <= n; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
            printf " and from %.0f to %.0f µs of CPU per transaction (%.0f %%): ", lo, hi, (hi - lo) / lo * 100
            printf "differences between tracers smaller than that are noise of the shared machine, not tracing cost.\n"
        }' "$WORK/pg.tsv"
        echo
    } >>"$TABLES"
fi

if [[ ${SKIP_RATE:-0} != 1 ]]; then
echo "== 3. highest event rate streamed without drops (usdtop top --mode stream --by arg1)"
: >"$WORK/rate.tsv"
for rate in 25000 50000 100000 200000 400000 800000 1600000; do
    taskset -c 1 "$FIX" rate "$rate" 3 >"$WORK/fx.out" &
    fpid=$!
    # --mode stream: every event with its string goes through the ring buffer to user space,
    # the path that can drop (auto would count this probe in the kernel).
    taskset -c 0 "$U" top --mode stream -p "$fpid" "$FIX:aggfix:tick" --by arg1 --json >"$WORK/top.out" 2>"$WORK/top.err" &
    upid=$!
    wait_line "$WORK/fx.out" ready
    c0=$(cpu_ticks "$upid")
    wait "$fpid"
    c1=$(cpu_ticks "$upid")
    wait "$upid" || true
    fired=$(awk '/^fired/ { print $2 }' "$WORK/fx.out")
    secs=$(awk '/^elapsed_ns/ { print $2 / 1e9 }' "$WORK/fx.out")
    read -r total drops < <(grep '^{' "$WORK/top.out" | tail -1 | jq -r '"\(.total) \(.drops)"')
    cpu=$(awk -v a="$c0" -v b="$c1" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / 100 / s * 100 }')
    achieved=$(awk -v f="$fired" -v s="$secs" 'BEGIN { printf "%.0f", f / s }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$achieved" "$fired" "$total" "$drops" "$cpu" >>"$WORK/rate.tsv"
    echo "  target $rate/s: fired $fired ($achieved/s), usdtop counted $total, drops $drops, usdtop CPU $cpu %"
done
{
    echo "### Paced event rate, usdtop top --mode stream --by arg1 (every event streamed with its string, 3 s per rate)"
    echo
    echo "| target rate/s | achieved rate/s | fired | counted by usdtop | ring drops | usdtop CPU (of one core) |"
    echo "|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s %% |\n", $1, $2, $3, $4, $5, $6 }' "$WORK/rate.tsv"
    best=$(awk -F'\t' '$5 == 0 && $3 == $4 { r = $2; c = $6 } END { if (r) printf "%s events/s at %s %% CPU", r, c; else print "none" }' "$WORK/rate.tsv")
    echo
    echo "Highest rate with no drops and every event counted: **$best**."
    echo
} >>"$TABLES"

fi

echo "== 3b. start/done pairs at full speed: usdtop latency, paired in the kernel vs in user space"
: >"$WORK/pairs.tsv"
PAIRS=${PAIRS:-2000000}
for mode in auto kernel stream; do
    extra=()
    [[ $mode == kernel ]] && extra=(--sample 0)
    taskset -c 1 "$FIX" pairs "$PAIRS" 0 >"$WORK/fx.out" &
    fpid=$!
    taskset -c 0 "$U" latency --mode "$mode" "${extra[@]}" -p "$fpid" "$FIX:aggfix:req__start" aggfix:req__done --json >"$WORK/lat.out" 2>"$WORK/lat.err" &
    upid=$!
    wait_line "$WORK/fx.out" ready
    c0=$(cpu_ticks "$upid")
    wait "$fpid"
    c1=$(cpu_ticks "$upid")
    wait "$upid" || true
    secs=$(awk '/^elapsed_ns/ { print $2 / 1e9 }' "$WORK/fx.out")
    rate=$(awk -v n="$PAIRS" -v s="$secs" 'BEGIN { printf "%.0f", 2 * n / s }')
    cpu=$(awk -v a="$c0" -v b="$c1" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / 100 / s * 100 }')
    read -r count drops sample streamed < <(grep '^{' "$WORK/lat.out" | tail -1 | jq -r '"\(.count) \(.drops) \(.sample_every // "—") \(.streamed.count // .count)"')
    label=$mode
    [[ $mode == kernel ]] && label="kernel --sample 0"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$rate" "$count" "$drops" "$sample" "$streamed" "$cpu" >>"$WORK/pairs.tsv"
    echo "  --mode $label: $rate events/s, count $count of $PAIRS, drops $drops, 1 in $sample streamed ($streamed pairs), usdtop CPU $cpu %"
done
{
    echo "### $PAIRS start/done pairs fired as fast as one thread can (usdtop latency -p)"
    echo
    echo "| --mode | events/s fired | pairs counted | ring drops | streamed 1 in | pairs paired in user space | usdtop CPU (of one core) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s %% |\n", $1, $2, $3, $4, $5, $6, $7 }' "$WORK/pairs.tsv"
    echo
} >>"$TABLES"

if [[ ${SKIP_LIST:-0} != 1 && -f bench/list.sh ]]; then
    echo "== 4. usdtop list, whole machine (bench/list.sh)"
    bash bench/list.sh 2>&1 | tee "$WORK/list.out" | sed 's/^/  /'
    {
        echo "### usdtop list, whole machine (bench/list.sh)"
        echo
        echo '```'
        sed -n '/^processes:/p; /^probes x processes/p; /^usdtop cold/p; /^usdtop warm/p; /^bpftrace loop/p; /^speed-up/p' "$WORK/list.out"
        echo '```'
        echo
    } >>"$TABLES"
fi

if [[ ${SKIP_STRINGS:-0} != 1 ]]; then
    echo "== 5. string arguments by kind of pointer, plain vs sleepable program (bench/strings.sh)"
    bash bench/strings.sh "$N" "${COST_RUNS:-5}" >"$WORK/strings.md"
    {
        echo "### String arguments by kind of pointer: plain vs sleepable program (bench/strings.sh, $N events per run)"
        echo
        cat "$WORK/strings.md"
        echo
    } >>"$TABLES"
fi

{
    echo "# usdtop benchmarks"
    echo
    echo "Produced by \`bash bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "The machine was shared with other jobs while this ran (2 cores), so expect noise of"
    echo "10-20 % between runs; compare rows of one table, not tables of different runs."
    echo
    echo "Machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }'), $(nproc) CPUs, kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); bpftrace $(bpftrace --version | awk '{ print $2 }'); usdtop $(git rev-parse --short HEAD)."
    echo
    cat "$TABLES"
    [[ -f $WORK/notes ]] && { echo "Notes:"; sed 's/^ */- /' "$WORK/notes"; echo; }
} >BENCHMARKS.md
echo "== wrote BENCHMARKS.md"
