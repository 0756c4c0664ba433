#!/usr/bin/env bash
# User-space instructions per query (valgrind --tool=callgrind) and syscalls
# per query (strace -c -f) of steerdns, gdnsd and Knot DNS (mod-geoip), on the
# same zone, steering and GeoIP database, over loopback. Deterministic: it
# counts instructions, not time, so noisy neighbours do not move it.
#
#   bench/callgrind.sh [-q QUERIES] [-s "steerdns gdnsd knot"] [-c CASES]
#                      [-m MMDB] [-b STEERDNS] [-S] [-p] [-n] [-o RESULTS.tsv] [-h]
#
#   -q  queries per case (default 20000; the one-query-per-TCP-connection
#       case sends a tenth of it)
#   -s  servers (default: steerdns gdnsd knot; peers missing from the machine
#       are installed with apt-get, or skipped with -n)
#   -c  cases (default: all):
#         static     static.lb.example.com A, EDNS, full batches (64 in flight)
#         static-w1  the same, one query in flight (1 query per receive batch)
#         geo        www.lb.example.com A, no ECS (loopback: default pool)
#         geo-ecs    www A with ECS, subnets of every continent in turn
#         nx         nx.lb.example.com A (NXDOMAIN)
#         tcp        static A over TCP, 100 queries per connection, one at a
#                    time (pipelining stalls Knot: Nagle vs delayed ACKs)
#         tcp1       static A over TCP, one query per connection
#         cookie     static A with a DNS Cookie: the client cookie only
#         cookie-srv static A with client and server cookie (learned from a
#                    first answer, as resolvers do). In both cases the
#                    server's own counters must show that every query
#                    took that path. Knot shows "-" (the shared config
#                    has no mod-cookies)
#   -m  GeoIP database for every server (default geoip/sample.mmdb), e.g. a
#       GeoLite2-City.mmdb; geo-ecs answers are then checked for rcode and
#       answer count only (the expected pools are those of the sample data)
#   -b  measure this steerdns binary instead of building target/release's
#       (e.g. a copy of an older build, for before/after comparisons)
#   -S  skip the strace pass
#   -p  also print steerdns's top functions per query for each case
#   -n  do not install missing peers
#   -o  also write the results as tab-separated lines to this file
#
# Environment: SERVER_CPU (default 0), CLIENT_CPU (default 1), PORT_BASE
# (default 25353: steerdns there, gdnsd and Knot on the next two ports).
#
# Method. Every measurement starts the server under the tool (pinned to
# SERVER_CPU, one UDP worker), waits until `dnsload check` gets the right
# answers (A/AAAA per continent with ECS, static names, NXDOMAIN), sends
# exactly N queries with `dnsload` (each answer checked: rcode and
# addresses; a wrong or missing answer aborts the case), stops the server and
# reads the tool's totals. Each case runs twice, at N1 = N/10 and N2 = N
# queries; Ir/query = (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up, loading the
# database, the answer check and shutdown cancel out. The N1 run idles until
# it has lasted as long as the N2 run, so timer work cancels too. Syscalls
# per query are the same difference over `strace -c -f` counts, without the
# idling (they depend on batching, which depends on timing: less exact).
# All traffic is to 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

QUERIES=20000
SERVERS="steerdns gdnsd knot"
ALL_CASES="static static-w1 geo geo-ecs nx tcp tcp1 cookie cookie-srv"
CASES=$ALL_CASES
MMDB_OPT=""
STRACE=1
PROFILE=0
INSTALL=1
TSV=""
STEERDNS_OPT=""
while getopts "q:s:c:m:b:Spno:h" opt; do
    case "$opt" in
        q) QUERIES=$OPTARG ;;
        s) SERVERS=$OPTARG ;;
        c) CASES=$OPTARG ;;
        m) MMDB_OPT=$OPTARG ;;
        b) STEERDNS_OPT=$OPTARG ;;
        S) STRACE=0 ;;
        p) PROFILE=1 ;;
        n) INSTALL=0 ;;
        o) TSV=$OPTARG ;;
        *) sed -n '2,53p' "$0"; exit 2 ;;
    esac
done
[[ $QUERIES =~ ^[0-9]+$ && $QUERIES -ge 100 && $QUERIES -le 1000000 ]] || { echo "bad -q (100..1000000)" >&2; exit 2; }
for c in $CASES; do
    [[ " $ALL_CASES " == *" $c "* ]] || { echo "unknown case $c (known: $ALL_CASES)" >&2; exit 2; }
done
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d -t steerdns-callgrind.XXXXXX)
PIDS=()
SKIPPED=()

cleanup() {
    local p c
    for p in "${PIDS[@]}"; do
        # A server under strace is strace's child: signal it, not just strace
        # (which would detach and leave it running).
        for c in $(pgrep -P "$p" || true); do kill "$c" 2>/dev/null || true; done
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# Other ports than bench/compare.sh, so both can run on one machine.
PORT_BASE=${PORT_BASE:-25353}
STEERDNS_BENCH_CONFIG=1
STOP_WAIT=600     # a server under valgrind takes a while to exit
VERIFY_TRIES=240  # ... and to start
# shellcheck source=bench/peers.sh
source "$ROOT/bench/peers.sh"

if [[ -n $STEERDNS_OPT ]]; then
    log "building dnsload (release); steerdns is $STEERDNS_OPT"
    (cd "$ROOT" && cargo build --release --quiet --example dnsload)
    STEERDNS=$(realpath "$STEERDNS_OPT")
else
    log "building steerdns and dnsload (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin steerdns --example dnsload)
    STEERDNS=$ROOT/target/release/steerdns
fi
[[ -x $STEERDNS ]] || { echo "no steerdns binary at $STEERDNS" >&2; exit 2; }
DNSLOAD=$ROOT/target/release/examples/dnsload
MMDB=${MMDB_OPT:-$ROOT/geoip/sample.mmdb}
[[ -r $MMDB ]] || { echo "cannot read $MMDB" >&2; exit 2; }
LOOSE=0
[[ -n $MMDB_OPT ]] && LOOSE=1

ensure_pkg valgrind valgrind || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
if [[ $STRACE -eq 1 ]] && ! ensure_pkg strace strace; then
    SKIPPED+=("strace pass: strace not installable")
    STRACE=0
fi
command -v callgrind_annotate >/dev/null 2>&1 || PROFILE=0

ACTIVE=()
for s in $SERVERS; do
    case "$s" in
        steerdns) ACTIVE+=(steerdns) ;;
        gdnsd) ensure_pkg gdnsd gdnsd && ACTIVE+=(gdnsd) || SKIPPED+=("gdnsd: not installable") ;;
        knot) ensure_pkg knotd knot knot-module-geoip && ACTIVE+=(knot) || SKIPPED+=("knot: knot/knot-module-geoip not installable") ;;
        *) echo "unknown server $s (callgrind.sh knows steerdns gdnsd knot)" >&2; exit 2 ;;
    esac
done
for s in "${ACTIVE[@]}"; do
    "write_$s"
done
# The answer check of `dnsload check` expects the sample database's pools.
CHECK_OK=1
[[ $LOOSE -eq 1 ]] && CHECK_OK=0

# Queries of one run of CASE at "small" or "large" size.
count_of() { # count_of CASE small|large
    local n=$QUERIES
    [[ $1 == tcp1 ]] && n=$((QUERIES / 10))
    if [[ $2 == small ]]; then echo $((n / 10)); else echo "$n"; fi
}

# Send COUNT queries of CASE to SERVER and check every answer.
load() { # load SERVER CASE COUNT
    local port
    port=$(port_of "$1")
    local common=(--server "127.0.0.1:$port" --count "$3" --duration 600)
    local loose=()
    [[ $LOOSE -eq 1 && $2 == geo-ecs ]] && loose=(--loose 1)
    case "$2" in
        static) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" --case static --sockets 1 --window 64 --timeout-ms 10000 ;;
        static-w1) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" --case static --sockets 1 --window 1 --timeout-ms 10000 ;;
        geo) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" --case geo --sockets 1 --window 64 --timeout-ms 10000 ;;
        geo-ecs) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" "${loose[@]}" --case geo-ecs --sockets 1 --window 64 --timeout-ms 10000 ;;
        nx) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" --case nx --sockets 1 --window 64 --timeout-ms 10000 ;;
        tcp) taskset -c "$CLIENT_CPU" "$DNSLOAD" tcp "${common[@]}" --case static --per-conn 100 --window 1 ;;
        tcp1) taskset -c "$CLIENT_CPU" "$DNSLOAD" tcp "${common[@]}" --case static --per-conn 1 ;;
        cookie | cookie-srv) taskset -c "$CLIENT_CPU" "$DNSLOAD" run "${common[@]}" --case "$2" --sockets 1 --window 64 --timeout-ms 10000 ;;
    esac
}

# Whether SERVER can do CASE: Knot answers cookies only with mod-cookies,
# which the shared config (bench/peers.sh) does not load.
can_do() { # can_do SERVER CASE
    [[ ! ($1 == knot && $2 == cookie*) ]]
}

# An answer cannot tell whether a server cookie was accepted (a rejected
# one is answered like a client cookie alone), but the servers' counters
# can: every query of the load must have taken the case's path.
cookies_counted() { # cookies_counted SERVER CASE COUNT
    local srv=0 want got
    [[ $2 == cookie-srv ]] && srv=1
    case "$1" in
        steerdns)
            command -v curl >/dev/null 2>&1 || return 0
            want=client_only
            [[ $srv -eq 1 ]] && want=valid
            got=$(curl -s --max-time 60 "http://127.0.0.1:$(($(port_of steerdns) + 10))/metrics" |
                awk -v k="steerdns_dns_cookies_total{result=\"$want\"}" '$1 == k { print $2 }') ;;
        gdnsd)
            want=edns_cookie_init
            [[ $srv -eq 1 ]] && want=edns_cookie_ok
            got=$(gdnsdctl -c "$TMP/gdnsd" stats 2>/dev/null |
                awk -v k="\"$want\":" '$1 == k { gsub(",", "", $2); print $2 }') ;;
        *) return 0 ;;
    esac
    [[ $got == "$3" ]] || { log "$1 $2: $want cookies counted ${got:-none}, want $3"; return 1; }
}

# Wait until the server answers (and, with the sample database, answers
# right). 0 = ready.
ready() { # ready SERVER
    local s=$1 port
    port=$(port_of "$s")
    if [[ $CHECK_OK -eq 1 ]]; then
        verify "$s"
        return
    fi
    for _ in $(seq 1 "$VERIFY_TRIES"); do
        if "$DNSLOAD" run --server "127.0.0.1:$port" --case static --count 1 --sockets 1 --window 1 \
            --duration 2 --timeout-ms 1000 >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.25
    done
    tail -5 "$TMP/$s/log" >&2 || true
    return 1
}

now() { date +%s.%N; }

# Stop a server running under strace (PID is strace's): SIGTERM to the
# traced process, repeated every 5 s (a traced server has been seen to miss
# one), SIGKILL after 60 s.
stop_traced() { # stop_traced STRACE_PID
    local t=$1 c i
    for i in $(seq 1 600); do
        kill -0 "$t" 2>/dev/null || break
        if ((i % 50 == 1)); then
            ((i > 1)) && log "traced server still running after $((i / 10)) s: SIGTERM again"
            for c in $(pgrep -P "$t" || true); do kill "$c" 2>/dev/null || true; done
        fi
        sleep 0.1
    done
    if kill -0 "$t" 2>/dev/null; then
        for c in $(pgrep -P "$t" || true); do kill -9 "$c" 2>/dev/null || true; done
        kill -9 "$t" 2>/dev/null || true
    fi
    wait "$t" 2>/dev/null || true
    forget_pid "$t"
}

# One run: start SERVER under TOOL, COUNT queries of CASE, idle until the
# load phase lasted PAD seconds, stop. Sets LOAD_SECS to the load phase's
# seconds.
LOAD_SECS=0
stop_any() { # stop_any TOOL: stop the server started last
    if [[ $1 == strace ]]; then stop_traced "$SERVER_PID"; else stop_server "$SERVER_PID"; fi
}
one_run() { # one_run TOOL SERVER CASE COUNT PAD OUTFILE
    local tool=$1 s=$2 c=$3 n=$4 pad=$5 out=$6 t0 t1 main
    case "$tool" in
        callgrind) SERVER_WRAP=(taskset -c "$SERVER_CPU" valgrind -q --tool=callgrind
            --callgrind-out-file="$out" --dump-instr=no --compress-strings=no) ;;
        strace) SERVER_WRAP=(taskset -c "$SERVER_CPU" strace -f -c -o "$out") ;;
    esac
    start_server "$s"
    main=$SERVER_PID
    if [[ $tool == strace ]]; then
        # Signal the traced server, not strace (which would detach from it).
        main=""
        for _ in $(seq 1 100); do
            main=$(pgrep -P "$SERVER_PID" | head -1 || true)
            [[ -n $main ]] && break
            sleep 0.05
        done
        [[ -n $main ]] || { log "$s: no traced process"; return 1; }
    fi
    if ! ready "$s"; then
        log "$s did not answer (right) under $tool"
        stop_any "$tool"
        return 1
    fi
    t0=$(now)
    if ! load "$s" "$c" "$n" >"$TMP/load.out" 2>&1; then
        log "$s $c: load failed or answers wrong:"
        tail -8 "$TMP/load.out" >&2
        stop_any "$tool"
        return 1
    fi
    if [[ $c == cookie* ]] && ! cookies_counted "$s" "$c" "$n"; then
        stop_any "$tool"
        return 1
    fi
    t1=$(now)
    # (at most 30 s: a server that is slow for reasons other than work, such
    # as TCP timers, should not double the run time)
    awk -v a="$t0" -v b="$t1" -v p="$pad" 'BEGIN { d = b - a; if (p > 30) p = 30; if (p > d) { system("sleep " (p - d)) } }'
    stop_any "$tool"
    LOAD_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

ir_total() { awk '/^summary:/ { print $2 }' "$1"; }

# strace -c table -> "syscall calls" lines, plus "total N".
syscalls_of() {
    awk '$1 ~ /^[0-9.]+$/ && NF >= 5 { print $NF, $4 }' "$1"
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
declare -A IRQ SCQ SCTOP

measure_case() { # measure_case SERVER CASE
    local s=$1 c=$2 n1 n2 d2 i1 i2
    n1=$(count_of "$c" small)
    n2=$(count_of "$c" large)
    one_run callgrind "$s" "$c" "$n2" 0 "$TMP/cg.$s.$c.2" || return 1
    d2=$LOAD_SECS
    one_run callgrind "$s" "$c" "$n1" "$d2" "$TMP/cg.$s.$c.1" || return 1
    i1=$(ir_total "$TMP/cg.$s.$c.1")
    i2=$(ir_total "$TMP/cg.$s.$c.2")
    IRQ[$s,$c]=$(awk -v a="$i1" -v b="$i2" -v n="$((n2 - n1))" 'BEGIN { printf "%.0f", (b - a) / n }')
    log "$s $c: Ir $i1 at $n1 queries, $i2 at $n2 (load ${d2}s): ${IRQ[$s,$c]} Ir/query"
    printf 'ir\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$c" "$n1" "$i1" "$n2" "$i2" "${IRQ[$s,$c]}" >>"$RESULTS"
    if [[ $STRACE -eq 1 ]]; then
        one_run strace "$s" "$c" "$n2" 0 "$TMP/st.$s.$c.2" || return 1
        # No idling here: an idle server makes syscalls a busy one does not
        # (steerdns's UDP worker wakes every 100 ms to check for shutdown).
        one_run strace "$s" "$c" "$n1" 0 "$TMP/st.$s.$c.1" || return 1
        syscalls_of "$TMP/st.$s.$c.1" >"$TMP/sc1"
        syscalls_of "$TMP/st.$s.$c.2" >"$TMP/sc2"
        # Per syscall: (calls at N2 - calls at N1) / (N2 - N1); top 4 shown.
        SCTOP[$s,$c]=$(awk -v n="$((n2 - n1))" 'NR == FNR { a[$1] = $2; next }
            { d = ($2 - a[$1]) / n; if ($1 != "total" && d >= 0.005) printf "%s %.2f\n", $1, d }' \
            "$TMP/sc1" "$TMP/sc2" | sort -k2,2nr | head -4 | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
        SCQ[$s,$c]=$(awk -v n="$((n2 - n1))" 'NR == FNR { if ($1 == "total") a = $2; next }
            $1 == "total" { printf "%.2f", ($2 - a) / n }' "$TMP/sc1" "$TMP/sc2")
        log "$s $c: ${SCQ[$s,$c]} syscalls/query (${SCTOP[$s,$c]})"
        printf 'sys\t%s\t%s\t%s\t%s\n' "$s" "$c" "$((n2 - n1))" "${SCQ[$s,$c]}" >>"$RESULTS"
    fi
}

# Top functions per query: the difference of two callgrind_annotate tables.
profile() { # profile SERVER CASE
    local s=$1 c=$2 n
    n=$(($(count_of "$c" large) - $(count_of "$c" small)))
    for k in 1 2; do
        callgrind_annotate --inclusive=no --threshold=100 "$TMP/cg.$s.$c.$k" 2>/dev/null |
            awk '/^ *[0-9,]+ \( *[0-9.]+%\)  / && !/PROGRAM TOTALS/ {
                v = $1; gsub(",", "", v); sub(/^ *[0-9,]+ \( *[0-9.]+%\)  /, ""); sub(/ \[[^]]*\]$/, "")
                sub(/^[^:]*:/, ""); f[$0] += v } END { for (k in f) print f[k] "\t" k }' >"$TMP/prof.$k"
    done
    echo "  $s $c, Ir/query by function (self cost, top 15):"
    awk -F'\t' -v n="$n" 'NR == FNR { a[$2] = $1; next } { d = ($1 - a[$2]) / n; if (d >= 1) printf "%8.0f  %s\n", d, $2 }' \
        "$TMP/prof.1" "$TMP/prof.2" | sort -k1,1nr | head -15 | cut -c1-150
}

for s in "${ACTIVE[@]}"; do
    for c in $CASES; do
        if ! can_do "$s" "$c"; then
            SKIPPED+=("$s $c: not supported by its bench config")
            continue
        fi
        if ! measure_case "$s" "$c"; then
            SKIPPED+=("$s $c: not measured (see the log above)")
        fi
    done
done

# --- report ---------------------------------------------------------------------
peer_version() {
    case "$1" in
        steerdns) echo "steerdns $STEERDNS" ;;
        gdnsd) echo "gdnsd $(dpkg-query -W -f='${Version}' gdnsd 2>/dev/null || echo '?')" ;;
        knot) echo "knot $(dpkg-query -W -f='${Version}' knot 2>/dev/null || echo '?')" ;;
    esac
}
echo
echo "machine:  $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
dirty=""
[[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" (with uncommitted changes)"
echo "commit:   $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
echo "tools:    $(valgrind --version)$([[ $STRACE -eq 1 ]] && echo ", $(strace -V | head -1)")"
echo "servers:  $(for s in "${ACTIVE[@]}"; do printf '%s; ' "$(peer_version "$s")"; done)"
echo "database: $(basename "$MMDB")"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "queries:  N1=$(count_of static small), N2=$(count_of static large) per case (tcp1: $(count_of tcp1 small), $(count_of tcp1 large)); per query = difference / (N2 - N1)"
echo
header="case"
for s in "${ACTIVE[@]}"; do header+=$'\t'"$s Ir/q"; done
for s in "${ACTIVE[@]}"; do [[ $s != steerdns ]] && header+=$'\t'"steerdns/$s"; done
{
    echo "$header"
    for c in $CASES; do
        line=$c
        for s in "${ACTIVE[@]}"; do line+=$'\t'"${IRQ[$s,$c]:--}"; done
        for s in "${ACTIVE[@]}"; do
            [[ $s == steerdns ]] && continue
            a=${IRQ[steerdns,$c]:-}
            b=${IRQ[$s,$c]:-}
            if [[ -n $a && -n $b && $b != 0 ]]; then
                line+=$'\t'$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
            else
                line+=$'\t-'
            fi
        done
        echo "$line"
    done
} | column -t -s $'\t'
if [[ $STRACE -eq 1 ]]; then
    echo
    echo "syscalls per query (strace -c -f; the largest ones in brackets):"
    for c in $CASES; do
        for s in "${ACTIVE[@]}"; do
            [[ -n ${SCQ[$s,$c]:-} ]] && printf '  %-10s %-9s %6s  (%s)\n' "$c" "$s" "${SCQ[$s,$c]}" "${SCTOP[$s,$c]}"
        done
    done
fi
if [[ $PROFILE -eq 1 && " ${ACTIVE[*]} " == *" steerdns "* ]]; then
    echo
    for c in $CASES; do
        [[ -n ${IRQ[steerdns,$c]:-} ]] && profile steerdns "$c"
    done
fi
if [[ -n $TSV ]]; then
    cp "$RESULTS" "$TSV"
fi
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    echo
    echo "skipped:"
    printf '  %s\n' "${SKIPPED[@]}"
fi
