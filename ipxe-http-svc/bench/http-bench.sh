#!/usr/bin/env bash
# ipxe-http-svc benchmark, next to nginx in the same run (loopback only).
#
#  1. scripts: wrk against /<mac>/auto.ipxe, a Lua script spreading requests over
#     BENCH_MACHINES registered machines (seeded into an in-memory hardware-api), versus
#     nginx serving a static file of the rendered script's size under the same URLs
#     (a regex location maps /<mac>/auto.ipxe to that file, so wrk runs the same Lua).
#  2. binary: wrk downloading ipxe.efi from /ipxe/ipxe.efi, versus nginx serving the
#     same file (sendfile on) at the same path.
# Targets (issue 5): script req/s >= 50% of nginx's static req/s; binary throughput
# >= nginx's. Both servers log nothing per request during the measurement (nginx
# access_log off, ipxe-http-svc --log warn); BENCH_LOG=info re-runs the script
# measurement with the service's request logs on, for the record.
# With BENCH_PIN=1 (default, 2+ cores) the servers run on the first half of the cores and
# wrk on the other half (taskset), so the load generator and the server under test do not
# steal each other's CPU; each server gets as many workers/threads as it has cores.
#
#   ipxe-http-svc/bench/http-bench.sh
#   BENCH_MACHINES=10000 BENCH_DURATION=10s BENCH_ROUNDS=3 BENCH_CONNECTIONS=64 ...
#   BENCH_SKIP_BUILD=1 to reuse target/release binaries.
# Prints figures and PASS/MISS per target; exits non-zero only if the run itself failed.
set -euo pipefail

MACHINES="${BENCH_MACHINES:-10000}"
DURATION="${BENCH_DURATION:-10s}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
BIN_CONNS="${BENCH_BINARY_CONNECTIONS:-16}"
PIN="${BENCH_PIN:-1}"
IPXE_EFI="${BENCH_IPXE_EFI:-/usr/lib/ipxe/ipxe.efi}"

[[ "$MACHINES" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_MACHINES must be a positive integer" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9]$ ]] || { echo "BENCH_ROUNDS must be 1..9" >&2; exit 2; }
for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian package $tool)" >&2; exit 1; }
done
[[ -r "$IPXE_EFI" ]] || { echo "missing $IPXE_EFI (Debian package ipxe, or set BENCH_IPXE_EFI)" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WORK=""
PIDS=()
stop_pid() { # PID: TERM, wait up to 5 s, then KILL
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ $rc -ne 0 && -n "$WORK" ]]; then
        for f in registry.log service.log nginx/error.log; do
            [[ -f "$WORK/$f" ]] && { echo "--- last lines of $f ---" >&2; tail -n 15 "$WORK/$f" >&2; }
        done
    fi
    [[ -n "$WORK" ]] && rm -rf -- "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NCPU="$(nproc)"
if [[ "$PIN" == 1 && "$NCPU" -ge 2 ]]; then
    HALF=$(( NCPU / 2 ))
    SERVER_CPUS="0-$(( HALF - 1 ))"
    CLIENT_CPUS="$HALF-$(( NCPU - 1 ))"
    SERVER_N=$HALF
    CLIENT_N=$(( NCPU - HALF ))
    ON_SERVER=(taskset -c "$SERVER_CPUS")
    ON_CLIENT=(taskset -c "$CLIENT_CPUS")
else
    SERVER_N=$NCPU
    CLIENT_N=$NCPU
    ON_SERVER=()
    ON_CLIENT=()
fi
THREADS="${BENCH_THREADS:-$CLIENT_N}"

WORK="$(mktemp -d -t http-bench.XXXXXX)"
# nginx workers run as nobody: the document root must be readable by them.
chmod 755 "$WORK"
step() { printf '\n== %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL: until it answers 200, at most 30 s
    for _ in $(seq 1 300); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" == 200 ]] && return 0
        sleep 0.1
    done
    echo "no 200 from $1 within 30 s" >&2
    return 1
}
cpu_ticks() { # PID...: utime+stime of these processes
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        t=$(( t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat") ))
    done
    echo "$t"
}

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    step "build (release)"
    timeout 3600 cargo build --release -p ipxe-http-svc -p hardware-api --bins
fi
SVC="$ROOT/target/release/ipxe-http-svc"
API="$ROOT/target/release/hardware-api"
SEED="$ROOT/target/release/hardware-bench"
for b in "$SVC" "$API" "$SEED"; do
    [[ -x "$b" ]] || { echo "missing $b (build failed?)" >&2; exit 1; }
done

step "registry (memory store) with $MACHINES machines"
TOKEN="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REG_PORT="$(free_port)"
HARDWARE_API_TOKENS="write:$TOKEN" "$API" --store memory --listen "127.0.0.1:$REG_PORT" --log-format json \
    >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REG_PORT") 2>/dev/null && break
    sleep 0.1
done
export IRONBOOT_REGISTRY="http://127.0.0.1:$REG_PORT"
export IRONBOOT_REGISTRY_TOKEN="$TOKEN"
timeout 600 "$SEED" seed --count "$MACHINES" --concurrency 32 | grep -E '^seed_machines_per_sec|^Seeded' || true

step "files"
mkdir -p "$WORK/ipxe" "$WORK/www/ipxe"
cp -L "$IPXE_EFI" "$WORK/ipxe/ipxe.efi"
cp -L "$IPXE_EFI" "$WORK/www/ipxe/ipxe.efi"
chmod -R a+rX "$WORK/www"
EFI_BYTES="$(stat -c %s "$WORK/ipxe/ipxe.efi")"
echo "ipxe.efi: $EFI_BYTES bytes"

step "ipxe-http-svc"
SVC_PORT="$(free_port)"
start_service() { # LOG_LEVEL
    "${ON_SERVER[@]}" "$SVC" --listen "127.0.0.1:$SVC_PORT" --ipxe-dir "$WORK/ipxe" --link-roots "" \
        --log "$1" --log-format json >"$WORK/service.log" 2>&1 &
    SVC_PID=$!
    PIDS+=("$SVC_PID")
    wait_http "http://127.0.0.1:$SVC_PORT/healthz"
}
start_service warn
echo "ipxe-http-svc pid $SVC_PID on 127.0.0.1:$SVC_PORT"
mac_of() { # i -> the MAC hardware-bench gave machine i
    printf '02:00:%02x:%02x:%02x:%02x' $(( ($1 >> 24) & 255 )) $(( ($1 >> 16) & 255 )) $(( ($1 >> 8) & 255 )) $(( $1 & 255 ))
}
curl -sf -o "$WORK/sample.ipxe" "http://127.0.0.1:$SVC_PORT/$(mac_of "$MACHINES")/auto.ipxe"
SCRIPT_BYTES="$(stat -c %s "$WORK/sample.ipxe")"
head -c 1 "$WORK/sample.ipxe" | grep -q '#' || { echo "the sample script is not a script" >&2; exit 1; }
echo "a rendered script: $SCRIPT_BYTES bytes"
cp "$WORK/sample.ipxe" "$WORK/www/auto.ipxe"
chmod a+r "$WORK/www/auto.ipxe"

step "nginx (its own prefix in $WORK/nginx)"
NGX_PORT="$(free_port)"
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $SERVER_N;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $WORK/www;
        location ~ ^/[^/]+/auto\.ipxe\$ { default_type text/plain; try_files /auto.ipxe =404; }
        location / { }
    }
}
EOF
"${ON_SERVER[@]}" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGX_PID=$!
PIDS+=("$NGX_PID")
wait_http "http://127.0.0.1:$NGX_PORT/ipxe/ipxe.efi"
NGX_ALL=("$NGX_PID" $(cat /proc/"$NGX_PID"/task/*/children 2>/dev/null))
echo "nginx pid $NGX_PID (workers: ${NGX_ALL[*]:1})"

cat >"$WORK/macs.lua" <<EOF
-- Requests spread over the registered machines (hardware-bench's MAC scheme).
local n = $MACHINES
local paths = {}
for i = 1, n do
  paths[i] = string.format("/02:00:%02x:%02x:%02x:%02x/auto.ipxe",
    math.floor(i / 16777216) % 256, math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(n)])
end
EOF

TICK_HZ="$(getconf CLK_TCK)"
run_wrk() { # NAME CONNS URL [LUA] -> prints "req_s bytes_s cpu_us_per_req"; PIDs to measure in MEASURE
    local name=$1 conns=$2 url=$3 lua=${4:-} out t0 t1 args=()
    [[ -n "$lua" ]] && args=(-s "$lua")
    t0="$(cpu_ticks "${MEASURE[@]}")"
    out="$(timeout 120 "${ON_CLIENT[@]}" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency "${args[@]}" "$url")"
    t1="$(cpu_ticks "${MEASURE[@]}")"
    echo "$out" >"$WORK/wrk-$name.txt"
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "$name: wrk saw non-2xx answers:" >&2
        grep 'Non-2xx' <<<"$out" >&2
        exit 1
    fi
    awk -v t0="$t0" -v t1="$t1" -v hz="$TICK_HZ" '
        function bytes(v) {
            if (v ~ /GB$/) return v * 1024 * 1024 * 1024; if (v ~ /MB$/) return v * 1024 * 1024;
            if (v ~ /KB$/) return v * 1024; return v + 0 }
        /^Requests\/sec:/ { r = $2 }
        /^Transfer\/sec:/ { b = bytes($2) }
        /^ +[0-9]+ requests in/ { n = $1 }
        /^ +99%/ { p99 = $2 }
        END { printf "%.0f %.0f %.1f %s\n", r, b, (n > 0 ? (t1 - t0) / hz * 1e6 / n : 0), p99 }' <<<"$out"
}

best() { # FILE -> the line with the highest first field
    sort -k1,1 -n -r "$1" | head -n1
}

if [[ ${#ON_SERVER[@]} -gt 0 ]]; then
    step "measure ($ROUNDS rounds of $DURATION; servers on CPUs $SERVER_CPUS, wrk -t$THREADS on CPUs $CLIENT_CPUS)"
else
    step "measure ($ROUNDS rounds of $DURATION; $NCPU cores shared by wrk -t$THREADS and the server)"
fi
: >"$WORK/svc-script"; : >"$WORK/ngx-script"; : >"$WORK/svc-bin"; : >"$WORK/ngx-bin"
for round in $(seq 1 "$ROUNDS"); do
    MEASURE=("$SVC_PID"); run_wrk "svc-script-$round" "$CONNS" "http://127.0.0.1:$SVC_PORT/" "$WORK/macs.lua" | tee -a "$WORK/svc-script"
    MEASURE=("${NGX_ALL[@]}"); run_wrk "ngx-script-$round" "$CONNS" "http://127.0.0.1:$NGX_PORT/" "$WORK/macs.lua" | tee -a "$WORK/ngx-script"
    MEASURE=("$SVC_PID"); run_wrk "svc-bin-$round" "$BIN_CONNS" "http://127.0.0.1:$SVC_PORT/ipxe/ipxe.efi" | tee -a "$WORK/svc-bin"
    MEASURE=("${NGX_ALL[@]}"); run_wrk "ngx-bin-$round" "$BIN_CONNS" "http://127.0.0.1:$NGX_PORT/ipxe/ipxe.efi" | tee -a "$WORK/ngx-bin"
done

# Every script request was answered for a registered machine (404s would be refusals).
METRICS="$(curl -sf "http://127.0.0.1:$SVC_PORT/metrics")"
OK_SCRIPTS="$(awk -F' ' '/^http_requests_total\{route="script",status="200"\}/ { print $2 }' <<<"$METRICS")"
BAD_SCRIPTS="$(awk '/^http_requests_total\{route="script",status="[^2]/ { s += $2 } END { print s + 0 }' <<<"$METRICS")"
echo "script answers: ${OK_SCRIPTS:-0} x 200, $BAD_SCRIPTS other"
SVC_RSS_KIB="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$SVC_PID/status")"
SENDFILE_BYTES="$(awk '/^http_sendfile_bytes_total / { printf "%.0f", $2 }' <<<"$METRICS")"
echo "binary bytes sent with sendfile: ${SENDFILE_BYTES:-0}"

LOGGED=""
if [[ "${BENCH_LOG:-}" == info ]]; then
    step "scripts again with request logs on (info, JSON to a file)"
    stop_pid "$SVC_PID"
    start_service info
    MEASURE=("$SVC_PID"); LOGGED="$(run_wrk svc-script-logged "$CONNS" "http://127.0.0.1:$SVC_PORT/" "$WORK/macs.lua")"
    echo "$LOGGED"
fi

read -r S_RPS _ S_CPU S_P99 < <(best "$WORK/svc-script")
read -r N_RPS _ N_CPU N_P99 < <(best "$WORK/ngx-script")
read -r SB_RPS SB_BPS SB_CPU SB_P99 < <(best "$WORK/svc-bin")
read -r NB_RPS NB_BPS NB_CPU NB_P99 < <(best "$WORK/ngx-bin")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r >= g ? "PASS" : "MISS") }'; }
SR="$(ratio "$S_RPS" "$N_RPS")"
BR="$(ratio "$SB_BPS" "$NB_BPS")"
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

step "summary ($MACHINES machines, $NCPU cores, pinned: $PIN, best of $ROUNDS x $DURATION)"
printf '%-44s %14s %14s %8s\n' "" "ipxe-http-svc" "nginx" "ratio"
printf '%-44s %14s %14s %8s\n' "scripts, req/s (c=$CONNS)" "$S_RPS" "$N_RPS" "$SR"
printf '%-44s %14s %14s\n' "scripts, p99 latency" "$S_P99" "$N_P99"
printf '%-44s %14s %14s\n' "scripts, server CPU µs/request" "$S_CPU" "$N_CPU"
printf '%-44s %14s %14s %8s\n' "ipxe.efi ($EFI_BYTES B), MiB/s (c=$BIN_CONNS)" "$(mib "$SB_BPS")" "$(mib "$NB_BPS")" "$BR"
printf '%-44s %14s %14s\n' "ipxe.efi, downloads/s" "$SB_RPS" "$NB_RPS"
printf '%-44s %14s %14s\n' "ipxe.efi, p99 latency" "$SB_P99" "$NB_P99"
printf '%-44s %14s %14s\n' "ipxe.efi, server CPU µs/download" "$SB_CPU" "$NB_CPU"
printf '%-44s %14s\n' "ipxe-http-svc RSS (KiB)" "$SVC_RSS_KIB"
[[ -n "$LOGGED" ]] && printf '%-44s %14s %14s %8s\n' "scripts with request logs on, req/s" "${LOGGED%% *}" "$N_RPS" "$(ratio "${LOGGED%% *}" "$N_RPS")"
echo "target script_req_ratio $SR >=0.50 $(verdict "$SR" 0.5)"
echo "target binary_throughput_ratio $BR >=1.00 $(verdict "$BR" 1.0)"
