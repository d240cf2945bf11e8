#!/usr/bin/env bash
# syslog-svc against rsyslog, measured the same way in the same run.
#
#   syslog-svc/bench/syslog-bench.sh            (as root; ~3–5 minutes)
#
# Both servers receive the same RFC 5424 messages with structured data (≈170 bytes, from
# syslog-loadgen) and write one JSON object per message to a file (rsyslog through a
# jsonf template with the same fields). Everything runs in a private network namespace
# (10.78.0.1 = server, 10.78.0.2 = the registered sender), so nothing reaches the host's
# network. Figures:
#   - the load generator's own ceiling (UDP GSO sends into a socket nobody reads), pinned to
#     the CPU it uses for every run (BENCH_LOADGEN_CPU, default the last one);
#   - UDP best lossless rate: a search over paced rates, each step BENCH_STEP_COUNT
#     messages or BENCH_STEP_SECS (default 3) seconds of them, whichever is more, so that
#     queues (ours 65,536 messages, rsyslog's main queue 100,000, plus the kernel buffer)
#     cannot pass a rate the server does not sustain: up from 50,000/s by ×1.25 until a
#     rate loses messages, then bisection between the last good and first bad rate down
#     to 5 %. A rate passes when every message sent was written and the generator
#     reached 95 % of it; a losing rate is retried once (a noisy trial is not the edge);
#   - UDP max: BENCH_MAX_COUNT messages unpaced — written/s and the share lost;
#   - TCP: BENCH_MAX_COUNT messages on one octet-counted connection, written/s;
#   - server CPU per message during the UDP max run.
# Both servers get the same kernel receive buffer (BENCH_RCVBUF bytes, default 8 MiB,
# forced past rmem_max: both run as root), printed as the kernel reports it (ss -m).
# Output files are truncated before every trial (both open them O_APPEND), so counting
# lines stays cheap; growth is watched by file size.
# Environment: BENCH_STEP_COUNT (default 500000), BENCH_STEP_SECS (default 3),
# BENCH_MAX_COUNT (default 400000),
# BENCH_RCVBUF, BENCH_LOADGEN_CPU, BENCH_BIN (directory of prebuilt syslog-svc,
# syslog-loadgen, hardware-api, hwctl: skips the build).
set -euo pipefail

[[ $EUID -eq 0 ]] || { echo "run as root (private network namespace, SO_RCVBUFFORCE)" >&2; exit 1; }
if [[ -z "${SYSLOG_BENCH_IN_NETNS:-}" ]]; then
  exec unshare --net env SYSLOG_BENCH_IN_NETNS=1 bash "$0" "$@"
fi
for bin in rsyslogd ip cargo; do
  command -v "$bin" >/dev/null || { echo "missing $bin (Debian: rsyslog, iproute2)" >&2; exit 1; }
done
RSYSLOGD=$(command -v rsyslogd)

ip link set lo up
ip addr add 10.78.0.1/32 dev lo
ip addr add 10.78.0.2/32 dev lo

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [[ -n "${BENCH_BIN:-}" ]]; then
  BIN=$BENCH_BIN
else
  echo "building release binaries…" >&2
  cargo build --release -q -p syslog-svc -p hardware-api
  BIN=$ROOT/target/release
fi

WORK=$(mktemp -d /tmp/syslog-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

MAX_COUNT=${BENCH_MAX_COUNT:-400000}
STEP_COUNT=${BENCH_STEP_COUNT:-500000}
STEP_SECS=${BENCH_STEP_SECS:-3}
RCVBUF=${BENCH_RCVBUF:-8388608}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-$(( $(nproc) - 1 ))}
loadgen() { taskset -c "$LOADGEN_CPU" "$BIN/syslog-loadgen" "$@"; }
UDP_PORT=5514 TCP_PORT=5515
RS_UDP=6514 RS_TCP=6515

# --- registry with the sender registered, so every message is attributed -------------
WTOKEN=bench-write-token-0123456789 RTOKEN=bench-read-token-0123456789
"$BIN/hardware-api" --store memory --listen 127.0.0.1:50099 --tokens "write:$WTOKEN,read:$RTOKEN" 2>"$WORK/registry.log" &
PIDS+=($!)
export IRONBOOT_REGISTRY=http://127.0.0.1:50099
for _ in $(seq 50); do IRONBOOT_REGISTRY_TOKEN=$WTOKEN "$BIN/hwctl" list >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$WORK/hw.yaml" <<YAML
apiVersion: ironboot/v1
kind: Hardware
name: bench-node
interfaces:
  - mac: 52:54:00:78:00:02
    dhcp: {ip: 10.78.0.2, netmask: 255.255.255.0, gateway: 10.78.0.254}
YAML
IRONBOOT_REGISTRY_TOKEN=$WTOKEN "$BIN/hwctl" apply -f "$WORK/hw.yaml" >/dev/null

# --- the two servers -------------------------------------------------------------------
OURS_OUT=$WORK/ours.jsonl
"$BIN/syslog-svc" --udp-listen 10.78.0.1:$UDP_PORT --tcp-listen 10.78.0.1:$TCP_PORT --http-listen 127.0.0.1:9599 \
  --output "$OURS_OUT" --rotate-size 100GiB --udp-recv-buffer "$RCVBUF" --registry-token "$RTOKEN" --log warn 2>"$WORK/ours.log" &
OURS_PID=$!
PIDS+=($OURS_PID)

RS_OUT=$WORK/rsyslog.jsonl
mkdir -p "$WORK/rs"
cat >"$WORK/rsyslog.conf" <<CONF
global(workDirectory="$WORK/rs" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="10.78.0.1" port="$RS_UDP" rcvbufSize="$RCVBUF")
input(type="imtcp" address="10.78.0.1" port="$RS_TCP")
template(name="json" type="list" option.jsonf="on") {
  property(outname="received" name="timegenerated" dateFormat="rfc3339" format="jsonf")
  property(outname="source" name="fromhost-ip" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
action(type="omfile" file="$RS_OUT" template="json" ioBufferSize="64k" flushOnTXEnd="on")
CONF
"$RSYSLOGD" -n -f "$WORK/rsyslog.conf" -i "$WORK/rsyslog.pid" 2>"$WORK/rsyslog.log" &
RS_PID=$!
PIDS+=($RS_PID)

lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
size() { if [[ -f $1 ]]; then stat -c %s "$1"; else echo 0; fi; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Wait until FILE has stopped growing for 1 s (60 s cap), watching its size (cheap: no
# reading while the servers work), then count its lines once.
# Prints "DELTA SECONDS_FROM_T0_TO_LAST_GROWTH".
wait_written() {
  local file=$1 base=$2 expected=$3 t0=$4 last=-1 last_t now n
  last_t=$(date +%s.%N)
  for _ in $(seq 1200); do
    n=$(size "$file")
    now=$(date +%s.%N)
    if (( n != last )); then last=$n; last_t=$now; fi
    if awk -v a="$now" -v b="$last_t" 'BEGIN{exit !(a-b > 1.0)}'; then break; fi
    sleep 0.05
  done
  echo "$(( $(lines "$file") - base )) $(awk -v a="$last_t" -v b="$t0" 'BEGIN{printf "%.3f", a-b}')"
}
# Kernel drops on the UDP socket bound to PORT (last column of /proc/net/udp).
kdrops() { awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" {print $NF}' /proc/net/udp; }

# Wait for both servers to take messages.
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:9599/healthz >/dev/null 2>&1 && break; sleep 0.1
done
warm() { # name udp_port file
  local base; base=$(lines "$3")
  loadgen udp "10.78.0.1:$2" 1000 20000 10.78.0.2 >/dev/null
  wait_written "$3" "$base" 1000 "$(date +%s.%N)" >/dev/null
}
warm ours $UDP_PORT "$OURS_OUT"; warm rsyslog $RS_UDP "$RS_OUT"
[[ $(lines "$OURS_OUT") -ge 1000 ]] || { echo "syslog-svc wrote nothing; see $WORK/ours.log" >&2; cat "$WORK/ours.log" >&2; exit 1; }
[[ $(lines "$RS_OUT") -ge 1000 ]] || { echo "rsyslog wrote nothing:" >&2; cat "$WORK/rsyslog.log" >&2; exit 1; }
grep -q '"machine":{' "$OURS_OUT" || { echo "syslog-svc did not attribute the sender" >&2; exit 1; }
echo "kernel receive buffers (ss -m rb): syslog-svc $(ss -uamn "sport = :$UDP_PORT" | grep -o 'rb[0-9]*' | head -1)," \
  "rsyslog $(ss -uamn "sport = :$RS_UDP" | grep -o 'rb[0-9]*' | head -1) (asked for $RCVBUF)"
echo "load generator alone (GSO sends into an unread socket, CPU $LOADGEN_CPU): $(loadgen udp sink 1000000 max)"

# One paced UDP trial of STEP_COUNT messages: prints "ok", "lost N" or "sender-limited"
# (the load generator could not reach 95% of the rate: the rate was not actually tested).
udp_trial() { # port file rate
  local count=$(( $3 * STEP_SECS > STEP_COUNT ? $3 * STEP_SECS : STEP_COUNT )) t0 res sent_rate d0 d1
  : >"$2"; d0=$(kdrops "$1"); t0=$(date +%s.%N)
  sent_rate=$(loadgen udp "10.78.0.1:$1" "$count" "$3" 10.78.0.2 | sed -n 's/.*rate=\([0-9]*\).*/\1/p')
  res=$(wait_written "$2" 0 "$count" "$t0"); d1=$(kdrops "$1")
  local got=${res%% *}
  if (( got != count )); then echo "lost $(( count - got )) (kernel dropped $(( d1 - d0 )); sent at $sent_rate/s)"
  elif (( sent_rate * 100 < $3 * 95 )); then echo "sender-limited (sent at $sent_rate/s)"
  else echo "ok (sent at $sent_rate/s)"; fi
}

LAST_FAIL=$WORK/last-fail
trial_retried() { # name port file rate → 0 when the rate passed
  local res
  res=$(udp_trial "$2" "$3" "$4")
  [[ $res == ok* ]] || res=$(udp_trial "$2" "$3" "$4")   # one retry: a noisy trial is not the edge
  echo "  $1 UDP $4/s: $res" >&2
  [[ $res == ok* ]] || echo "${res%% *}" >"$LAST_FAIL"
  [[ $res == ok* ]]
}

# Prints "BEST WHY": WHY is what failed at the edge — "lost" (the server lost messages)
# or "sender-limited" (the generator could not send faster: the server's edge is higher).
best_lossless() { # name port file
  local good=0 bad=0 r=50000 mid
  while trial_retried "$@" "$r"; do
    good=$r; r=$(( r * 5 / 4 ))
  done
  [[ $good -eq 0 ]] && { echo "0 $(cat "$LAST_FAIL")"; return; }
  bad=$r
  while (( (bad - good) * 20 > good )); do
    mid=$(( (good + bad) / 2 ))
    if trial_retried "$@" "$mid"; then good=$mid; else bad=$mid; fi
  done
  echo "$good $(cat "$LAST_FAIL")"
}

udp_max() { # port file pid → "written_rate loss_pct us_per_msg"
  local base=0 t0 c0 c1 res got secs
  : >"$2"; c0=$(cpu_ticks "$3"); t0=$(date +%s.%N)
  loadgen udp "10.78.0.1:$1" "$MAX_COUNT" max 10.78.0.2 >/dev/null
  res=$(wait_written "$2" "$base" "$MAX_COUNT" "$t0"); c1=$(cpu_ticks "$3")
  got=${res%% *}; secs=${res##* }
  awk -v g="$got" -v s="$secs" -v n="$MAX_COUNT" -v c="$(( c1 - c0 ))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.0f %.2f %.2f", g/s, 100*(n-g)/n, (g>0 ? c/hz*1e6/g : 0)}'
}

tcp_run() { # port file → "written_rate lost"
  local base=0 t0 res got secs
  : >"$2"; t0=$(date +%s.%N)
  loadgen tcp "10.78.0.1:$1" "$MAX_COUNT" max 10.78.0.2 >/dev/null
  res=$(wait_written "$2" "$base" "$MAX_COUNT" "$t0")
  got=${res%% *}; secs=${res##* }
  awk -v g="$got" -v s="$secs" -v n="$MAX_COUNT" 'BEGIN{printf "%.0f %d", g/s, n-g}'
}

echo "UDP lossless rate search (per rate $STEP_COUNT messages or $STEP_SECS s of them, whichever is more)…" >&2
read -r OURS_BEST OURS_WHY <<<"$(best_lossless syslog-svc $UDP_PORT "$OURS_OUT")"
read -r RS_BEST RS_WHY <<<"$(best_lossless rsyslog $RS_UDP "$RS_OUT")"
echo "UDP max and TCP…" >&2
read -r OURS_MAX OURS_LOSS OURS_CPU <<<"$(udp_max $UDP_PORT "$OURS_OUT" $OURS_PID)"
read -r RS_MAX RS_LOSS RS_CPU <<<"$(udp_max $RS_UDP "$RS_OUT" $RS_PID)"
read -r OURS_TCP OURS_TCP_LOST <<<"$(tcp_run $TCP_PORT "$OURS_OUT")"
read -r RS_TCP_RATE RS_TCP_LOST <<<"$(tcp_run $RS_TCP "$RS_OUT")"
OURS_RSS=$(awk '/VmHWM/{print $2}' /proc/$OURS_PID/status)
RS_RSS=$(awk '/VmHWM/{print $2}' /proc/$RS_PID/status)

echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews both columns)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f×", a/b; else print "n/a" }'; }
printf '\n%-36s %14s %14s %8s\n' "syslog, $(nproc) cores, same run" "syslog-svc" "rsyslog $("$RSYSLOGD" -v | awk 'NR==1{print $2}')" "ratio"
printf '%-36s %14s %14s %8s\n' "UDP best lossless rate (msg/s)" "$OURS_BEST" "$RS_BEST" "$(ratio "$OURS_BEST" "$RS_BEST")"
printf '%-36s %14s %14s\n' "  the next rate up failed by" "$OURS_WHY" "$RS_WHY"
printf '%-36s %14s %14s %8s\n' "UDP max, written (msg/s)" "$OURS_MAX" "$RS_MAX" "$(ratio "$OURS_MAX" "$RS_MAX")"
printf '%-36s %13s%% %13s%%\n' "UDP max, lost" "$OURS_LOSS" "$RS_LOSS"
printf '%-36s %14s %14s %8s\n' "UDP max, server CPU (µs/msg; ratio ÷)" "$OURS_CPU" "$RS_CPU" "$(ratio "$RS_CPU" "$OURS_CPU")"
printf '%-36s %14s %14s %8s\n' "TCP, written (msg/s)" "$OURS_TCP" "$RS_TCP_RATE" "$(ratio "$OURS_TCP" "$RS_TCP_RATE")"
printf '%-36s %14s %14s\n' "TCP, lost" "$OURS_TCP_LOST" "$RS_TCP_LOST"
printf '%-36s %14s %14s\n' "peak RSS (KiB)" "$OURS_RSS" "$RS_RSS"
awk -v a="$OURS_BEST" -v b="$RS_BEST" 'BEGIN{ exit !(b > 0 && a/b >= 1.5) }' \
  && echo "target (≥ 1.5× rsyslog's best lossless UDP rate): met" \
  || echo "target (≥ 1.5× rsyslog's best lossless UDP rate): NOT met"
