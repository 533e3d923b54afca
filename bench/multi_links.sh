#!/usr/bin/env bash
# The kernel's cost of uprobe-multi links without usdtop: hotspot_jni:* of OpenJDK 17's libjvm.so
# (483 sites) in a sleeping java, as ONE link carrying every site against one link PER site,
# created then closed one after another (bench/multi_links.c). usdtop 2e88acb makes one link per
# probe (473 here), which is close to the second. Run as root: bash bench/multi_links.sh
# (ROUNDS=3 by default; the per-site closes take about half a minute a round).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
JDK=/usr/lib/jvm/java-17-openjdk-amd64
LIBJVM=$JDK/lib/server/libjvm.so
for need in "$JDK/bin/java:openjdk-17-jdk-headless" "$JDK/bin/javac:openjdk-17-jdk-headless" \
    "$(command -v cc || echo cc):build-essential" "$(command -v readelf || echo readelf):binutils"; do
    [[ -e ${need%%:*} ]] || { echo "${need%%:*} is missing (package ${need#*:}): bash .ci/install-deps" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/usdtop-bench-links.XXXXXX)
JPID=
cleanup() {
    [[ -z $JPID ]] || kill "$JPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cc -O2 -o "$WORK/multi_links" bench/multi_links.c

# File offsets of the hotspot_jni sites: each note's address, mapped through the PT_LOAD segments.
readelf -lW "$LIBJVM" | awk '$1 == "LOAD" { print "L", $2, $3, $6 }' >"$WORK/map"
readelf -n "$LIBJVM" | awk '/Provider:/ { p = $2 } /Location:/ && p == "hotspot_jni" { sub(",", "", $2); print "S", $2 }' >>"$WORK/map"
awk 'function hex(s,  v, i) { v = 0; s = tolower(substr(s, 3))
         for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
         return v }
     $1 == "L" { off[n] = hex($2); va[n] = hex($3); sz[n++] = hex($4) }
     $1 == "S" { a = hex($2); for (i = 0; i < n; i++) if (a >= va[i] && a < va[i] + sz[i]) print a - va[i] + off[i] }' \
    "$WORK/map" >"$WORK/offsets"

source bench/sleeping_java.sh
start_sleeping_java "$WORK"

echo "### uprobe-multi links without usdtop (bench/multi_links.sh)"
echo
echo "hotspot_jni:* of libjvm.so ($(wc -l <"$WORK/offsets") sites) in a sleeping java, pid filter on it;"
echo "a program that does nothing; links created, then closed one after another. $ROUNDS rounds."
echo
echo "| round | one link | one link per site |"
echo "|---|---|---|"
for round in $(seq "$ROUNDS"); do
    one=$("$WORK/multi_links" "$LIBJVM" "$JPID" one <"$WORK/offsets")
    per=$("$WORK/multi_links" "$LIBJVM" "$JPID" per <"$WORK/offsets")
    echo "| $round | ${one#*: } | ${per#*: } |"
done
