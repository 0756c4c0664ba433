#!/usr/bin/env bash
# Compare steerdns with gdnsd, Knot DNS and PowerDNS (geoip backend) on the
# same geo+ECS query mix, one server at a time on one core, over loopback.
#
#   bench/compare.sh [-d SECONDS] [-r ROUNDS] [-s "steerdns gdnsd knot pdns"]
#                    [-g "dnsperf dnsload"] [-o RESULTS.tsv] [-n]
#
#   -d  seconds per measurement (default 10)
#   -r  rounds; servers are interleaved inside each round (default 3)
#   -s  servers to measure (default: all four)
#   -g  load drivers: dnsperf (primary, how the peers are usually measured)
#       and/or dnsload (bench/dnsload.rs, reports p50/p99) (default: both)
#   -o  also write every measurement as tab-separated lines to this file
#   -n  do not install missing peers (skip them instead)
#
# Environment: SERVER_CPU (default 0), CLIENT_CPU (default 1),
# DNSPERF_CLIENTS (4), DNSPERF_OUTSTANDING (256), DNSLOAD_SOCKETS (4),
# DNSLOAD_WINDOW (64).
#
# Each server is pinned to SERVER_CPU with one UDP worker; the load generator
# runs on CLIENT_CPU. Before any number is taken, `dnsload check` asks one
# query per continent (A and AAAA, with ECS), static names and an NXDOMAIN,
# and a server that answers wrong is not measured. All traffic is to
# 127.0.0.1. Every process started here is stopped on exit.
set -euo pipefail

DURATION=10
ROUNDS=3
SERVERS="steerdns gdnsd knot pdns"
DRIVERS="dnsperf dnsload"
TSV=""
INSTALL=1
while getopts "d:r:s:g:o:nh" opt; do
    case "$opt" in
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        s) SERVERS=$OPTARG ;;
        g) DRIVERS=$OPTARG ;;
        o) TSV=$OPTARG ;;
        n) INSTALL=0 ;;
        *) sed -n '2,25p' "$0"; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 && $DURATION -le 600 ]] || { echo "bad -d" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $ROUNDS -le 50 ]] || { echo "bad -r" >&2; exit 2; }
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-256}
DNSLOAD_SOCKETS=${DNSLOAD_SOCKETS:-4}
DNSLOAD_WINDOW=${DNSLOAD_WINDOW:-64}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d -t steerdns-bench.XXXXXX)
PIDS=()
SKIPPED=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# Configs, install, start/stop and the answer check: shared with bench/callgrind.sh.
# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"

# --- build -----------------------------------------------------------------
log "building steerdns and dnsload (release)"
(cd "$ROOT" && cargo build --release --quiet --bin steerdns --example dnsload)
STEERDNS=$ROOT/target/release/steerdns
DNSLOAD=$ROOT/target/release/examples/dnsload
MMDB=$ROOT/geoip/sample.mmdb

# --- install what is missing --------------------------------------------------
ACTIVE=()
for s in $SERVERS; do
    case "$s" in
        steerdns) ACTIVE+=(steerdns) ;;
        gdnsd) ensure_pkg gdnsd gdnsd && ACTIVE+=(gdnsd) || SKIPPED+=("gdnsd: not installable") ;;
        knot) ensure_pkg knotd knot knot-module-geoip && ACTIVE+=(knot) || SKIPPED+=("knot: knot/knot-module-geoip not installable") ;;
        pdns) ensure_pkg pdns_server pdns-server pdns-backend-geoip && ACTIVE+=(pdns) || SKIPPED+=("pdns: pdns-server/pdns-backend-geoip not installable") ;;
        *) echo "unknown server $s" >&2; exit 2 ;;
    esac
done
USE_DNSPERF=0
USE_DNSLOAD=0
for g in $DRIVERS; do
    case "$g" in
        dnsperf) if ensure_pkg dnsperf dnsperf; then USE_DNSPERF=1; else SKIPPED+=("driver dnsperf: not installable"); fi ;;
        dnsload) USE_DNSLOAD=1 ;;
        *) echo "unknown driver $g" >&2; exit 2 ;;
    esac
done
[[ $USE_DNSPERF -eq 1 || $USE_DNSLOAD -eq 1 ]] || { echo "no load driver" >&2; exit 1; }

"$DNSLOAD" gen --out "$TMP/queries.bin" --count 10000

cpu_ticks() { # cpu_ticks N -> "busy total" jiffies of cpuN
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

proc_ticks() { # proc_ticks PID -> user+system clock ticks of the process (all threads)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

busy_pct() { # busy_pct "b0 t0" "b1 t1"
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        dt = y[2] - x[2]; if (dt <= 0) { print "?"; exit } printf "%.0f", 100 * (y[1] - x[1]) / dt }'
}

# One measurement: prints "qps lost p50_us p99_us srv_busy cli_busy qps_per_cpu".
# srv_busy/cli_busy: how busy the two cores were (anything running on them,
# other tenants too); qps_per_cpu: answers per CPU-second that the server
# process itself used (user + system), which other load does not inflate.
measure() { # measure NAME DRIVER PID
    local s=$1 g=$2 pid=$3 port out s0 c0 s1 c1 qps lost p50 p99 avg p0 p1 answered
    port=$(port_of "$s")
    out=$TMP/$s/$g.out
    p0=$(proc_ticks "$pid")
    s0=$(cpu_ticks "$SERVER_CPU")
    c0=$(cpu_ticks "$CLIENT_CPU")
    if [[ $g == dnsperf ]]; then
        timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" dnsperf -B -d "$TMP/queries.bin" \
            -s 127.0.0.1 -p "$port" -l "$DURATION" -c "$DNSPERF_CLIENTS" \
            -q "$DNSPERF_OUTSTANDING" -t 2 >"$out" 2>&1 || true
        qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out")
        answered=$(awk '/Queries completed:/ { print $3 }' "$out")
        lost=$(awk '/Queries lost:/ { print $3 }' "$out")
        avg=$(awk '/Average Latency/ { printf "%.0f", $4 * 1e6 }' "$out")
        p50="avg=$avg"
        p99="-"
    else
        timeout $((DURATION + 30)) "$DNSLOAD" run --server "127.0.0.1:$port" --duration "$DURATION" \
            --sockets "$DNSLOAD_SOCKETS" --window "$DNSLOAD_WINDOW" --cpu "$CLIENT_CPU" \
            --queries "$TMP/queries.bin" >"$out" 2>&1 || true
        qps=$(awk '/^qps/ { print $2 }' "$out")
        p50=$(awk '/^qps/ { print $4 }' "$out")
        p99=$(awk '/^qps/ { print $6 }' "$out")
        lost=$(awk '/^sent/ { print $8 }' "$out")
        answered=$(awk '/^sent/ { print $6 }' "$out")
    fi
    s1=$(cpu_ticks "$SERVER_CPU")
    c1=$(cpu_ticks "$CLIENT_CPU")
    p1=$(proc_ticks "$pid")
    local per_cpu
    per_cpu=$(awk -v a="${answered:-0}" -v t=$((p1 - p0)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (t > 0) printf "%.0f", a * hz / t; else print 0 }')
    echo "${qps:-0} ${lost:-?} ${p50:-?} ${p99:-?} $(busy_pct "$s0" "$s1") $(busy_pct "$c0" "$c1") $per_cpu"
}

# --- run ------------------------------------------------------------------------
declare -A OK
for s in "${ACTIVE[@]}"; do
    "write_$s"
done
RESULTS=$TMP/results.tsv
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for s in "${ACTIVE[@]}"; do
        [[ ${OK[$s]:-1} == 0 ]] && continue
        start_server "$s"
        if ! verify "$s"; then
            log "$s answers wrong or not at all: not measured"
            SKIPPED+=("$s: failed the answer check (see above)")
            OK[$s]=0
            stop_server "$SERVER_PID"
            continue
        fi
        for g in dnsperf dnsload; do
            [[ $g == dnsperf && $USE_DNSPERF -eq 0 ]] && continue
            [[ $g == dnsload && $USE_DNSLOAD -eq 0 ]] && continue
            read -r qps lost p50 p99 sb cb pc < <(measure "$s" "$g" "$SERVER_PID")
            log "round $round $s $g: $qps q/s lost $lost latency $p50/$p99 us, cores busy $sb%/$cb%, $pc q per server cpu-s"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$s" "$g" "$qps" "$lost" "$p50" "$p99" "$sb/$cb" "$pc" >>"$RESULTS"
        done
        # The server must still answer correctly after the load.
        if ! "$DNSLOAD" check --server "127.0.0.1:$(port_of "$s")" >/dev/null 2>&1; then
            log "$s failed the answer check after load"
        fi
        stop_server "$SERVER_PID"
    done
done

# --- report ---------------------------------------------------------------------
echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
echo "commit:  $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "runs:    $ROUNDS x ${DURATION}s per server and driver, server on cpu $SERVER_CPU, load on cpu $CLIENT_CPU"
echo
if [[ -n $TSV ]]; then
    { printf 'round\tserver\tdriver\tqps\tlost\tp50_us\tp99_us\tcores_busy_pct\tq_per_server_cpu_s\n'; cat "$RESULTS"; } >"$TSV"
fi
awk -F'\t' '
    { k = $2 "\t" $3; n[k]++; v[k, n[k]] = $4; w[k, n[k]] = $9
      if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
    function median(arr, k,   i, j, t, a, c) {
        c = n[k]; for (i = 1; i <= c; i++) a[i] = arr[k, i] + 0
        for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    END {
        printf "%-9s %-8s %10s %10s %10s %14s  runs\n", "server", "driver", "median q/s", "min", "max", "q/server-cpu-s"
        for (i = 1; i <= m; i++) {
            k = order[i]; split(k, p, "\t"); lo = hi = v[k, 1] + 0
            for (j = 1; j <= n[k]; j++) { if (v[k, j] + 0 < lo) lo = v[k, j] + 0; if (v[k, j] + 0 > hi) hi = v[k, j] + 0 }
            med[k] = median(v, k); eff[k] = median(w, k)
            printf "%-9s %-8s %10.0f %10.0f %10.0f %14.0f  %d\n", p[1], p[2], med[k], lo, hi, eff[k], n[k]
        }
        print ""
        print "ratios of medians (q/s; q per server cpu-second):"
        for (i = 1; i <= m; i++) {
            k = order[i]; split(k, p, "\t")
            if (p[1] == "steerdns") continue
            s = "steerdns\t" p[2]
            if ((s in med) && med[k] > 0 && eff[k] > 0)
                printf "  steerdns/%-6s (%s): %.2f  %.2f\n", p[1], p[2], med[s] / med[k], eff[s] / eff[k]
        }
    }' "$RESULTS"
echo
echo "raw measurements (round server driver qps lost p50_us p99_us cores-busy%-server/client q-per-server-cpu-s):"
cat "$RESULTS"
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    echo
    echo "skipped:"
    printf '  %s\n' "${SKIPPED[@]}"
fi
