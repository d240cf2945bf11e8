# The lab both dhcp-svc benchmarks build (sourced by dhcp-bench.sh and dhcp-instr.sh):
# two network namespaces joined by a veth pair, the registered machines, a memory-store
# registry holding them. The caller sets SRV_NS CLI_NS SRV_IF CLI_IF SRV_IP CLI_IP
# REG_PORT WORK, the tokens WRITE_TOKEN READ_TOKEN, and has die() and a PIDS array
# (processes its cleanup stops); it deletes the namespaces in its cleanup.

# For commands run in the foreground. A background process is started with
# `ip netns exec` itself, so that `$!` is the process (ip execs it), not a subshell
# running a function, which would leave the process running when killed.
in_srv() { ip netns exec "$SRV_NS" "$@"; }
in_cli() { ip netns exec "$CLI_NS" "$@"; }

# Private copies of the binaries in DIR: a concurrent build replacing target/release
# mid-run changes nothing (hard links where possible: no disk space).
lab_bins() { # SRC_DIR DIR
    mkdir -p "$2"
    local b
    for b in dhcp-svc hardware-api hwctl; do
        [[ -x $1/$b ]] || die "$1/$b missing"
        ln -f "$1/$b" "$2/" 2>/dev/null || cp "$1/$b" "$2/"
    done
}

# SRV_NS (SRV_IP/24 on SRV_IF) <-veth-> CLI_NS (CLI_IP/24 on CLI_IF).
lab_netns() {
    ip netns add "$SRV_NS"
    ip netns add "$CLI_NS"
    ip link add "$SRV_IF" type veth peer name "$CLI_IF"
    ip link set "$SRV_IF" netns "$SRV_NS"
    ip link set "$CLI_IF" netns "$CLI_NS"
    ip -n "$SRV_NS" addr add "$SRV_IP/24" dev "$SRV_IF"
    ip -n "$CLI_NS" addr add "$CLI_IP/24" dev "$CLI_IF"
    local ns
    for ns in "$SRV_NS" "$CLI_NS"; do ip -n "$ns" link set lo up; done
    ip -n "$SRV_NS" link set "$SRV_IF" up
    ip -n "$CLI_NS" link set "$CLI_IF" up
}

# Machine i (1-based): MAC 52:54:0b:HH:MM:LL (i in hex), reserved IP 10.100.0.0 + i in
# 10.0.0.0/8 (which contains the relay address), hostname bench-NNNNNN. Writes DIR/
# hardware.yaml (hwctl), macs.txt (perfdhcp -M), dnsmasq-hosts and kea-reservations.json.
lab_machines() { # N DIR
    local n=$1 dir=$2
    mkdir -p "$dir"
    awk -v n="$n" -v dir="$dir" 'BEGIN {
        base = 10 * 16777216 + 100 * 65536
        yaml = dir "/hardware.yaml"; macs = dir "/macs.txt"; hosts = dir "/dnsmasq-hosts"; kea = dir "/kea-reservations.json"
        for (i = 1; i <= n; i++) {
            mac = sprintf("52:54:0b:%02x:%02x:%02x", int(i / 65536) % 256, int(i / 256) % 256, i % 256)
            a = base + i
            ip = sprintf("%d.%d.%d.%d", int(a / 16777216) % 256, int(a / 65536) % 256, int(a / 256) % 256, a % 256)
            name = sprintf("bench-%06d", i)
            printf "apiVersion: ironboot/v1\nkind: Hardware\nname: %s\ninterfaces:\n  - mac: %s\n    dhcp:\n      ip: %s\n      netmask: 255.0.0.0\n      gateway: 10.0.0.1\n      hostname: %s\n      name_servers: [10.0.0.1]\n---\n", name, mac, ip, name > yaml
            print mac > macs
            printf "%s,%s,%s\n", mac, ip, name > hosts
            printf "%s{\"hw-address\":\"%s\",\"ip-address\":\"%s\",\"hostname\":\"%s\"}\n", (i > 1 ? "," : ""), mac, ip, name > kea
        }
    }'
}

# A fresh memory-store hardware-api in SRV_NS on 127.0.0.1:REG_PORT (PID in REG_PID,
# also added to PIDS), holding exactly the N machines of DIR/hardware.yaml. Extra
# arguments go before the commands (e.g. taskset -c 1).
lab_registry() { # N DIR LOG_PREFIX [WRAPPER...]
    local n=$1 dir=$2 log=$3
    shift 3
    ip netns exec "$SRV_NS" "$@" "$BIN/hardware-api" --store memory --listen "127.0.0.1:$REG_PORT" \
        --tokens "write:$WRITE_TOKEN,read:$READ_TOKEN" >"$log-registry.log" 2>&1 &
    REG_PID=$!
    PIDS+=("$REG_PID")
    for _ in $(seq 1 100); do
        in_srv ss -ltn "sport = :$REG_PORT" | grep -q LISTEN && break
        kill -0 "$REG_PID" 2>/dev/null || die "hardware-api exited: $(tail -5 "$log-registry.log")"
        sleep 0.1
    done
    in_srv "$@" "$BIN/hwctl" --registry "http://127.0.0.1:$REG_PORT" --registry-token "$WRITE_TOKEN" \
        apply -f "$dir/hardware.yaml" >"$log-apply.log" 2>&1 || die "hwctl apply failed: $(tail -5 "$log-apply.log")"
    local created
    created=$(grep -c ' created$' "$log-apply.log" || true)
    [[ $created == "$n" ]] || die "hwctl created $created of $n machines (see $log-apply.log)"
}
