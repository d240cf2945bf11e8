#!/usr/bin/env bash
# Instructions per DHCP exchange in dhcp-svc, counted by callgrind: repeatable on a busy
# machine where CPU-time figures are not, so use it for before/after comparisons of the
# server's own code (user space only: the kernel's share of recvmsg/sendmsg is not in it).
#
# Server namespace (10.89.0.1) with a memory-store hardware-api and dhcp-svc under
# `valgrind --tool=callgrind`; client namespace (10.89.0.2) with perfdhcp as a relay, full
# DORA at a low fixed rate, the registered MACs (-M). Counters are zeroed once the cache
# has synced and the warm-up ran, and dumped after the measured run: every thread of the
# process (workers, tokio, metrics upkeep) is counted.
#
# Needs root, valgrind (callgrind_control, callgrind_annotate), perfdhcp, curl.
# Environment: INSTR_MACHINES [10000] INSTR_RATE [200] INSTR_SECS [10] INSTR_WORKERS [1]
#              INSTR_BUILD [1] INSTR_KEEP [0] INSTR_TOP [25] (functions listed, inclusive)
#              INSTR_CACHE_SIM [0] 1 = also simulate the caches (callgrind --cache-sim, this
#              machine's L1/LL sizes) and print data-cache misses per exchange: the cost
#              that grows with the registry's size, which instruction counts do not show
#              INSTR_BIN [target/release] where dhcp-svc, hardware-api and hwctl are taken from
#              (e.g. a saved copy of an earlier build, for a before/after pair)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/dhcp-svc/bench/lab.sh"
N=${INSTR_MACHINES:-10000}
RATE=${INSTR_RATE:-200}
SECS=${INSTR_SECS:-10}
WORKERS=${INSTR_WORKERS:-1}
BUILD=${INSTR_BUILD:-1}
KEEP=${INSTR_KEEP:-0}
TOP=${INSTR_TOP:-25}
CACHE_SIM=${INSTR_CACHE_SIM:-0}
SRC_BIN=${INSTR_BIN:-$ROOT/target/release}
SRV_IP=10.89.0.1
CLI_IP=10.89.0.2
TAG=$$
SRV_NS=ibi-s-$TAG
CLI_NS=ibi-c-$TAG
SRV_IF=ibis$TAG
CLI_IF=ibic$TAG
REG_PORT=50162
ADMIN=127.0.0.1:9068
WRITE_TOKEN=instr-write-token-0123456789
READ_TOKEN=instr-read-token-0123456789

die() { echo "dhcp-instr: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
for t in valgrind callgrind_control callgrind_annotate perfdhcp curl ip; do command -v "$t" >/dev/null || die "$t not found"; done

WORK=$(mktemp -d /tmp/dhcp-instr.XXXXXX)
PIDS=()
cleanup() {
    local rc=$? p
    set +e
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    ip netns del "$SRV_NS" 2>/dev/null
    ip netns del "$CLI_NS" 2>/dev/null
    if [[ $KEEP == 1 ]]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $BUILD == 1 ]]; then (cd "$ROOT" && cargo build --release -p dhcp-svc -p hardware-api --bins 2>&1 | tail -1); fi
BIN=$WORK/bin
lab_bins "$SRC_BIN" "$BIN"
lab_netns
# The same machines as dhcp-bench.sh.
lab_machines "$N" "$WORK"
lab_registry "$N" "$WORK" "$WORK/lab"

SIM=()
[[ $CACHE_SIM == 1 ]] && SIM=(--cache-sim=yes)
ip netns exec "$SRV_NS" valgrind --tool=callgrind "${SIM[@]}" --callgrind-out-file="$WORK/callgrind.out" \
    "$BIN/dhcp-svc" --interface "$SRV_IF" --registry "http://127.0.0.1:$REG_PORT" --registry-token "$READ_TOKEN" \
    --admin-listen "$ADMIN" --workers "$WORKERS" >"$WORK/dhcp-svc.log" 2>&1 &
SVC=$!
PIDS=("$SVC" "${PIDS[@]}")
for i in $(seq 1 1200); do
    [[ $(in_srv curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/healthz" || true) == 200 ]] && break
    kill -0 "$SVC" 2>/dev/null || die "dhcp-svc exited: $(tail -5 "$WORK/dhcp-svc.log")"
    ((i < 1200)) || die "dhcp-svc not ready after 120 s"
    sleep 0.1
done

pd() { # RATE SECS OUT
    timeout $(($2 + 60)) ip netns exec "$CLI_NS" perfdhcp -4 -l "$CLI_IF" -R "$N" -M "$WORK/macs.txt" -p "$2" -g single \
        -r "$1" -W 2000000 "$SRV_IP" >"$3" 2>&1 || true
}
pd "$RATE" 3 "$WORK/warmup.out"
callgrind_control -z "$SVC" >/dev/null
pd "$RATE" "$SECS" "$WORK/run.out"
callgrind_control -d "$SVC" >/dev/null
sleep 1
read -r offers acks < <(awk '/^received packets:/ { r[++k] = $3 } END { print r[1] + 0, r[2] + 0 }' "$WORK/run.out")
exch=$(((offers + acks) / 2))
dump=$(ls -t "$WORK"/callgrind.out.* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "dhcp-svc ($N machines, $WORKERS worker(s)), perfdhcp ${RATE}/s x ${SECS}s: $offers OFFERs, $acks ACKs"
awk -v t="$total" -v n="$exch" 'BEGIN { printf "instructions: %d total, %d per exchange (all threads)\n", t, (n > 0 ? t / n : 0) }'
if [[ $CACHE_SIM == 1 ]]; then
    # Events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw (callgrind's order with --cache-sim).
    callgrind_annotate "$dump" 2>/dev/null | awk -v n="$exch" '
        /^Events shown:/ { for (i = 3; i <= NF; i++) name[i - 2] = $i }
        /PROGRAM TOTALS/ { k = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { v = $i; gsub(",", "", v); e[name[++k]] = v } }
        END { if (n > 0) printf "data cache misses per exchange: L1 %.1f, last level %.1f (reads %.1f, writes %.1f)\n",
                  (e["D1mr"] + e["D1mw"]) / n, (e["DLmr"] + e["DLmw"]) / n, e["DLmr"] / n, e["DLmw"] / n }'
fi
echo "inclusive, per exchange (top $TOP):"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | awk -v n="$exch" -v top="$TOP" '
    /^-+$/ { sep++; next }
    sep >= 4 && $1 ~ /^[0-9,]+$/ && c < top { v = $1; gsub(",", "", v); $1 = ""; $2 = $2; printf "  %9d  %s\n", v / n, substr($0, 1, 150); c++ }'
cp "$dump" "$WORK/last.callgrind" 2>/dev/null || true
