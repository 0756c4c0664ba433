#!/usr/bin/env bash
# AF_XDP listener vs socket path vs gdnsd, on a veth pair between two network
# namespaces this script creates (and always removes):
#
#   client ns (dnsperf, 10.78.0.2)  <-- veth -->  server ns (10.78.0.1): one server at a time
#
#   bench/xdp.sh [-d SECONDS] [-r ROUNDS] [-s "socket xdp xdp0 gdnsd"] [-n] [-R]
#
#   -d  seconds per measurement (default 10)
#   -r  rounds; servers interleaved inside each round (default 2)
#   -s  servers (default all four): steerdns socket path, steerdns with
#       server.xdp_interface (AF_XDP, default xdp_coalesce = "100us"), the
#       same with xdp_coalesce = "0s" (woken by every packet), gdnsd
#   -n  do not install missing packages (dnsperf, gdnsd, dnsutils)
#   -R  leave RPS off on the client's veth (the kernel default; see below)
#
# Environment: SERVER_CPU (0), CLIENT_CPU (1), DNSPERF_CLIENTS (4),
# DNSPERF_OUTSTANDING (256), NO_BUILD (1: skip the release build).
#
# Each server runs pinned to SERVER_CPU with one UDP worker (steerdns:
# udp_workers = 1; the veth has one queue, so one AF_XDP worker), dnsperf
# on CLIENT_CPU in the other namespace, the same zone and geo+ECS query mix
# as bench/compare.sh (bench/dnsload gen). Per server and round: one run at
# full speed (max q/s), then one at 50 % of that rate (dnsperf -Q), whose
# lost queries are reported, with dnsperf's average latency at both rates
# (at full speed it is mostly dnsperf's own queue of outstanding queries);
# then 3 s of one query at a time (dnsperf -c 1 -q 1), whose p50 and p99
# are the latency of a server that is not busy.
# "q per server cpu-s" is answers divided by the
# user+system time of the server process (/proc/PID/stat) during the run.
# Where the packet work is charged (tick accounting: a softirq is charged to
# the task it interrupts): on veth the transmitting CPU also runs the
# receiver's stack. A query's receive side (the IP stack for the socket
# servers, the XDP program and the copy into the UMEM for AF_XDP) runs on
# dnsperf's CPU, for every server alike. Without RPS the reply's receive
# side, dnsperf's whole UDP receive and wakeup, runs in the server's
# softirq and is charged to the server: on a real NIC it would be the
# other machine's work (~40 % of the AF_XDP server's CPU in perf). So by
# default the script sets RPS on the client's veth to CLIENT_CPU: dnsperf's
# receive runs on dnsperf's CPU. The server still pays for its transmit and
# for the RPS IPI. The same setup serves all servers; -R measures
# without it.
set -euo pipefail

DURATION=10
ROUNDS=2
SERVERS="socket xdp xdp0 gdnsd"
INSTALL=1
RPS=1
while getopts "d:r:s:nRh" opt; do
    case "$opt" in
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        s) SERVERS=$OPTARG ;;
        n) INSTALL=0 ;;
        R) RPS=0 ;;
        *) sed -n '2,43p' "$0"; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 600 ]] || { echo "bad -d" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $ROUNDS -le 50 ]] || { echo "bad -r" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench/xdp.sh: needs root (network namespaces, XDP)" >&2; exit 1; }
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-256}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d -t steerdns-xdp-bench.XXXXXX)
PIDS=()
SKIPPED=()
tag=$$
NS_S=sdbs$tag; NS_C=sdbc$tag
VETH_S=sdbs$tag; VETH_C=sdbc$tag
ADDR=10.78.0.1

cleanup() {
    set +e
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for ns in "$NS_S" "$NS_C"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for ns in "$NS_S" "$NS_C"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"

if [[ ${NO_BUILD:-0} != 1 ]]; then # NO_BUILD=1: use the release binaries as they are
    log "building steerdns and dnsload (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin steerdns --example dnsload)
fi
STEERDNS=$ROOT/target/release/steerdns
DNSLOAD=$ROOT/target/release/examples/dnsload
MMDB=$ROOT/geoip/sample.mmdb
STEERDNS_BENCH_CONFIG=1

ensure_pkg dnsperf dnsperf || { echo "dnsperf not installable" >&2; exit 1; }
ensure_pkg dig dnsutils || { echo "dig not installable" >&2; exit 1; }
ACTIVE=()
for s in $SERVERS; do
    case "$s" in
        socket | xdp | xdp0) ACTIVE+=("$s") ;;
        gdnsd) if ensure_pkg gdnsd gdnsd; then ACTIVE+=(gdnsd); else SKIPPED+=("gdnsd: not installable"); fi ;;
        *) echo "unknown server $s" >&2; exit 2 ;;
    esac
done

# --- namespaces ---------------------------------------------------------------
ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "$VETH_S" netns "$NS_S" type veth peer name "$VETH_C" netns "$NS_C"
ip -n "$NS_S" addr add "$ADDR/24" dev "$VETH_S"
ip -n "$NS_C" addr add 10.78.0.2/24 dev "$VETH_C"
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set "$VETH_S" up
ip -n "$NS_C" link set "$VETH_C" up
if [[ $RPS == 1 ]]; then
    # dnsperf's receive on dnsperf's CPU (see the header).
    printf '%x' $((1 << CLIENT_CPU)) | ip netns exec "$NS_C" tee "/sys/class/net/$VETH_C/queues/rx-0/rps_cpus" >/dev/null
fi

# --- configs: the peers' (bench/peers.sh), listening on the veth address ---------
write_steerdns
write_gdnsd
sed -i "s|127.0.0.1:$(port_of steerdns)|$ADDR:$(port_of steerdns)|" "$TMP/steerdns/steerdns.toml"
sed -i "s|127.0.0.1:$(port_of gdnsd)|$ADDR:$(port_of gdnsd)|" "$TMP/gdnsd/config"
for d in socket xdp xdp0; do mkdir -p "$TMP/$d" && cp "$TMP/steerdns/sample.mmdb" "$TMP/$d/"; done
cp "$TMP/steerdns/steerdns.toml" "$TMP/socket/steerdns.toml"
sed "s|^\[server\]$|[server]\nxdp_interface = \"$VETH_S\"|" "$TMP/steerdns/steerdns.toml" >"$TMP/xdp/steerdns.toml"
sed "s|^\[server\]$|[server]\nxdp_interface = \"$VETH_S\"\nxdp_coalesce = \"0s\"|" "$TMP/steerdns/steerdns.toml" >"$TMP/xdp0/steerdns.toml"
"$DNSLOAD" gen --out "$TMP/queries.bin" --count 10000

port() { case "$1" in socket | xdp | xdp0) port_of steerdns ;; gdnsd) port_of gdnsd ;; esac; }

start() { # start NAME; sets SERVER_PID
    local s=$1 d=$TMP/$1
    local wrap=(ip netns exec "$NS_S" env NO_COLOR=1 taskset -c "$SERVER_CPU")
    case "$s" in
        socket | xdp | xdp0) "${wrap[@]}" "$STEERDNS" serve --config "$d/steerdns.toml" >"$d/log" 2>&1 & ;;
        gdnsd) "${wrap[@]}" gdnsd -c "$d" start >"$d/log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

dig_c() { ip netns exec "$NS_C" dig +time=1 +tries=1 -p "$(port "$1")" "@$ADDR" "${@:2}" 2>&1 || true; }

# The same answers from every server, asked from the client namespace.
check() { # check NAME -> 0 when right
    local s=$1 out
    for _ in $(seq 1 40); do
        dig_c "$s" +short static.lb.example.com | grep -q '^192\.0\.2\.1$' && break
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.25
    done
    out=$(dig_c "$s" +short www.lb.example.com +subnet=81.2.69.0/24)
    [[ $out == 192.0.2.10 ]] || { log "$s: EU ECS answered '$out'"; return 1; }
    out=$(dig_c "$s" +short www.lb.example.com +subnet=216.160.83.0/24)
    [[ $out == 198.51.100.10 ]] || { log "$s: US ECS answered '$out'"; return 1; }
    dig_c "$s" nope.lb.example.com | grep -q 'status: NXDOMAIN' || { log "$s: no NXDOMAIN"; return 1; }
    if [[ $s == xdp* ]]; then
        grep -q 'listening proto=udp-xdp' "$TMP/$s/log" || { log "$s: listener not running"; tail -5 "$TMP/$s/log" >&2; return 1; }
    fi
    return 0
}

cpu_busy() { awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6 }' /proc/stat; }
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One dnsperf run; prints "qps completed lost q_per_server_cpu_s avg_latency_us
# q_per_busy_core_s" (the last: answers over the non-idle time of the
# server's CPU in /proc/stat, whatever ran there: a check on the process
# accounting, which samples at the tick).
measure() { # measure NAME PID [RATE]
    local s=$1 pid=$2 rate=${3:-} out=$TMP/$1/dnsperf.out p0 p1 c0 c1 qps done_ lost lat
    local limit=()
    [[ -n $rate ]] && limit=(-Q "$rate")
    p0=$(proc_ticks "$pid")
    c0=$(cpu_busy "$SERVER_CPU")
    timeout $((DURATION + 30)) ip netns exec "$NS_C" taskset -c "$CLIENT_CPU" dnsperf -B -d "$TMP/queries.bin" \
        -s "$ADDR" -p "$(port "$s")" -l "$DURATION" -c "$DNSPERF_CLIENTS" \
        -q "$DNSPERF_OUTSTANDING" -t 2 "${limit[@]}" >"$out" 2>&1 || true
    p1=$(proc_ticks "$pid")
    c1=$(cpu_busy "$SERVER_CPU")
    qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out")
    done_=$(awk '/Queries completed:/ { print $3 }' "$out")
    lost=$(awk '/Queries lost:/ { print $3 }' "$out")
    lat=$(awk '/Average Latency/ { printf "%.0f", $4 * 1e6 }' "$out")
    awk -v q="${qps:-0}" -v a="${done_:-0}" -v l="${lost:-?}" -v t=$((p1 - p0)) -v hz="$(getconf CLK_TCK)" -v us="${lat:-0}" -v c=$((c1 - c0)) \
        'BEGIN { printf "%s %s %s %.0f %s %.0f\n", q, a, l, (t > 0 ? a * hz / t : 0), us, (c > 0 ? a * hz / c : 0) }'
}

# One query at a time for 3 s (dnsperf, one client, one outstanding
# query, every latency printed); prints "p50_us p99_us".
one_at_a_time() { # one_at_a_time NAME
    local out=$TMP/$1/one.out
    timeout 30 ip netns exec "$NS_C" taskset -c "$CLIENT_CPU" dnsperf -B -d "$TMP/queries.bin" -s "$ADDR" \
        -p "$(port "$1")" -l 3 -c 1 -q 1 -t 1 -v >"$out" 2>&1 || true
    grep -q '^> ' "$out" || { log "$1: one query at a time: no answers"; tail -3 "$out" >&2; }
    awk '$1 == ">" { printf "%.0f\n", $NF * 1e6 }' "$out" | sort -n | awk '{ l[++n] = $1 }
        END { if (n == 0) print "? ?"; else print l[int((n - 1) * 0.5) + 1], l[int((n - 1) * 0.99) + 1] }'
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
declare -A BAD
for round in $(seq 1 "$ROUNDS"); do
    for s in "${ACTIVE[@]}"; do
        [[ ${BAD[$s]:-0} == 1 ]] && continue
        start "$s"
        if ! check "$s"; then
            log "$s answers wrong or not at all: not measured"
            SKIPPED+=("$s: failed the answer check")
            BAD[$s]=1
            stop_server "$SERVER_PID"
            continue
        fi
        read -r qps done_ lost eff lat core < <(measure "$s" "$SERVER_PID")
        half=$((qps / 2))
        read -r hqps hdone hlost heff hlat hcore < <(measure "$s" "$SERVER_PID" "$half")
        read -r p50 p99 < <(one_at_a_time "$s")
        log "round $round $s: max $qps q/s (lost $lost, avg $lat us), $eff q per server cpu-s; at 50 % ($half q/s): $hqps q/s, lost $hlost of $((hdone + hlost)), avg $hlat us, $heff q per server cpu-s; one at a time: p50 $p50 us, p99 $p99 us; q per busy core-s $core, at 50 % $hcore"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$qps" "$lost" "$eff" "$half" "$hlost" "$heff" "$lat" "$hlat" "$p50" "$p99" "$core" "$hcore" >>"$RESULTS"
        check "$s" || log "$s failed the answer check after load"
        stop_server "$SERVER_PID"
        if [[ $s == xdp* ]]; then
            grep -o 'xdp listener stopped.*' "$TMP/$s/log" | sed 's/^/   /' >&2 || true
            if ip -n "$NS_S" link show "$VETH_S" | grep -q 'prog/xdp'; then log "$s: program still attached after stop"; fi
        fi
    done
done

echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); kernel $(uname -r)"
echo "commit:  $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "runs:    $ROUNDS x ${DURATION}s per server (max, then 50 %), server on cpu $SERVER_CPU, dnsperf on cpu $CLIENT_CPU, veth, client rps $([[ $RPS == 1 ]] && echo "on (cpu $CLIENT_CPU)" || echo off)"
echo
awk -F'\t' '
    { k = $2; n[k]++; q[k, n[k]] = $3; e[k, n[k]] = $5; hl[k, n[k]] = $7; he[k, n[k]] = $8; la[k, n[k]] = $9; hla[k, n[k]] = $10; p5[k, n[k]] = $11; p9[k, n[k]] = $12; co[k, n[k]] = $13; hco[k, n[k]] = $14
      if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
    function median(arr, k,   i, j, t, a, c) {
        c = n[k]; for (i = 1; i <= c; i++) a[i] = arr[k, i] + 0
        for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    END {
        printf "%-7s %9s %15s %14s %11s %7s %11s %12s  runs\n", "server", "max q/s", "q/server-cpu-s", "@50%: q/cpu-s", "@50%: lost", "avg us", "@50%: avg us", "1-by-1 p50/p99 us"
        for (i = 1; i <= m; i++) {
            k = order[i]; lost = 0
            for (j = 1; j <= n[k]; j++) lost += hl[k, j]
            mq[k] = median(q, k); me[k] = median(e, k); mh[k] = median(he, k)
            printf "%-7s %9.0f %15.0f %14.0f %11d %7.0f %11.0f %8.0f/%-8.0f  %d\n", k, mq[k], me[k], mh[k], lost, median(la, k), median(hla, k), median(p5, k), median(p9, k), n[k]
        }
        print ""
        print "ratios of medians (q per server cpu-second at max; at 50 %):"
        for (i = 1; i <= m; i++) for (j = 1; j <= m; j++) {
            a = order[i]; b = order[j]
            if (a == b || a == "gdnsd" || (a == "socket" && b ~ /^xdp/) || (a == "xdp0" && b == "xdp")) continue
            if (me[b] > 0 && mh[b] > 0) printf "  %s/%s: %.2f  %.2f\n", a, b, me[a] / me[b], mh[a] / mh[b]
        }
        print ""
        print "cross-check, q per busy second of the server core (/proc/stat: all that ran there), at max; at 50 %:"
        for (i = 1; i <= m; i++) { k = order[i]; printf "  %-7s %8.0f  %8.0f\n", k, median(co, k), median(hco, k) }
    }' "$RESULTS"
echo
echo "raw (round server max_qps lost_at_max q_per_cpu_s_at_max rate_50 lost_at_50 q_per_cpu_s_at_50 avg_us avg_us_at_50 one_p50_us one_p99_us q_per_busy_core_s q_per_busy_core_s_at_50):"
cat "$RESULTS"
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    echo
    echo "skipped:"
    printf '  %s\n' "${SKIPPED[@]}"
fi
