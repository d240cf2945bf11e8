#!/usr/bin/env bash
# tftp-bench: tftp-svc next to tftpd-hpa (and the async-tftp baseline) serving the same
# ipxe.efi on loopback, in the same run.
#
#   tftp-svc/bench/tftp-bench.sh            # full matrix: 1/50/500 clients × blksize 512/1468 × windowsize 1/8
#   CONC="1 50" WIN=8 tftp-svc/bench/tftp-bench.sh
#   CONC= SERVERS="ours async" tftp-svc/bench/tftp-bench.sh   # only the single-transfer HTTP comparison (async-tftp as control)
#   OURS_ARGS="--busy-poll 0" ...                     # extra tftp-svc flags (A/B runs)
#   CONC=500 BLK=1468 SERVERS="ours single hpa" ...   # "single": tftp-svc --single-port (as in containers)
#   RTPRIO=10 ...      # the single-transfer comparison under SCHED_FIFO (shared, loaded machine)
#
# Each server runs pinned to CPU 0 inside its own cpuacct cgroup (tftpd-hpa forks a
# process per transfer; the cgroup counts them all), the load client (tftp-load, async,
# one thread) pinned to CPU 1. Prints aggregate MB/s per server, ratios, and server CPU
# milliseconds per MB delivered. Needs root (cgroups), tftpd-hpa (in.tftpd); the HTTP
# comparison uses target/release/ipxe-http-svc (+ hardware-api as its registry) when
# built, or HTTP_URL, and nginx when installed.
# Bounded: every cell runs DURATION seconds (default 10) per server; throughput counts
# every byte delivered in that time (tftp-load --duration), finished transfers or not.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONC=${CONC-"1 50 500"}
BLK=${BLK:-"512 1468"}
WIN=${WIN:-"1 8"}
DURATION=${DURATION:-10}   # seconds per cell and server
CELL_TIMEOUT=$((DURATION + 30))
SERVERS=${SERVERS:-"ours hpa async"}
FILE=$(readlink -f /usr/lib/ipxe/ipxe.efi)
[[ -f $FILE ]] || { echo "tftp-bench: /usr/lib/ipxe/ipxe.efi missing (Debian package ipxe)" >&2; exit 1; }
command -v in.tftpd >/dev/null || [[ -x /usr/sbin/in.tftpd ]] || { echo "tftp-bench: in.tftpd (tftpd-hpa) missing" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "tftp-bench: run as root (cpuacct cgroups measure server CPU)" >&2; exit 1; }

[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -q -p tftp-svc --bins --example async-tftp-baseline
BIN=target/release
LOAD=$BIN/tftp-load

WORK=$(mktemp -d /tmp/tftp-bench.XXXXXX)
cp "$FILE" "$WORK/ipxe.efi"
# tftpd-hpa drops privileges (user tftp/nobody): the directory must be world-readable.
chmod 755 "$WORK"; chmod 644 "$WORK/ipxe.efi"
SIZE=$(stat -c %s "$WORK/ipxe.efi")
CGROOT=/sys/fs/cgroup/cpuacct
[[ -d $CGROOT ]] || CGROOT=/sys/fs/cgroup/unified
PIDS=()
CGS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # Our own children: wait until they have exited, so that their cgroups can go.
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for cg in "${CGS[@]}"; do
    # Transfer children of tftpd-hpa still in the group: ours to stop, by PID.
    if [[ -f $cg/cgroup.procs ]]; then
      while read -r p; do kill "$p" 2>/dev/null || true; done < "$cg/cgroup.procs"
      sleep 0.1
      for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.2; done  # killed servers leave the group when they have exited
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

cg_new() { local d=$CGROOT/tftp-bench-$$-$1; mkdir -p "$d"; echo "$d"; }  # runs in $( ): the caller records it in CGS
cg_ns() {  # CPU nanoseconds used by everything in the group
  if [[ -f $1/cpuacct.usage ]]; then cat "$1/cpuacct.usage"; else awk '/usage_usec/ {print $2*1000}' "$1/cpu.stat"; fi
}
# taskset execs the command, so `$!` of `$PIN0 cmd &` is the server's own PID.
if (( $(nproc) >= 2 )); then PIN0="taskset -c 0"; PIN1="taskset -c 1"; else PIN0=""; PIN1=""; fi

read -ra ours_args <<< "${OURS_ARGS:-}"
declare -A PORT=([ours]=16901 [hpa]=16902 [async]=16903 [single]=16904)
declare -A CG
start_server() {
  local name=$1 cg pid
  cg=$(cg_new "$name"); [[ " ${CGS[*]} " == *" $cg "* ]] || CGS+=("$cg")
  case $name in
    ours)  $PIN0 "$BIN/tftp-svc" --no-registry --listen "127.0.0.1:${PORT[ours]}" --admin-listen "" \
             --ipxe-dir "$WORK" --link-roots "" --max-transfers-per-client 5000 --log warn "${ours_args[@]}" 2>"$WORK/ours.log" & pid=$! ;;
    # Every transfer on the listening port, as behind a container's published port.
    single) $PIN0 "$BIN/tftp-svc" --no-registry --listen "127.0.0.1:${PORT[single]}" --admin-listen "" --single-port \
             --ipxe-dir "$WORK" --link-roots "" --max-transfers-per-client 5000 --log warn "${ours_args[@]}" 2>"$WORK/single.log" & pid=$! ;;
    hpa)   $PIN0 /usr/sbin/in.tftpd -L -s "$WORK" -a "127.0.0.1:${PORT[hpa]}" & pid=$! ;;
    async) $PIN0 "$BIN/examples/async-tftp-baseline" "127.0.0.1:${PORT[async]}" "$WORK/ipxe.efi" & pid=$! ;;
  esac
  PIDS+=("$pid")
  echo "$pid" > "$cg/cgroup.procs"
  CG[$name]=$cg
  SPID[$name]=$pid
}
declare -A SPID
# A fresh process of a server (for the single-transfer comparison after the matrix:
# async-tftp keeps retransmitting to the 500-client cell's vanished clients for minutes,
# and left running it failed some of the next single transfers after 15 s of silence).
restart_server() {
  local old=${SPID[$1]} p keep=()
  kill "$old" 2>/dev/null || true
  wait "$old" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ $p == "$old" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  start_server "$1"
}

for s in $SERVERS; do start_server "$s"; done
sleep 0.5
for s in $SERVERS; do
  "$LOAD" "127.0.0.1:${PORT[$s]}" ipxe.efi --expect "$WORK/ipxe.efi" >/dev/null || { echo "tftp-bench: $s does not serve" >&2; exit 1; }
done

echo "file ipxe.efi, $SIZE bytes; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s' "clients/blksize/window"
for s in $SERVERS; do printf '%18s' "$s MB/s (neg)"; done
for s in $SERVERS; do [[ $s == ours ]] || printf ' %11s' "ours/$s"; done
[[ " $SERVERS " == *" single "* && " $SERVERS " == *" hpa "* ]] && printf ' %11s' "single/hpa"
for s in $SERVERS; do printf ' %15s' "$s ms CPU/MB"; done
echo

declare -A MBPS CPUMB
for c in $CONC; do
  for b in $BLK; do
    for w in $WIN; do
      winarg=(); (( w > 1 )) && winarg=(--windowsize "$w")
      printf '%-22s' "$c/$b/$w"
      for s in $SERVERS; do
        before=$(cg_ns "${CG[$s]}")
        line=$($PIN1 timeout "$CELL_TIMEOUT" "$LOAD" "127.0.0.1:${PORT[$s]}" ipxe.efi --expect "$WORK/ipxe.efi" \
                 -c "$c" --duration "${DURATION}s" --blksize "$b" "${winarg[@]}" --rto 1s 2>/dev/null || true)
        after=$(cg_ns "${CG[$s]}")
        mbps=$(sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' <<<"$line"); mbps=${mbps:-0}
        bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$line"); bytes=${bytes:-0}
        failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line"); failed=${failed:-all}
        neg=$(sed -n 's/.*negotiated=\([0-9/]*\).*/\1/p' <<<"$line")
        MBPS[$s]=$mbps
        CPUMB[$s]=$(awk -v ns=$((after - before)) -v b="$bytes" 'BEGIN { if (b > 0) printf "%.1f", ns / 1e6 / (b / 1e6); else print "-" }')
        mark=""; [[ $failed != 0 ]] && mark="!"
        printf '%18s' "$mbps${mark} (${neg:-?})"
      done
      for s in $SERVERS; do
        [[ $s == ours ]] && continue
        printf ' %11s' "$(awk -v a="${MBPS[ours]:-0}" -v b="${MBPS[$s]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
      done
      [[ " $SERVERS " == *" single "* && " $SERVERS " == *" hpa "* ]] \
        && printf ' %11s' "$(awk -v a="${MBPS[single]}" -v b="${MBPS[hpa]}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
      for s in $SERVERS; do printf ' %15s' "${CPUMB[$s]}"; done
      echo
    done
  done
done
echo "(neg) = blksize/windowsize the server granted; ! = a transfer failed verification or errored"

# A single transfer at blksize 1468 + windowsize 8 against an HTTP download of the same file
# from ipxe-http-svc (the issue's target: within 2x), nginx as an extra reference.
# ipxe-http-svc has no --no-registry, and with no registry reachable every request waits
# for its lookup (10-80 ms measured): it gets an empty in-memory hardware-api (the client
# is unknown and served, the miss cached, as near to tftp-svc's --no-registry as it goes),
# or HTTP_REGISTRY.
median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
HTTP_SVC=${HTTP_SVC:-$BIN/ipxe-http-svc}
HTTP_NAMES=(); declare -A HTTP=()
if [[ -z ${HTTP_URL:-} && -x $HTTP_SVC ]]; then
  reg=${HTTP_REGISTRY:-}
  if [[ -z $reg && -x $BIN/hardware-api ]]; then
    HARDWARE_API_TOKENS="read:tftp-bench-token-$$" $PIN0 "$BIN/hardware-api" --store memory --listen 127.0.0.1:16906 \
      --log warn 2>"$WORK/registry.log" & PIDS+=($!)
    reg=http://127.0.0.1:16906
  fi
  mkdir -p "$WORK/http"; cp "$WORK/ipxe.efi" "$WORK/http/ipxe.efi"
  IRONBOOT_REGISTRY=${reg:-http://127.0.0.1:9} IRONBOOT_REGISTRY_TOKEN="tftp-bench-token-$$" $PIN0 "$HTTP_SVC" \
    --listen 127.0.0.1:16905 --ipxe-dir "$WORK/http" --link-roots "" --log warn 2>"$WORK/http.log" & PIDS+=($!)
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:16905/ipxe/ipxe.efi && break; sleep 0.2; done
  HTTP_NAMES+=(ipxe-http-svc); HTTP[ipxe-http-svc]=http://127.0.0.1:16905/ipxe/ipxe.efi
elif [[ -n ${HTTP_URL:-} ]]; then
  HTTP_NAMES+=("$HTTP_URL"); HTTP[$HTTP_URL]=$HTTP_URL
fi
if command -v nginx >/dev/null; then
  mkdir -p "$WORK/nginx/logs"
  cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:16904; root $WORK; }
}
EOF
  $PIN0 nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
  sleep 0.5
  HTTP_NAMES+=(nginx); HTTP[nginx]=http://127.0.0.1:16904/ipxe.efi
fi
# Client on the other CPU (as in the table), then on the servers' CPU: in this VM a
# cross-CPU wake-up costs far more than the work of a round trip, and TFTP has one round
# trip per window where HTTP streams. tftp-load three ways: blocking in recv (a thread
# wake-up per window); --spin, polling the socket like firmware (UEFI and iPXE poll the
# NIC and never sleep while they wait), one receive per datagram; and gro, polling with
# Linux UDP GRO, so a window sent as one GSO batch arrives in one receive, as TCP hands
# curl up to 100 KB at a time (a server that sends datagram by datagram gains nothing from it:
# async-tftp is the control). Ratios against the first HTTP server listed.
SPIN=${SPIN:-20ms}
REPS=${REPS:-20}
# Servers in this comparison: ours, and async-tftp (in memory, windowsize) as a control
# when it runs: a second TFTP server whose time moves with the same latency.
SINGLE=(ours); [[ " $SERVERS " == *" async "* ]] && SINGLE+=(async)
if [[ -n $CONC ]]; then
  for s in "${SINGLE[@]}"; do restart_server "$s"; done
  sleep 0.5
fi
# RTPRIO=N: servers and clients of this comparison run SCHED_FIFO N, so that other work on
# a shared machine (builds) neither delays their wake-ups nor preempts the polling client.
if [[ -n ${RTPRIO:-} ]]; then
  for p in "${PIDS[@]}"; do
    for q in "$p" $(cat /proc/"$p"/task/*/children 2>/dev/null); do chrt -a -f -p "$RTPRIO" "$q" >/dev/null || true; done
  done
  PIN0="chrt -f $RTPRIO $PIN0"; PIN1="chrt -f $RTPRIO $PIN1"
fi
# The lockstep protocol pays one round trip between the two CPUs per window, so its time
# follows this VM's cross-CPU latency, which moves with where the host puts the vCPUs
# (measured: a cache line's round trip 60-110 ns or 440-790 ns, seconds to minutes apart). Printed
# before and after the comparison, so each line can be read against it.
probe() {
  [[ -x $BIN/cpu-pair-probe ]] && (( $(nproc) >= 2 )) || return 0
  $BIN/cpu-pair-probe | awk -v when="$1" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "cross-CPU round trip %s (cpu-pair-probe): cache line %d ns, UDP over loopback %.1f us\n", when, v["line_ns"], v["udp_ns"] / 1000 }'
}
declare -A SINGLE_NAME=([ours]=tftp-svc [async]=async-tftp)
# Interleaved: every round downloads from each HTTP server and for each TFTP series in
# turn, so all series sample the same seconds of this VM (its cross-CPU latency, and
# HTTP's time too, moves within minutes); each figure is the median over REPS rounds.
# A round is the median of PER_ROUND downloads in one client process, each a whole
# exchange (a new TCP connection with `Connection: close`; a new RRQ and port), so that
# neither figure includes a client's start-up; tftp-load discards the data as curl
# -o /dev/null does. `fresh curl` is one download per curl process, as an operator
# timing `curl` sees it: ≈ 0.3 ms of curl's own start-up more than the warm figure.
PER_ROUND=${PER_ROUND:-3}
ms_of_curl() {
  local args=(); for _ in $(seq "$PER_ROUND"); do args+=(-o /dev/null "$1"); done
  $P curl -s -H 'Connection: close' -w '%{time_total}\n' "${args[@]}" | awk '{print $1 * 1000}' | median_ms
}
ms_of_fresh_curl() { $P curl -s -o /dev/null -w '%{time_total}\n' "$1" | awk '{print $1 * 1000}'; }
ms_of_tftp() {  # a failed transfer is reported, not fatal: the round's median stands on the rest
  local out
  out=$($P "$LOAD" "127.0.0.1:${PORT[$1]}" ipxe.efi -n "$PER_ROUND" --discard --blksize 1468 --windowsize 8 "${@:2}" 2>&1) ||
    echo "tftp-bench: $1 ${*:2}: a transfer failed: $(tr '\n' ' ' <<<"$out")" >&2
  sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$out"
}
for placement in "other CPU:$PIN1" "same CPU:$PIN0"; do
  label=${placement%%:*}; P=${placement#*:}
  # A polling client on the server's own CPU only takes the CPU from the server (and
  # under RTPRIO it starves it): no firmware shares a CPU with the server. Other CPU only.
  modes="block spin gro"; [[ $label == "same CPU" ]] && modes=block
  series=(); for h in "${HTTP_NAMES[@]}"; do series+=("http:$h"); done
  (( ${#HTTP_NAMES[@]} )) && series+=("fresh:${HTTP_NAMES[0]}")
  for s in "${SINGLE[@]}"; do for mode in $modes; do series+=("tftp:$s:$mode"); done; done
  declare -A SAMPLES=()
  if [[ $label == "other CPU" ]]; then probe before; fi
  for _ in $(seq "$REPS"); do
    for x in "${series[@]}"; do
      case $x in
        http:*) ms=$(ms_of_curl "${HTTP[${x#http:}]}") ;;
        fresh:*) ms=$(ms_of_fresh_curl "${HTTP[${x#fresh:}]}") ;;
        tftp:*:spin) s=${x#tftp:}; ms=$(ms_of_tftp "${s%:*}" --spin "$SPIN") ;;
        tftp:*:gro) s=${x#tftp:}; ms=$(ms_of_tftp "${s%:*}" --spin "$SPIN" --gro) ;;
        tftp:*) s=${x#tftp:}; ms=$(ms_of_tftp "${s%:*}") ;;
      esac
      SAMPLES[$x]+="$ms "
    done
  done
  line="single transfer, client on the $label, median of $REPS interleaved rounds of $PER_ROUND (load $(cut -d' ' -f1-3 /proc/loadavg)):"
  ref_ms=""; fresh_ms=""
  for x in "${series[@]}"; do
    ms=$(tr ' ' '\n' <<<"${SAMPLES[$x]}" | grep . | median_ms)
    case $x in
      http:*) line+=" HTTP ${x#http:} $ms ms;"; ref_ms=${ref_ms:-$ms} ;;
      fresh:*) line+=" HTTP ${x#fresh:} fresh curl $ms ms;"; fresh_ms=$ms ;;
      tftp:*) s=${x#tftp:}; line+=" ${SINGLE_NAME[${s%:*}]} 1468/8 (${s#*:}) $ms ms"
              [[ -n $ref_ms ]] && line+=" = $(awk -v t="$ms" -v h="$ref_ms" 'BEGIN { printf "%.2f", t / h }')x"
              [[ -n $fresh_ms ]] && line+=" ($(awk -v t="$ms" -v h="$fresh_ms" 'BEGIN { printf "%.2f", t / h }')x fresh)"
              line+=";" ;;
    esac
  done
  unset SAMPLES
  echo "$line (target <= 2x)"
  if [[ $label == "other CPU" ]]; then probe after; fi
done
