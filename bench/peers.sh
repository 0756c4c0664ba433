# Shared pieces of the peer benchmarks (bench/compare.sh, bench/callgrind.sh):
# installing peers from Debian, one config per server for the same zone and
# the same geo steering on the same GeoIP database, starting/stopping them
# and checking their answers. Source it; the caller sets:
#
#   ROOT      repository root          TMP       scratch directory
#   MMDB      GeoIP database to copy   INSTALL   1 = apt-get install missing peers
#   STEERDNS  steerdns binary          DNSLOAD   dnsload example binary
#   PIDS      array; started servers are appended (the caller stops them on exit)
#
# and may set PORT_BASE (default 15353: steerdns, then gdnsd, knot, pdns on
# the next ports), SERVER_WRAP (array: the command a server runs under;
# default `taskset -c $SERVER_CPU`) and STEERDNS_BENCH_CONFIG=1 (no health
# checks, HTTP API on PORT_BASE+10: nothing runs in the background).

log() { echo "== $*" >&2; }

port_of() {
    local b=${PORT_BASE:-15353}
    case "$1" in
        steerdns) echo "$b" ;; gdnsd) echo $((b + 1)) ;; knot) echo $((b + 2)) ;; pdns) echo $((b + 3)) ;;
    esac
}

APT_UPDATED=0
ensure_pkg() { # ensure_pkg COMMAND PACKAGE...
    local cmd=$1
    shift
    if command -v "$cmd" >/dev/null 2>&1 && dpkg -s "$@" >/dev/null 2>&1; then
        return 0
    fi
    if [[ $INSTALL -eq 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        APT_UPDATED=1
    fi
    local p
    for p in "$@"; do
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            log "package $p has no install candidate"
            return 1
        fi
    done
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$TMP/apt.log" 2>&1 || {
        tail -5 "$TMP/apt.log" >&2
        return 1
    }
    command -v "$cmd" >/dev/null 2>&1
}

# --- configs -------------------------------------------------------------------
# Same zone and the same steering everywhere: www.lb.example.com by continent
# (EU -> eu,na; NA, SA -> na,eu; AS -> ap,eu; OC -> ap,na; else eu first),
# one A and one AAAA per pool, TTL 30, from geoip/sample.mmdb with ECS.
write_steerdns() {
    local d=$TMP/steerdns
    mkdir -p "$d"
    cp "$MMDB" "$d/sample.mmdb"
    sed -e 's|^database = .*|database = "sample.mmdb"|' \
        -e "s|^dns_listen = .*|dns_listen = [\"127.0.0.1:$(port_of steerdns)\"]|" \
        -e 's|^udp_workers = .*|udp_workers = 1|' \
        "$ROOT/config/example.toml" >"$d/steerdns.toml"
    if [[ ${STEERDNS_BENCH_CONFIG:-0} == 1 ]]; then
        # Drop the example's health checks (they end the file) and move the
        # API off its default port, so nothing but queries costs work.
        sed -i -e '/^# Health checks/,$d' \
            -e "s|^\[server\]$|[server]\nhttp_listen = \"127.0.0.1:$(($(port_of steerdns) + 10))\"|" \
            "$d/steerdns.toml"
    fi
}

ZONE_STATIC='$TTL 3600
$ORIGIN lb.example.com.
@       SOA ns1 hostmaster.example.com. 2026112501 3600 600 604800 60
@       NS ns1
@       NS ns2
ns1     A 192.0.2.53
ns1     AAAA 2001:db8::53
ns2     A 198.51.100.53
ns2     AAAA 2001:db8:1::53
static  300 A 192.0.2.1
@       TXT "steerdns example zone"
@       MX 10 mail
mail    A 192.0.2.25
alias   CNAME www'

write_gdnsd() {
    local d=$TMP/gdnsd
    mkdir -p "$d/zones" "$d/geoip"
    cp "$MMDB" "$d/geoip/sample.mmdb"
    cat >"$d/config" <<EOF
options => {
  listen => [ 127.0.0.1:$(port_of gdnsd) ]
  udp_threads => 1
  tcp_threads => 1
}
plugins => {
  geoip => {
    maps => {
      continents => {
        geoip2_db => sample.mmdb
        # unmapped continents (AF, AN) get this list's order: eu first
        datacenters => [ eu, na, ap ]
        map => {
          EU => [ eu, na ]
          NA => [ na, eu ]
          SA => [ na, eu ]
          AS => [ ap, eu ]
          OC => [ ap, na ]
        }
      }
    }
    resources => {
      www => {
        map => continents
        service_types => up
        dcmap => {
          eu => { addrs_v4 => [ 192.0.2.10 ], addrs_v6 => [ 2001:db8:e::10 ] }
          na => { addrs_v4 => [ 198.51.100.10 ], addrs_v6 => [ 2001:db8:a::10 ] }
          ap => { addrs_v4 => [ 203.0.113.10 ], addrs_v6 => [ 2001:db8:f::10 ] }
        }
      }
    }
  }
}
EOF
    { echo "$ZONE_STATIC"; echo "www     30 DYNA geoip!www"; } >"$d/zones/lb.example.com"
}

write_knot() {
    local d=$TMP/knot
    mkdir -p "$d/db"
    cp "$MMDB" "$d/sample.mmdb"
    cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    pidfile: "$d/knot.pid"
    listen: 127.0.0.1@$(port_of knot)
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    edns-client-subnet: on
database:
    storage: "$d/db"
log:
  - target: stderr
    any: warning
mod-geoip:
  - id: geo
    config-file: "$d/geo.conf"
    ttl: 30
    mode: geodb
    geodb-file: "$d/sample.mmdb"
    geodb-key: [ continent/code ]
zone:
  - domain: lb.example.com
    storage: "$d"
    file: "lb.example.com.zone"
    module: mod-geoip/geo
EOF
    cat >"$d/geo.conf" <<EOF
www.lb.example.com:
  - geo: "EU"
    A: 192.0.2.10
    AAAA: 2001:db8:e::10
  - geo: "NA"
    A: 198.51.100.10
    AAAA: 2001:db8:a::10
  - geo: "SA"
    A: 198.51.100.10
    AAAA: 2001:db8:a::10
  - geo: "AS"
    A: 203.0.113.10
    AAAA: 2001:db8:f::10
  - geo: "OC"
    A: 203.0.113.10
    AAAA: 2001:db8:f::10
EOF
    # No geo match: the zone's own www records (the eu pool) answer.
    { echo "$ZONE_STATIC"; echo "www     30 A 192.0.2.10"; echo "www     30 AAAA 2001:db8:e::10"; } \
        >"$d/lb.example.com.zone"
}

write_pdns() {
    local d=$TMP/pdns
    mkdir -p "$d"
    cp "$MMDB" "$d/sample.mmdb"
    cat >"$d/pdns.conf" <<EOF
launch=geoip
geoip-database-files=mmdb:$d/sample.mmdb
geoip-zones-file=$d/zones.yaml
edns-subnet-processing=yes
local-address=127.0.0.1:$(port_of pdns)
receiver-threads=1
distributor-threads=1
signing-threads=1
socket-dir=$d
guardian=no
daemon=no
disable-syslog=yes
loglevel=3
webserver=no
api=no
EOF
    cat >"$d/zones.yaml" <<EOF
domains:
- domain: lb.example.com
  ttl: 3600
  records:
    lb.example.com:
      - soa: ns1.lb.example.com hostmaster.example.com 2026112501 3600 600 604800 60
      - ns: ns1.lb.example.com
      - ns: ns2.lb.example.com
      - txt: steerdns example zone
      - mx: 10 mail.lb.example.com
    ns1.lb.example.com:
      - a: 192.0.2.53
      - aaaa: 2001:db8::53
    ns2.lb.example.com:
      - a: 198.51.100.53
      - aaaa: 2001:db8:1::53
    static.lb.example.com:
      - a:
          content: 192.0.2.1
          ttl: 300
    mail.lb.example.com:
      - a: 192.0.2.25
    alias.lb.example.com:
      - cname: www.lb.example.com
EOF
    # %cn is the continent code; "--" is what an unknown location expands to.
    local c n r
    for c in eu:192.0.2.10,2001:db8:e::10 na:198.51.100.10,2001:db8:a::10 \
        sa:198.51.100.10,2001:db8:a::10 as:203.0.113.10,2001:db8:f::10 \
        oc:203.0.113.10,2001:db8:f::10 af:192.0.2.10,2001:db8:e::10 \
        an:192.0.2.10,2001:db8:e::10 --:192.0.2.10,2001:db8:e::10; do
        n=${c%%:*}
        r=${c#*:}
        printf '    %s.geo.lb.example.com:\n      - a:\n          content: %s\n          ttl: 30\n      - aaaa:\n          content: %s\n          ttl: 30\n' \
            "$n" "${r%%,*}" "${r#*,}" >>"$d/zones.yaml"
    done
    printf "  services:\n    www.lb.example.com: '%%cn.geo.lb.example.com'\n" >>"$d/zones.yaml"
}

# --- start/stop ------------------------------------------------------------------
SERVER_PID=""
start_server() { # start_server NAME; sets SERVER_PID
    local s=$1 d=$TMP/$1
    local wrap=(taskset -c "$SERVER_CPU")
    if [[ -n ${SERVER_WRAP+x} ]]; then
        wrap=("${SERVER_WRAP[@]}")
    fi
    case "$s" in
        steerdns) "${wrap[@]}" "$STEERDNS" serve --config "$d/steerdns.toml" >"$d/log" 2>&1 & ;;
        gdnsd) "${wrap[@]}" gdnsd -c "$d" start >"$d/log" 2>&1 & ;;
        knot) "${wrap[@]}" knotd -c "$d/knot.conf" >"$d/log" 2>&1 & ;;
        pdns) "${wrap[@]}" pdns_server --config-dir="$d" >"$d/log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

stop_server() {
    local p=$1
    kill "$p" 2>/dev/null || true
    # STOP_WAIT: tenths of a second to wait before SIGKILL (default 5 s);
    # SIGTERM is repeated every 5 s meanwhile (a traced server has been seen
    # to miss the first one).
    local i
    for i in $(seq 1 "${STOP_WAIT:-50}"); do
        if ! kill -0 "$p" 2>/dev/null; then
            wait "$p" 2>/dev/null || true
            forget_pid "$p"
            return 0
        fi
        if ((i % 50 == 0)); then
            log "process $p still running after $((i / 10)) s: SIGTERM again"
            kill "$p" 2>/dev/null || true
        fi
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    forget_pid "$p"
}

# Drop a stopped process from PIDS, so the exit trap never signals a PID
# that the system has since given to another process.
forget_pid() { # forget_pid PID
    local keep=() q
    for q in "${PIDS[@]}"; do
        [[ $q == "$1" ]] || keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

# Wait until the server answers, then check its answers. 0 = correct.
verify() { # verify NAME
    local s=$1 port
    port=$(port_of "$s")
    # VERIFY_TRIES: attempts 0.25 s apart while the server starts (default 40).
    for _ in $(seq 1 "${VERIFY_TRIES:-40}"); do
        if "$DNSLOAD" check --server "127.0.0.1:$port" >"$TMP/$s/check.out" 2>&1; then
            return 0
        fi
        if grep -q WRONG "$TMP/$s/check.out"; then
            cat "$TMP/$s/check.out" >&2
            return 1
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.25
    done
    cat "$TMP/$s/check.out" >&2
    tail -5 "$TMP/$s/log" >&2 || true
    return 1
}

