#!/usr/bin/env bash
# Prober load benchmark: steerdns probing N loopback HTTP endpoints (served by
# the http_farm example) every 10 s, measured against the same N endpoints
# with the prober idle (no monitor).
#
#   bench/prober_load.sh [-n "100 1000 10000"] [-w SECONDS] [-r ROUNDS]
#                        [-p POOL_SIZE] [-i INTERVAL] [-t TIMEOUT] [-d DELAY_MS]
#                        [-o FILE.tsv]
#
#   -n  endpoint counts to measure (default "100 1000 10000")
#   -w  seconds per measurement window (default 30)
#   -r  rounds; each round measures every N with the prober on, then idle
#       (default 1)
#   -p  endpoints per pool (default 100, at most 250)
#   -i  monitor interval (default 10s)
#   -t  monitor timeout (default 2s)
#   -d  the farm answers each /health request after this many ms (default 0;
#       e.g. 1500 shows what slow endpoints do to the probe rate)
#   -o  also write every measurement as tab-separated lines to this file
#
# Environment: SERVER_CPU (default 0) pins steerdns (a list such as "0,1"
# gives it both cores), CLIENT_CPU (default 1) pins dnsload and the farm,
# SERVER_EXTRA adds lines to [server] (e.g. 'dns_cpus = "auto"'), STEERDNS_BIN
# runs another steerdns binary (a build of an older commit), NO_BUILD=1 uses
# the binaries already built. Everything listens on loopback only:
# steerdns on 127.77.1.1 (DNS :5353, HTTP API :9153), the farm on
# 127.77.0.1-40 from port 20000.
#
# For each N and mode, two windows of -w seconds each:
#   quiet  no DNS load: steerdns CPU, RSS, probes/s (the prober's own cost)
#   loaded dnsload run --cpu CLIENT_CPU against steerdns: DNS q/s, q per
#          steerdns CPU-second, q per CPU-second of its DNS threads
#          (dns-udp-N, steerdns-tcp), probes/s (does probing slow
#          answering?)
# With the prober on, the windows start once every endpoint has a probe
# result (bounded wait). At the end every endpoint must be "up".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNTS="100 1000 10000"
WINDOW=30
ROUNDS=1
POOL_SIZE=100
INTERVAL=10s
TIMEOUT=2s
TSV=""
DELAY_MS=0
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HOST=127.77.1.1
DNS_PORT=5353
HTTP_PORT=9153
FARM_NET=127.77.0
FARM_IPS=40
FARM_PORT=20000

while getopts "n:w:r:p:i:t:d:o:h" opt; do
    case "$opt" in
        n) COUNTS=$OPTARG ;;
        w) WINDOW=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        p) POOL_SIZE=$OPTARG ;;
        i) INTERVAL=$OPTARG ;;
        t) TIMEOUT=$OPTARG ;;
        d) DELAY_MS=$OPTARG ;;
        o) TSV=$OPTARG ;;
        *) sed -n '2,32p' "$0"; exit 2 ;;
    esac
done
if ((POOL_SIZE < 1 || POOL_SIZE > 250)); then
    echo "-p must be 1..250" >&2
    exit 2
fi
interval_s=${INTERVAL%s}
timeout_s=${TIMEOUT%s}
[[ $interval_s =~ ^[0-9]+$ && $timeout_s =~ ^[0-9]+$ ]] || {
    echo "-i and -t take whole seconds, like 10s" >&2
    exit 2
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-prober.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
    local p=$1
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=() q
    for q in "${PIDS[@]}"; do
        [[ $q == "$p" ]] || keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

# --- build ----------------------------------------------------------------------
if [[ -z ${NO_BUILD:-} ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --quiet --bin steerdns --example dnsload --example http_farm)
fi
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
STEERDNS=${STEERDNS_BIN:-$TARGET_DIR/release/steerdns}
SERVER_EXTRA=${SERVER_EXTRA:-}
DNSLOAD=$TARGET_DIR/release/examples/dnsload
FARM=$TARGET_DIR/release/examples/http_farm

# Room for probe sockets, the farm's listeners and connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HZ=$(getconf CLK_TCK)
"$DNSLOAD" gen --out "$TMP/queries.bin" --count 10000

# --- config ---------------------------------------------------------------------
# write_config N MODE FILE: the example zone and www name of
# config/example.toml (without its "lab" health-check demo), plus N endpoints
# in pools of POOL_SIZE, each answered with a documentation address; with
# MODE=on they are probed over HTTP at the farm's addresses.
write_config() {
    local n=$1 mode=$2 out=$3 pools p i j addr
    cp "$ROOT/geoip/sample.mmdb" "$(dirname "$out")/sample.mmdb"
    sed -n '1,/^# Health checks/p' "$ROOT/config/example.toml" | sed '$d' |
        sed -e 's|^database = .*|database = "sample.mmdb"|' \
            -e "s|^dns_listen = .*|dns_listen = [\"$HOST:$DNS_PORT\"]\\nhttp_listen = \"$HOST:$HTTP_PORT\"|" \
            -e "s|^udp_workers = .*|udp_workers = 1${SERVER_EXTRA:+\\n$SERVER_EXTRA}|" >"$out"
    mapfile -t addrs <"$TMP/farm-$n.addrs"
    {
        if [[ $mode == on ]]; then
            printf '\n[monitors.farm]\ntype = "http"\npath = "/health"\ninterval = "%s"\ntimeout = "%s"\n' \
                "$INTERVAL" "$TIMEOUT"
        fi
        pools=$(((n + POOL_SIZE - 1) / POOL_SIZE))
        i=0
        for ((p = 0; p < pools; p++)); do
            printf '\n[pools.f%04d]\n' "$p"
            [[ $mode == on ]] && printf 'monitor = "farm"\n'
            printf 'endpoints = [\n'
            for ((j = 0; j < POOL_SIZE && i < n; j++, i++)); do
                addr=${addrs[$i]}
                if [[ $mode == on ]]; then
                    printf '  { address = "198.51.100.%d", probe_address = "%s", probe_port = %s },\n' \
                        $((j + 1)) "${addr%:*}" "${addr##*:}"
                else
                    printf '  { address = "198.51.100.%d" },\n' $((j + 1))
                fi
            done
            printf ']\n\n[names."f%04d.lb.example.com"]\npolicy = "failover"\npools = ["f%04d"]\n' "$p" "$p"
        done
    } >>"$out"
}

# --- measurements -----------------------------------------------------------------
# ctxsw PID: context switches (voluntary + involuntary) of all its threads.
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches:/ { s += $2 } END { print s + 0 }'; }
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# dns_ticks PID: CPU ticks of its DNS threads (dns-udp-N, steerdns-tcp).
dns_ticks() {
    cat /proc/"$1"/task/*/stat 2>/dev/null |
        awk '/\((dns-udp|steerdns-tcp)/ { sub(/^.*\) /, ""); s += $12 + $13 } END { print s + 0 }'
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
metrics() { curl -sf --max-time 10 "http://$HOST:$HTTP_PORT/metrics"; }
# metric_sum FILE NAME: sum of every sample of NAME (all label sets).
metric_sum() {
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.6f\n", s + 0 }' "$1"
}
# farm_states: "up down unknown" over the farm pools (f*), from the API.
farm_states() {
    curl -sf --max-time 30 "http://$HOST:$HTTP_PORT/api/v1/status" |
        jq -r '[.pools[] | select(.name | startswith("f")) | .endpoints[].state]
               | "\(map(select(. == "up")) | length) \(map(select(. == "down")) | length) \(map(select(. == "unknown")) | length)"'
}
# metrics_up FILE: farm endpoints with steerdns_endpoint_up == 1.
metrics_up() { awk '/^steerdns_endpoint_up\{/ && /pool="f[0-9]/ && $NF == 1 { c++ } END { print c + 0 }' "$1"; }
farm_health() { curl -sf --max-time 10 "http://$FARM_NET.1:$FARM_PORT/stats" | awk '{ print $4 }'; }

# window PID KIND N MODE: measure one window; prints a result line.
window() {
    local pid=$1 kind=$2 n=$3 mode=$4 t0 t1 x0 x1 m0=$TMP/m0 m1=$TMP/m1 f0 f1 w0 w1 qps="-" lost="-" answered=0
    metrics >"$m0"
    f0=$(farm_health)
    t0=$(proc_ticks "$pid")
    d0=$(dns_ticks "$pid")
    x0=$(ctxsw "$pid")
    w0=$(date +%s.%N)
    if [[ $kind == loaded ]]; then
        timeout $((WINDOW + 30)) "$DNSLOAD" run --server "$HOST:$DNS_PORT" --duration "$WINDOW" \
            --sockets 4 --window 64 --cpu "$CLIENT_CPU" --queries "$TMP/queries.bin" \
            >"$TMP/dnsload.out" 2>&1 || true
        qps=$(awk '/^qps/ { print $2 }' "$TMP/dnsload.out")
        lost=$(awk '/^sent/ { print $8 }' "$TMP/dnsload.out")
        answered=$(awk '/^sent/ { print $6 }' "$TMP/dnsload.out")
    else
        sleep "$WINDOW"
    fi
    t1=$(proc_ticks "$pid")
    d1=$(dns_ticks "$pid")
    x1=$(ctxsw "$pid")
    w1=$(date +%s.%N)
    f1=$(farm_health)
    metrics >"$m1"
    local c0 c1 s0 s1 e0 e1 rss hwm fds threads
    c0=$(metric_sum "$m0" steerdns_probe_duration_seconds_count)
    c1=$(metric_sum "$m1" steerdns_probe_duration_seconds_count)
    s0=$(metric_sum "$m0" steerdns_probe_duration_seconds_sum)
    s1=$(metric_sum "$m1" steerdns_probe_duration_seconds_sum)
    e0=$(metric_sum "$m0" steerdns_probe_failures_total)
    e1=$(metric_sum "$m1" steerdns_probe_failures_total)
    rss=$(status_kb "$pid" VmRSS)
    hwm=$(status_kb "$pid" VmHWM)
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    threads=$(status_kb "$pid" Threads)
    awk -v n="$n" -v mode="$mode" -v kind="$kind" -v dt="$(echo "$w1 - $w0" | bc -l)" \
        -v ticks=$((t1 - t0)) -v hz="$HZ" -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" \
        -v e0="$e0" -v e1="$e1" -v f0="${f0:-0}" -v f1="${f1:-0}" -v rss="$rss" -v hwm="$hwm" \
        -v qps="${qps:--}" -v lost="${lost:--}" -v answered="${answered:-0}" -v fds="$fds" -v th="$threads" -v cs=$((x1 - x0)) -v dticks=$((d1 - d0)) \
        'BEGIN {
            cpu = ticks / hz; probes = c1 - c0; dcpu = dticks / hz
            printf "%d\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%d\t%d\t%.0f\t%s\n",
                n, mode, kind, probes / dt, (f1 - f0) / dt, 100 * cpu / dt, e1 - e0,
                (probes > 0 ? 1000 * (s1 - s0) / probes : 0), rss / 1024, hwm / 1024, qps,
                ((cpu > 0 && answered > 0) ? sprintf("%.0f", answered / cpu) : "-"), lost, fds, th, cs / dt,
                ((dcpu > 0 && answered > 0) ? sprintf("%.0f", answered / dcpu) : "-")
        }'
}

# --- run --------------------------------------------------------------------------
RESULTS=$TMP/results.tsv
: >"$RESULTS"
NOTES=()
for round in $(seq 1 "$ROUNDS"); do
    for n in $COUNTS; do
        # One farm per N, for both modes; it stops by itself if we do not.
        farm_secs=$((4 * WINDOW + 2 * interval_s + 300))
        rm -f "$TMP/farm-$n.addrs"
        taskset -c "$CLIENT_CPU" "$FARM" --count "$n" --net "$FARM_NET" --ips "$FARM_IPS" \
            --base-port "$FARM_PORT" --seconds "$farm_secs" --delay-ms "$DELAY_MS" --addrs-out "$TMP/farm-$n.addrs" \
            >"$TMP/farm-$n.out" 2>&1 &
        farm=$!
        PIDS+=("$farm")
        for _ in $(seq 1 300); do
            [[ -s $TMP/farm-$n.addrs ]] && break
            kill -0 "$farm" 2>/dev/null || { cat "$TMP/farm-$n.out" >&2; exit 1; }
            sleep 0.1
        done
        [[ -s $TMP/farm-$n.addrs ]] || { log "farm did not start"; cat "$TMP/farm-$n.out" >&2; exit 1; }
        # Alternate which mode goes first, so order effects cancel out.
        modes="on idle"
        ((round % 2 == 0)) && modes="idle on"
        for mode in $modes; do
            d=$TMP/$n-$mode
            mkdir -p "$d"
            write_config "$n" "$mode" "$d/steerdns.toml"
            taskset -c "$SERVER_CPU" "$STEERDNS" serve --config "$d/steerdns.toml" >"$d/log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            ok=0
            for _ in $(seq 1 100); do
                if "$DNSLOAD" check --server "$HOST:$DNS_PORT" >"$d/check.out" 2>&1 &&
                    curl -sf --max-time 2 "http://$HOST:$HTTP_PORT/healthz" >/dev/null; then
                    ok=1
                    break
                fi
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if [[ $ok == 0 ]]; then
                log "steerdns did not come up (N=$n $mode)"
                tail -20 "$d/log" >&2
                cat "$d/check.out" >&2
                exit 1
            fi
            started=$(date +%s)
            if [[ $mode == on ]]; then
                # Every endpoint probed at least once: one interval plus the
                # timeout, with slack for a busy machine.
                limit=$((interval_s + timeout_s + 30))
                states="0 0 $n"
                while :; do
                    states=$(farm_states || echo "0 0 $n")
                    [[ ${states##* } == 0 ]] && break
                    (($(date +%s) - started > limit)) && break
                    sleep 1
                done
                log "N=$n: first round done after $(($(date +%s) - started)) s (up down unknown: $states)"
            else
                sleep 2
            fi
            for kind in quiet loaded; do
                line=$(window "$pid" "$kind" "$n" "$mode")
                printf '%s\t%s\n' "$round" "$line" >>"$RESULTS"
                log "round $round: $(echo "$line" | awk -F'\t' '{ printf "N=%s %s %s: probes/s %s (farm %s), cpu %s%%, failed %s, mean probe %s ms, rss %s MB (hwm %s), q/s %s, q/cpu-s %s, lost %s, fds %s, threads %s, ctxsw/s %s", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }')"
            done
            states=$(farm_states || echo "? ? ?")
            if [[ $mode == on ]]; then
                read -r up down unknown <<<"$states"
                if [[ $up != "$n" ]]; then
                    NOTES+=("round $round N=$n: only $up of $n endpoints up (down $down, unknown $unknown); see failures below")
                    metrics | grep '^steerdns_probe_failures_total' | awk '$NF > 0' | head -20 >&2 || true
                fi
                metrics >"$TMP/m-end"
                echo "$n $states $(metrics_up "$TMP/m-end")" >>"$TMP/states"
            fi
            stop_pid "$pid"
        done
        stop_pid "$farm"
        log "farm N=$n: $(tail -1 "$TMP/farm-$n.out")"
    done
done

# --- report -------------------------------------------------------------------------
echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "commit:  $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "runs:    $ROUNDS round(s), ${WINDOW}s windows, monitor http interval $INTERVAL timeout $TIMEOUT, pools of $POOL_SIZE, farm delay ${DELAY_MS} ms"
echo "         steerdns on cpu $SERVER_CPU (udp_workers = 1${SERVER_EXTRA:+, $SERVER_EXTRA}), dnsload and farm on cpu $CLIENT_CPU"
echo "         binary $STEERDNS"
echo
# Medians over rounds per (N, mode, kind), then one row per N.
awk -F'\t' '
    function med(k, col,   i, j, t, a, c) {
        c = cnt[k]; for (i = 1; i <= c; i++) a[i] = v[k, i, col] + 0
        for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    { k = $2 SUBSEP $3 SUBSEP $4; cnt[k]++; for (i = 1; i <= NF; i++) v[k, cnt[k], i] = $i
      if (!($2 in seen)) { seen[$2] = 1; order[++m] = $2 } }
    END {
        printf "%-6s %9s %8s %9s %7s %8s %9s %9s %6s %10s %10s %6s %10s %10s %6s %8s\n", "N", "probes/s",
            "cpu% on", "cpu% idle", "RSS on", "RSS idle", "q/s on", "q/s idle", "ratio",
            "q/cpu-s on", "q/cpu-s id", "ratio", "q/dns-s on", "q/dns-s id", "ratio", "probe ms"
        for (i = 1; i <= m; i++) {
            n = order[i]
            qon = n SUBSEP "on" SUBSEP "quiet"; qid = n SUBSEP "idle" SUBSEP "quiet"
            lon = n SUBSEP "on" SUBSEP "loaded"; lid = n SUBSEP "idle" SUBSEP "loaded"
            a = med(lon, 12); b = med(lid, 12)
            c = med(lon, 13); d = med(lid, 13); e = med(lon, 18); f = med(lid, 18)
            printf "%-6s %9.1f %8.1f %9.1f %7.1f %8.1f %9.0f %9.0f %6.3f %10.0f %10.0f %6.3f %10.0f %10.0f %6.3f %8.2f\n", n,
                med(qon, 5), med(qon, 7), med(qid, 7), med(qon, 10), med(qid, 10),
                a, b, (b > 0 ? a / b : 0), c, d, (d > 0 ? c / d : 0), e, f, (f > 0 ? e / f : 0), med(qon, 9)
        }
    }' "$RESULTS"
echo
echo "probes/s, cpu% and RSS (MB) are from the quiet window (no DNS load); q/s and"
echo "q/cpu-s (answers per steerdns CPU-second) from the loaded window (dnsload on"
echo "cpu $CLIENT_CPU); ratio = prober on / prober idle; medians over rounds;"
echo "q/dns-s = answers per CPU-second of the DNS threads (UDP workers, TCP loop) alone;"
echo "probe ms = mean probe duration (steerdns_probe_duration_seconds sum/count)."
echo
echo "endpoint states at the end, prober on (N, API up down unknown, metrics steerdns_endpoint_up == 1):"
cat "$TMP/states" 2>/dev/null || true
if [[ ${#NOTES[@]} -gt 0 ]]; then
    echo
    printf 'NOTE: %s\n' "${NOTES[@]}"
fi
HEADER='round\tN\tmode\twindow\tprobes_per_s\tfarm_health_per_s\tcpu_pct\tprobe_failures\tmean_probe_ms\trss_mb\thwm_mb\tqps\tq_per_cpu_s\tlost\tfds\tthreads\tctxsw_per_s\tq_per_dns_cpu_s'
echo
echo "raw measurements:"
printf "$HEADER\n"
cat "$RESULTS"
if [[ -n $TSV ]]; then
    { printf "$HEADER\n"; cat "$RESULTS"; } >"$TSV"
fi
