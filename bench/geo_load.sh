#!/usr/bin/env bash
# Load and reload cost with a full-size GeoIP database, steerdns vs gdnsd.
#
#   bench/geo_load.sh [-n "1 10 50 200"] [-a] [-s "steerdns gdnsd"] [-o results.tsv]
#
# Installs GeoLite2-City (2018 snapshot, PyPI maxminddb-geolite2) into a
# temporary directory, writes N balanced names per run (bench/geo_configs.py:
# 40 % geo maps, each its own rules, 20 % proximity over 8 pool subsets,
# 40 % failover/weighted) and the equivalent gdnsd 3 geoip plugin config,
# then measures, one server at a time on loopback ports:
#
#   check     CPU-s of `steerdns check` / `gdnsd checkconf`
#   serve     start until the first geo name answers: wall s and CPU-s
#   rss       VmRSS once serving (MB)
#   reload    POST /api/v1/reload with nothing geo changed: wall s, CPU-s,
#             peak RSS during it (VmHWM after resetting it via clear_refs)
#   reload-db the config pointed at a copy of the database (geo recompiled)
#
# -a adds an ASN database (none exists in MMDB form in the registries we use,
# so one is written with `steerdns geoip-build` at 500k networks) and ASN
# rules on every fourth geo map (gdnsd has no ASN maps: its maps skip them).
# gdnsd reloads maps only by restarting (`gdnsdctl replace`): no reload row.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="1 10 50 200"
SERVERS="steerdns gdnsd"
ASN=0
OUT=""
while getopts "n:s:ao:" o; do
    case $o in
        n) NS=$OPTARG ;;
        s) SERVERS=$OPTARG ;;
        a) ASN=1 ;;
        o) OUT=$OPTARG ;;
        *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
log() { echo "geo_load: $*" >&2; }

# --- inputs ----------------------------------------------------------------------
# shellcheck source=bench/geolite2.sh
source bench/geolite2.sh
geolite2_city "$TMP"
DB=$GEOLITE2_CITY
cargo build --release -q
STEERDNS=$PWD/target/release/steerdns
ASN_DB=""
if [ "$ASN" = 1 ]; then
    python3 - "$TMP/asn.csv" <<'EOF'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    f.write("network,continent,country,subdivision,latitude,longitude,asn\n")
    for _ in range(400000):
        a = random.randrange(1 << 24)
        f.write("%d.%d.%d.0/24,,US,,,,%d\n" % (a >> 16, (a >> 8) & 255, a & 255, random.randrange(1, 65000)))
    for _ in range(100000):
        f.write("2%03x:%x:%x::/48,,US,,,,%d\n" % (random.randrange(4096), random.randrange(65536), random.randrange(65536), random.randrange(1, 65000)))
EOF
    "$STEERDNS" geoip-build --input "$TMP/asn.csv" --output "$TMP/asn.mmdb" >/dev/null
    ASN_DB=$TMP/asn.mmdb
fi
if [[ " $SERVERS " == *" gdnsd "* ]] && ! command -v gdnsd >/dev/null; then
    apt-get install -y -qq gdnsd >/dev/null 2>&1 || { log "gdnsd not installable: skipped"; SERVERS=${SERVERS//gdnsd/}; }
fi

CLK=$(getconf CLK_TCK)
cpu_of() { awk -v t="$CLK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a - b}'; }
# time_cpu CMD...: prints "user+sys" CPU-s of the command
time_cpu() {
    /usr/bin/time -f "%U %S" -o "$TMP/time" "$@" >"$TMP/cmd.log" 2>&1 || { tail -5 "$TMP/cmd.log" >&2; echo "fail"; return 0; }
    awk '{printf "%.2f", $1 + $2}' "$TMP/time"
}
# wait_answer PORT NAME PID: until NAME answers (bounded: 600 s)
wait_answer() {
    for _ in $(seq 1 12000); do
        if dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | grep -q '^10\.'; then return 0; fi
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

ROWS=()
row() { ROWS+=("$(printf '%s\t' "$@")"); }
row server names geo check_cpu serve_wall serve_cpu rss_mb reload_wall reload_cpu reload_peak_mb reloaddb_wall reloaddb_cpu reloaddb_peak_mb

# Three free consecutive ports (DNS, HTTP, gdnsd DNS) for each run.
free_base() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    ok = True
    for p in range(base, base + 3):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
    if ok:
        print(base)
        break
PY
}
for n in $NS; do
    PORT=$(free_base)
    d=$TMP/n$n
    if [ -n "$ASN_DB" ]; then
        python3 bench/geo_configs.py "$n" "$DB" "$ASN_DB" "$d" "$PORT"
    else
        python3 bench/geo_configs.py "$n" "$DB" "$d" "$PORT"
    fi
    geo=$(grep -c 'policy = "\(geo\|proximity\)"' "$d/steerdns.toml" || true)
    for s in $SERVERS; do
        case $s in
        steerdns)
            log "steerdns N=$n"
            c=$(time_cpu "$STEERDNS" check --config "$d/steerdns.toml")
            t0=$(now)
            "$STEERDNS" serve --config "$d/steerdns.toml" >"$d/steerdns.log" 2>&1 &
            pid=$!; PIDS+=("$pid")
            if ! wait_answer "$PORT" s0.lb.example.com "$pid"; then tail -5 "$d/steerdns.log" >&2; exit 1; fi
            sw=$(sub "$(now)" "$t0"); sc=$(cpu_of "$pid")
            sleep 1
            rss=$(rss_mb "$pid" VmRSS)
            api=http://127.0.0.1:$((PORT + 1))/api/v1/reload
            echo 5 >"/proc/$pid/clear_refs"
            c0=$(cpu_of "$pid"); t0=$(now)
            curl -sf -X POST "$api" >"$d/reload.json" || { log "reload failed"; cat "$d/reload.json" >&2; }
            rw=$(sub "$(now)" "$t0"); rc=$(sub "$(cpu_of "$pid")" "$c0"); rp=$(rss_mb "$pid" VmHWM)
            cp "$DB" "$d/db2.mmdb"
            sed -i "s#^database = .*#database = \"$d/db2.mmdb\"#" "$d/steerdns.toml"
            echo 5 >"/proc/$pid/clear_refs"
            c0=$(cpu_of "$pid"); t0=$(now)
            curl -sf -X POST "$api" >"$d/reload2.json" || { log "reload failed"; cat "$d/reload2.json" >&2; }
            dw=$(sub "$(now)" "$t0"); dc=$(sub "$(cpu_of "$pid")" "$c0"); dp=$(rss_mb "$pid" VmHWM)
            grep -q '"ok": *true' "$d/reload2.json" || log "reload with the copied database: $(cat "$d/reload2.json")"
            kill "$pid"; wait "$pid" 2>/dev/null || true
            row steerdns "$n" "$geo" "$c" "$sw" "$sc" "$rss" "$rw" "$rc" "$rp" "$dw" "$dc" "$dp"
            ;;
        gdnsd)
            log "gdnsd N=$n"
            g=$d/gdnsd
            cp "$DB" "$g/geoip/db.mmdb"
            c=$(time_cpu gdnsd -c "$g" checkconf)
            t0=$(now)
            gdnsd -c "$g" start >"$g/log" 2>&1 &
            pid=$!; PIDS+=("$pid")
            if ! wait_answer $((PORT + 2)) s0.lb.example.com "$pid"; then tail -5 "$g/log" >&2; exit 1; fi
            sw=$(sub "$(now)" "$t0"); sc=$(cpu_of "$pid")
            sleep 1
            rss=$(rss_mb "$pid" VmRSS)
            kill "$pid"; wait "$pid" 2>/dev/null || true
            row gdnsd "$n" "$geo" "$c" "$sw" "$sc" "$rss" - - - - - -
            ;;
        esac
    done
done

printf '%s\n' "${ROWS[@]}" | column -t -s $'\t'
[ -n "$OUT" ] && printf '%s\n' "${ROWS[@]}" >"$OUT"
exit 0
