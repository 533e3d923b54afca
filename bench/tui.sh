#!/usr/bin/env bash
# Benchmark (not a test): CPU, memory and frame time of the usdtop TUI
#   1. idle: the explorer open, nothing attached;
#   2. loaded: both node request probes attached to `usdtop demo-server --mix fast`, pushing as
#      many events per second as the machine gives (target ~50,000: 25,000 requests/s).
# Targets: < 2 % of one core idle, < 25 % at 50k events/s, memory bounded.
# Usage: bench/tui.sh [SECONDS]   (root; needs tmux)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-20}
RATE=${RATE:-25000}
cargo build --release --quiet
WORK=$(mktemp -d /tmp/usdtop-bench.XXXXXX)
SOCK=usdtop-bench-$$
# A private copy of the binary: nobody else's attachments on it (see tests/tui_e2e.rs).
BIN=$WORK/usdtop
cp target/release/usdtop "$BIN"
DS=
cleanup() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    [[ -n "$DS" ]] && kill "$DS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
tui_pid() { pgrep -f "^$BIN" | while read -r p; do
    [[ "$(awk '{print $4}' /proc/$p/stat)" == "$(tmux -L "$SOCK" display -p -t s '#{pane_pid}')" ]] && echo "$p"; done | head -1; }

run_tui() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    SOCK=usdtop-bench-$$-$1 # a fresh server: the old one may still be exiting
    tmux -f /dev/null -L "$SOCK" new-session -d -s s -x 140 -y 42 \
        "env TERM=xterm-256color USDTOP_FRAME_STATS=$WORK/frames.$1 $2; sleep 600"
    sleep 4 # start-up: first full process scan
}

# cpu_over PID SECONDS -> percent of one core
cpu_over() {
    local a b
    a=$(ticks "$1"); sleep "$2"; b=$(ticks "$1")
    echo "scale=1; 100 * ($b - $a) / ($HZ * $2)" | bc
}

quit_tui() {
    tmux -L "$SOCK" send-keys -t s q
    for _ in $(seq 50); do [[ -s "$WORK/frames.$1" ]] && break; sleep 0.1; done
    cat "$WORK/frames.$1" 2>/dev/null || echo "(no frame stats)"
}

echo "== idle: explorer open, nothing attached (${DUR}s)"
run_tui idle "$BIN"
P=$(tui_pid)
echo "cpu: $(cpu_over "$P" "$DUR") % of one core; rss: $(rss_kib "$P") KiB"
echo "frames: $(quit_tui idle)"

echo "== loaded: demo-server --mix fast --rate $RATE, request+response attached (${DUR}s)"
"$BIN" demo-server --mix fast --rate "$RATE" --connections 4 >"$WORK/ds.out" &
DS=$!
sleep 1
run_tui load "$BIN -p $DS -a node:http__server__request -a node:http__server__response"
P=$(tui_pid)
R0=$(rss_kib "$P")
CPU=$(cpu_over "$P" "$DUR")
EVS=$(tmux -L "$SOCK" capture-pane -p -t s | head -1 | grep -o '[0-9.k]* events/s' || true)
DROPS=$(tmux -L "$SOCK" capture-pane -p -t s | head -1 | grep -o '[0-9]* dropped' || echo "0 dropped")
echo "cpu: $CPU % of one core at $EVS ($DROPS); rss: $R0 KiB -> $(rss_kib "$P") KiB after ${DUR}s"
DSCPU=$(cpu_over "$DS" 3)
echo "(demo-server itself: $DSCPU % of one core)"
echo "frames: $(quit_tui load)"
