#!/usr/bin/env bash
# Screenshots of the real usdtop TUI on real workloads, as PNGs in screenshots/.
#
# Runs usdtop in tmux at a fixed size (real BPF, as root), drives it with keys, captures the
# pane with its colours (`tmux capture-pane -e -p`) and renders that to PNG with
# scripts/ansi2png.py (Pillow, installed into a throwaway venv from PyPI).
#
# Workloads: the built-in demo (`usdtop --demo`), PHP 8.2's `php -S` under `ab`, and
# PostgreSQL 15 under `pgbench` (each skipped with a message when not installed).
#
# Usage: scripts/screenshots.sh            (needs root, tmux, python3; builds usdtop)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=screenshots
WORK=$(mktemp -d /tmp/usdtop-shots.XXXXXX)
chmod 755 "$WORK" # the postgres user works in a folder below it
SOCK=usdtop-shots-$$
VENV=${USDTOP_SHOTS_VENV:-/tmp/usdtop-shots-venv}
PIDS=()

cleanup() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n "${PGDATA_DIR:-}" ]]; then
        runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ -n "${PHP_PGID:-}" ]]; then kill -- "-$PHP_PGID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --quiet
# A private copy: a binary nobody else is tracing (see tests/tui_e2e.rs on semaphores).
BIN="$WORK/usdtop"
cp target/debug/usdtop "$BIN"

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet pillow
fi
mkdir -p "$OUT"

# start NAME COLS ROWS COMMAND: a fresh tmux window running COMMAND.
start() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    sleep 0.5
    tmux -f /dev/null -L "$SOCK" new-session -d -s s -x "$2" -y "$3" \
        "env TERM=xterm-256color $4; sleep 600"
    COLS=$2 ROWS=$3
}

# wait_for TEXT: until the screen shows TEXT (30 s at most).
wait_for() {
    for _ in $(seq 120); do
        if tmux -L "$SOCK" capture-pane -p -t s | grep -qF -- "$1"; then return 0; fi
        sleep 0.25
    done
    echo "screenshots: timed out waiting for '$1'; screen:" >&2
    tmux -L "$SOCK" capture-pane -p -t s >&2
    return 1
}

keys() {
    for k in "$@"; do tmux -L "$SOCK" send-keys -t s "$k"; sleep 0.3; done
}

# shot NAME: capture the pane with colours and render it.
shot() {
    tmux -L "$SOCK" capture-pane -e -p -t s >"$WORK/$1.ans"
    "$VENV/bin/python" scripts/ansi2png.py "$WORK/$1.ans" "$OUT/$1.png" --cols "$COLS" --rows "$ROWS"
    echo "screenshots: $OUT/$1.png"
}

# --- the built-in demo ---------------------------------------------------------------------
start demo 140 42 "$BIN --demo"
wait_for "/api/search"
sleep 8
shot demo-live
keys Tab Enter
wait_for "filter: "
sleep 3
shot demo-drill-top-path
keys Escape BTab End Enter
wait_for "filter: "
sleep 2
shot demo-drill-latency-bucket
keys Escape 1 '?'
wait_for "usdtop keys"
shot help
keys Escape 3
sleep 1
shot demo-explorer

start small 80 24 "$BIN --demo"
wait_for "/api/"
sleep 6
shot demo-80x24

# --- PHP 8.2: php -S with forked workers, driven by ab ----------------------------------------
if [[ -x /usr/bin/php8.2 && -x /usr/bin/ab ]]; then
    mkdir -p "$WORK/php"
    cat >"$WORK/php/router.php" <<'EOF'
<?php
$uri = $_SERVER['REQUEST_URI'];
if (str_starts_with($uri, '/report')) { usleep(random_int(5000, 40000)); }
if (str_starts_with($uri, '/missing')) { http_response_code(404); }
echo "ok $uri\n";
EOF
    PHP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    (cd "$WORK/php" && PHP_CLI_SERVER_WORKERS=3 setsid php8.2 -S "127.0.0.1:$PHP_PORT" router.php >/dev/null 2>&1) &
    sleep 1
    PHP_PID=$(pgrep -f "php8.2 -S 127.0.0.1:$PHP_PORT" | head -1)
    PHP_PGID=$(ps -o pgid= -p "$PHP_PID" | tr -d ' ')
    load_php() {
        while true; do
            ab -q -n 300 -c 2 "http://127.0.0.1:$PHP_PORT/index.php" >/dev/null 2>&1 || true
            ab -q -n 40 -c 2 "http://127.0.0.1:$PHP_PORT/report/monthly" >/dev/null 2>&1 || true
            ab -q -n 100 -c 2 "http://127.0.0.1:$PHP_PORT/api/items" >/dev/null 2>&1 || true
            ab -q -n 20 -c 1 "http://127.0.0.1:$PHP_PORT/missing" >/dev/null 2>&1 || true
        done
    }
    load_php &
    PIDS+=($!)
    start php 140 42 "$BIN -p $PHP_PID -a php:request__startup -a php:request__shutdown"
    wait_for "/report/monthly"
    sleep 8
    shot php-ab
    kill "${PIDS[-1]}" 2>/dev/null || true
    kill -- "-$PHP_PGID" 2>/dev/null || true
    PHP_PGID=
else
    echo "screenshots: php8.2 or ab not installed; skipping the PHP screenshot" >&2
fi

# --- PostgreSQL 15 under pgbench ---------------------------------------------------------------
PG=/usr/lib/postgresql/15/bin
if [[ -x $PG/postgres && -x $PG/pgbench ]]; then
    mkdir -p "$WORK/pg"
    chown postgres:postgres "$WORK/pg"
    PGDATA_DIR="$WORK/pg/data"
    runuser -u postgres -- $PG/initdb -D "$PGDATA_DIR" --auth=trust -U postgres --no-sync >/dev/null
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    runuser -u postgres -- $PG/pg_ctl -D "$PGDATA_DIR" -o "-k $WORK/pg -p $PG_PORT -c listen_addresses=''" \
        -l "$WORK/pg/log" -w start >/dev/null
    runuser -u postgres -- $PG/pgbench -h "$WORK/pg" -p "$PG_PORT" -i -s 2 postgres >/dev/null 2>&1
    PM=$(head -1 "$PGDATA_DIR/postmaster.pid")
    start pg 140 42 "$BIN -p $PM -a postgresql:query__start -a postgresql:query__done"
    wait_for "attached postgresql:query__"
    sleep 2
    runuser -u postgres -- $PG/pgbench -h "$WORK/pg" -p "$PG_PORT" -n -c 2 -T 40 postgres >/dev/null 2>&1 &
    PIDS+=($!)
    wait_for "UPDATE"
    sleep 8
    shot postgres-pgbench
    keys 3 Down Down
    sleep 1
    shot postgres-explorer
else
    echo "screenshots: PostgreSQL 15 not installed; skipping the pgbench screenshot" >&2
fi
