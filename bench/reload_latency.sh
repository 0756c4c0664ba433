#!/usr/bin/env bash
# Answer latency while a SIGHUP reload recompiles a full-size GeoIP
# database, against the same load without a reload.
#
#   bench/reload_latency.sh [-d SECONDS] [-r ROUNDS] [-m "1core 2core"] [-w WINDOW]
#
#   -d  seconds per load run (default 20; the reload starts 1 s in)
#   -r  rounds (default 2); in each, per mode: one run without a reload,
#       then one with
#   -m  where the server runs:
#         1core  taskset to SERVER_CPU (0) alone: DNS threads and the
#                reload's compile share that core (the compile at nice 10
#                and SCHED_BATCH, see README "DNS and control plane")
#         2core  both CPUs with server.dns_cpus = "auto": DNS on the
#                first, the control plane and compiles on the second
#                (where the load generator runs too)
#   -w  queries in flight (bench/dnsload --window, default 16, 1 socket)
#
# The server runs the shipped example with GeoLite2-City (2018 snapshot,
# PyPI maxminddb-geolite2, installed into a temporary directory) as its
# location database, one UDP worker, file watch off. A reload whose
# databases and overrides are unchanged reuses the compiled geography, so
# each reload changes a `[[geoip.override]]` network: the location
# partition and every decision trie are rebuilt from the full database.
#
# Load: bench/dnsload on CLIENT_CPU (1), geo+ECS queries for www (the
# example's geo name), `--loose 1` (GeoLite2 places some test subnets
# elsewhere than the sample database). Printed per run: answers per
# second, p50 / p99 / p99.9 latency in µs, and for reload runs the time
# from SIGHUP to the "config reloaded" log line.
set -euo pipefail

DURATION=20
ROUNDS=2
MODES="1core 2core"
WINDOW=16
while getopts "d:r:m:w:h" opt; do
    case "$opt" in
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        m) MODES=$OPTARG ;;
        w) WINDOW=$OPTARG ;;
        *) sed -n '2,30p' "$0"; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 5 && $DURATION -le 600 ]] || { echo "bad -d (5..600)" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $ROUNDS -le 20 ]] || { echo "bad -r" >&2; exit 2; }
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d -t steerdns-reload-bench.XXXXXX)
SPID=""
cleanup() {
    [[ -n $SPID ]] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "== $*" >&2; }

# shellcheck source=bench/geolite2.sh
source "$ROOT/bench/geolite2.sh"
geolite2_city "$TMP"
DB=$GEOLITE2_CITY
command -v dig >/dev/null || apt-get install -y -qq dnsutils >/dev/null
(cd "$ROOT" && cargo build --release --quiet --bin steerdns --example dnsload)
STEERDNS=$ROOT/target/release/steerdns
DNSLOAD=$ROOT/target/release/examples/dnsload

PORT=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HTTP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cfg=$TMP/steerdns.toml
# The example without its health checks (they end the file), on our ports.
sed -e "s|^database = .*|database = \"$DB\"|" \
    -e "s|^dns_listen = .*|dns_listen = [\"127.0.0.1:$PORT\"]|" \
    -e "s|^\[server\]$|[server]\nhttp_listen = \"127.0.0.1:$HTTP\"|" \
    -e 's|^udp_workers = .*|udp_workers = 1|' \
    -e '/^# Health checks/,$d' \
    "$ROOT/config/example.toml" >"$TMP/base.toml"
grep -q '^watch_interval' "$TMP/base.toml" || sed -i 's|^\[server\]$|[server]\nwatch_interval = "0s"|' "$TMP/base.toml"

# write_config MODE N: the base config, DNS placement for MODE, and an
# override whose network changes with N (so each reload rebuilds the
# geography).
write_config() {
    local dns_cpus='"off"'
    [[ $1 == 2core ]] && dns_cpus='"auto"'
    sed "s|^\[server\]$|[server]\ndns_cpus = $dns_cpus|" "$TMP/base.toml" >"$cfg.new"
    printf '\n[[geoip.override]]\ncidr = "100.%d.0.0/16"\ncountry = "NZ"\n' $(($2 % 200 + 1)) >>"$cfg.new"
    mv "$cfg.new" "$cfg"
}

start() { # start MODE
    local cpus=$SERVER_CPU
    [[ $1 == 2core ]] && cpus="$SERVER_CPU,$CLIENT_CPU"
    write_config "$1" 0
    "$STEERDNS" check --config "$cfg" >/dev/null || { "$STEERDNS" check --config "$cfg"; exit 1; }
    NO_COLOR=1 taskset -c "$cpus" "$STEERDNS" serve --config "$cfg" >"$TMP/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 1 1200); do
        dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 static.lb.example.com 2>/dev/null | grep -q '^192\.0\.2\.1$' && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.05
    done
    echo "steerdns did not start:" >&2
    tail -5 "$TMP/server.log" >&2
    exit 1
}

stop() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

# load: prints "qps p50 p99 p999" of one dnsload run.
load() {
    local out=$TMP/load.out
    timeout $((DURATION + 30)) "$DNSLOAD" run --server "127.0.0.1:$PORT" --duration "$DURATION" \
        --sockets 1 --window "$WINDOW" --cpu "$CLIENT_CPU" --case geo-ecs --loose 1 \
        --timeout-ms 2000 >"$out" 2>&1 || true
    awk '/^qps/ { print $2, $4, $6, $8; found = 1 } END { if (!found) print "? ? ? ?" }' "$out"
}

# reload_after SECONDS N: rewrite the config, SIGHUP, print the seconds
# until the server logs the new generation (bounded: 300 s).
reload_after() {
    sleep "$1" # the load runs meanwhile: this only places the reload in it
    local before t0 t1
    before=$(grep -c 'config reloaded (SIGHUP)' "$TMP/server.log" || true)
    write_config "$MODE" "$2"
    t0=$(date +%s.%N)
    kill -HUP "$SPID"
    for _ in $(seq 1 6000); do
        [[ $(grep -c 'config reloaded (SIGHUP)' "$TMP/server.log" || true) -gt $before ]] && break
        grep -q 'reload failed' "$TMP/server.log" && { echo "failed"; return; }
        sleep 0.05
    done
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
n=0
for round in $(seq 1 "$ROUNDS"); do
    for MODE in $MODES; do
        [[ $MODE == 1core || $MODE == 2core ]] || { echo "unknown mode $MODE" >&2; exit 2; }
        start "$MODE"
        read -r q p50 p99 p999 < <(load)
        log "round $round $MODE, no reload: $q q/s, p50 $p50 us, p99 $p99 us, p99.9 $p999 us"
        printf '%s\t%s\tnone\t%s\t%s\t%s\t%s\t-\n' "$round" "$MODE" "$q" "$p50" "$p99" "$p999" >>"$RESULTS"
        n=$((n + 1))
        reload_after 1 "$n" >"$TMP/reload.s" &
        rpid=$!
        read -r q p50 p99 p999 < <(load)
        wait "$rpid" || true
        took=$(cat "$TMP/reload.s")
        log "round $round $MODE, SIGHUP reload (took $took s): $q q/s, p50 $p50 us, p99 $p99 us, p99.9 $p999 us"
        printf '%s\t%s\treload\t%s\t%s\t%s\t%s\t%s\n' "$round" "$MODE" "$q" "$p50" "$p99" "$p999" "$took" >>"$RESULTS"
        stop
    done
done

echo
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); kernel $(uname -r)"
echo "commit:  $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "runs:    $ROUNDS x ${DURATION}s per mode and case, window $WINDOW, dnsload on cpu $CLIENT_CPU, GeoLite2-City"
echo
echo "round mode   reload  q/s  p50_us  p99_us  p999_us  reload_s"
column -t "$RESULTS"
