#!/usr/bin/env bash
# Registry benchmark: a fresh hardware-api (redb store in a temporary directory, loopback
# only), seeded with BENCH_MACHINES machines, then GetHardware over gRPC, a cache's full
# sync and lookups, and the memory of both processes. Prints figures and PASS/MISS per
# target of the issue; the exit status only says whether the run itself worked.
#
#   hardware-api/bench/registry-bench.sh              # 100,000 machines
#   BENCH_MACHINES=10000 hardware-api/bench/registry-bench.sh
#
# Other knobs (environment): BENCH_SEED_CONCURRENCY (64), BENCH_GRPC_CONCURRENCY (16),
# BENCH_GRPC_DURATION (10s), BENCH_GRPC_CONNECTIONS (1), BENCH_CACHE_LOOKUPS (10000000),
# BENCH_REGISTRY_THREADS (the registry's --worker-threads; default 1, "" for one per core),
# BENCH_CLIENT_THREADS (tokio workers of the load generator; default 1, "" for one per core),
# BENCH_SKIP_BUILD=1 to use the binaries already in target/release, BENCH_BIN_DIR to take
# hardware-api and hardware-bench from another directory (implies no build; for before/after
# comparisons in one sitting), BENCH_SKIP_BASELINE=1 to skip the gRPC health-check baseline.
#
# Everything runs on this machine: the load generator shares the cores with the registry,
# so anything else busy on the machine lowers the figures. The gRPC step reports how much
# CPU other processes took while it measured ("other processes' CPU") and the CPU time
# per call of the client and of the registry, which depend much less on other load.
# Figures, how they were measured and what decided the settings: bench/README.md.
set -euo pipefail

MACHINES="${BENCH_MACHINES:-100000}"
SEED_CONCURRENCY="${BENCH_SEED_CONCURRENCY:-64}"
GRPC_CONCURRENCY="${BENCH_GRPC_CONCURRENCY:-16}"
GRPC_DURATION="${BENCH_GRPC_DURATION:-10s}"
GRPC_CONNECTIONS="${BENCH_GRPC_CONNECTIONS:-1}"
CACHE_LOOKUPS="${BENCH_CACHE_LOOKUPS:-10000000}"
# One tokio worker each: the load generator and the registry then each keep one of the
# two cores busy and hand batches of calls to each other, instead of four threads waking
# each other per call (context switches per call 0.85 -> 0.2 in the registry, 1.1 -> 0.2
# in the client; bench/README.md).
CLIENT_THREADS="${BENCH_CLIENT_THREADS-1}"
REGISTRY_THREADS="${BENCH_REGISTRY_THREADS-1}"
TARGET_REGISTRY_RSS_MIB=500

[[ "$MACHINES" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_MACHINES must be a positive integer" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WORK=""
SERVER_PID=""
STEP_PID=""
cleanup() {
    local rc=$?
    # A step still running (interrupted run): stop it first (timeout passes TERM on).
    if [[ -n "$STEP_PID" ]] && kill -0 "$STEP_PID" 2>/dev/null; then
        kill -TERM "$STEP_PID" 2>/dev/null || true
        wait "$STEP_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Give it its shutdown grace, then make sure.
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -n "$WORK" && -f "$WORK/registry.log" ]]; then
        echo "--- last lines of the registry log ---" >&2
        tail -n 20 "$WORK/registry.log" >&2 || true
    fi
    if [[ -n "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK="$(mktemp -d -t registry-bench.XXXXXX)"
mkdir -p "$WORK/data"

step() { printf '\n== %s\n' "$*"; }

# run_step OUT CMD...: runs CMD in the background with stdout to OUT, waits for it (a
# wait that a signal interrupts, so Ctrl-C stops the run at once), then prints OUT.
run_step() {
    local out=$1 rc=0
    shift
    "$@" >"$out" &
    STEP_PID=$!
    wait "$STEP_PID" || rc=$?
    STEP_PID=""
    cat "$out"
    return "$rc"
}

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${BENCH_BIN_DIR:-}" ]]; then
    step "build (release)"
    timeout 3600 cargo build --release -p hardware-api --bins
fi
BIN_DIR="${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
API="$BIN_DIR/hardware-api"
BENCH="$BIN_DIR/hardware-bench"
for b in "$API" "$BENCH"; do
    [[ -x "$b" ]] || { echo "missing $b (build failed?)" >&2; exit 1; }
done

TOKEN="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

step "start the registry (redb store in $WORK/data)"
# Port 0: the kernel picks a free loopback port; the registry logs the one it got.
REGISTRY_ARGS=()
if [[ -n "$REGISTRY_THREADS" ]]; then
    REGISTRY_ARGS=(--worker-threads "$REGISTRY_THREADS")
fi
# The admin listener (/metrics) on a free port, so it never collides with a running registry.
HARDWARE_API_ADMIN_LISTEN=127.0.0.1:0 HARDWARE_API_TOKENS="write:$TOKEN" "$API" "${REGISTRY_ARGS[@]}" \
    --store redb --data-dir "$WORK/data" --listen 127.0.0.1:0 --log-format json \
    >"$WORK/registry.log" 2>&1 &
SERVER_PID=$!
echo "registry pid $SERVER_PID"

ADDR=""
for _ in $(seq 1 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "the registry exited during start-up" >&2
        exit 1
    fi
    ADDR="$(grep -o '"message":"listening"[^}]*' "$WORK/registry.log" 2>/dev/null \
        | grep -o '"addr":"127\.0\.0\.1:[0-9]*"' | head -n1 | cut -d'"' -f4 || true)"
    [[ -n "$ADDR" ]] && break
    sleep 0.1
done
[[ -n "$ADDR" ]] || { echo "the registry did not report a listening address within 10 s" >&2; exit 1; }
# Listening is logged just before serving; make sure the port accepts connections.
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null && break
    sleep 0.1
done
echo "registry listening on $ADDR"

CLIENT_ARGS=()
if [[ -n "$CLIENT_THREADS" ]]; then
    CLIENT_ARGS=(--worker-threads "$CLIENT_THREADS")
fi

export IRONBOOT_REGISTRY="http://$ADDR"
export IRONBOOT_REGISTRY_TOKEN="$TOKEN"

step "seed $MACHINES machines ($SEED_CONCURRENCY concurrent writers)"
run_step "$WORK/seed.out" timeout 1800 "$BENCH" "${CLIENT_ARGS[@]}" seed --count "$MACHINES" --concurrency "$SEED_CONCURRENCY"

read_rss() { # KEY (VmRSS or VmHWM) -> KiB
    awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"
}
echo "registry RSS after seeding: $(( $(read_rss VmRSS) / 1024 )) MiB"

step "gRPC GetHardware by MAC ($GRPC_CONCURRENCY concurrent clients, $GRPC_DURATION)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run_step "$WORK/grpc.out" timeout 120 "$BENCH" "${CLIENT_ARGS[@]}" grpc --count "$MACHINES" --concurrency "$GRPC_CONCURRENCY" \
    --duration "$GRPC_DURATION" --connections "$GRPC_CONNECTIONS" --registry-pid "$SERVER_PID"

if [[ "${BENCH_SKIP_BASELINE:-0}" != 1 ]]; then
    step "baseline: gRPC health check, same clients (the gRPC stack without store work)"
    run_step "$WORK/health.out" timeout 120 "$BENCH" "${CLIENT_ARGS[@]}" grpc --rpc health --concurrency "$GRPC_CONCURRENCY" \
        --duration "$GRPC_DURATION" --connections "$GRPC_CONNECTIONS" --registry-pid "$SERVER_PID"
else
    : >"$WORK/health.out"
fi

step "cache: full list+sync, by_mac lookups, RSS"
run_step "$WORK/cache.out" timeout 600 "$BENCH" "${CLIENT_ARGS[@]}" cache --count "$MACHINES" --lookups "$CACHE_LOOKUPS"

step "registry memory"
kill -0 "$SERVER_PID" 2>/dev/null || { echo "the registry died during the benchmark" >&2; exit 1; }
REG_RSS_KIB="$(read_rss VmRSS)"
REG_HWM_KIB="$(read_rss VmHWM)"
DB_BYTES="$(stat -c %s "$WORK/data/hardware.redb")"
REG_RSS_MIB="$(awk -v k="$REG_RSS_KIB" 'BEGIN { printf "%.1f", k / 1024 }')"
REG_HWM_MIB="$(awk -v k="$REG_HWM_KIB" 'BEGIN { printf "%.1f", k / 1024 }')"
echo "registry_rss_kib $REG_RSS_KIB"
echo "registry_peak_rss_kib $REG_HWM_KIB"
echo "registry_db_bytes $DB_BYTES"
if awk -v v="$REG_RSS_MIB" -v g="$TARGET_REGISTRY_RSS_MIB" 'BEGIN { exit !(v < g) }'; then REG_RESULT=PASS; else REG_RESULT=MISS; fi
echo "target registry_rss_mib $REG_RSS_MIB <$TARGET_REGISTRY_RSS_MIB $REG_RESULT"
echo "The registry holds $MACHINES machines in a $(( DB_BYTES / 1024 / 1024 )) MiB store file; its RSS is $REG_RSS_MIB MiB (peak $REG_HWM_MIB MiB)."

val() { # FILE METRIC
    awk -v m="$2" '$1 == m { print $2; exit }' "$1"
}
res() { # FILE TARGET -> PASS/MISS
    awk -v m="$2" '$1 == "target" && $2 == m { print $5; exit }' "$1"
}

step "summary ($MACHINES machines, $(nproc) cores; worker threads: registry ${REGISTRY_THREADS:-one per core}, client ${CLIENT_THREADS:-one per core})"
printf '%-42s %14s  %-12s %s\n' "figure" "value" "target" "result"
row() { printf '%-42s %14s  %-12s %s\n' "$1" "$2" "$3" "$4"; }
row "seed rate (machines/s)" "$(val "$WORK/seed.out" seed_machines_per_sec)" "-" ""
row "gRPC GetHardware by MAC (req/s)" "$(val "$WORK/grpc.out" grpc_lookups_per_sec)" ">= 20000" "$(res "$WORK/grpc.out" grpc_lookups_per_sec)"
row "gRPC latency p50 (us)" "$(val "$WORK/grpc.out" grpc_latency_p50_us)" "-" ""
row "gRPC latency p99 (us)" "$(val "$WORK/grpc.out" grpc_latency_p99_us)" "-" ""
row "gRPC errors" "$(val "$WORK/grpc.out" grpc_errors)" "0" ""
row "gRPC CPU/call: client (us)" "$(val "$WORK/grpc.out" grpc_client_cpu_us_per_req)" "-" ""
row "gRPC CPU/call: registry (us)" "$(val "$WORK/grpc.out" grpc_registry_cpu_us_per_req)" "-" ""
row "gRPC CPU-bound capacity (req/s)" "$(val "$WORK/grpc.out" grpc_cpu_bound_capacity_per_sec)" "-" ""
row "other processes' CPU during gRPC (%)" "$(val "$WORK/grpc.out" grpc_other_processes_cpu_percent)" "~0" ""
row "baseline: health checks (calls/s)" "$(val "$WORK/health.out" grpc_health_calls_per_sec)" "-" ""
row "baseline: CPU/call client+registry (us)" "$(val "$WORK/health.out" grpc_health_client_cpu_us_per_req)+$(val "$WORK/health.out" grpc_health_registry_cpu_us_per_req)" "-" ""
row "cache full list+sync (s)" "$(val "$WORK/cache.out" cache_sync_seconds)" "< 3" "$(res "$WORK/cache.out" cache_sync_seconds)"
row "cache by_mac lookup (ns/op, 1 thread)" "$(val "$WORK/cache.out" cache_lookup_ns)" "< 1000" "$(res "$WORK/cache.out" cache_lookup_ns)"
row "cache by_mac lookup (ns/op, all cores)" "$(val "$WORK/cache.out" cache_lookup_parallel_ns)" "-" ""
row "cache process RSS (MiB)" "$(awk -v k="$(val "$WORK/cache.out" cache_rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')" "-" ""
row "registry RSS (MiB)" "$REG_RSS_MIB" "< 500" "$REG_RESULT"
row "registry peak RSS (MiB)" "$REG_HWM_MIB" "-" ""
