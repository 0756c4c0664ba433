#!/usr/bin/env bash
# End-to-end anycast test with real BIRD routers in network namespaces.
#
#            client (10.99.3.2)
#               |
#            router (BIRD, AS 65000) ---- n2 (steerdns + BIRD, AS 65002)
#               |
#              n1 (steerdns + BIRD, AS 65001)
#
# Both nodes announce 192.0.2.53/32 and 2001:db8:53::53/128 by BGP (one
# session per family) while their steerdns lets them;
# the router prefers n1 (lower router id) when both announce. The client
# asks `dig +nsid @192.0.2.53` and sees which node answered. Cases: a
# broken reload keeps n1 announced; a failing self-check (n1's own queries
# to the anycast address refused by a policy rule) withdraws n1; SIGSTOP
# and SIGKILL of n1's steerdns
# move the client to n2 within 3 s (measured); a restart comes back after
# the hold-down; SIGTERM drains with no failed query.
#
# Needs root (network namespaces); installs bird2, iproute2 and dnsutils
# with apt-get when missing. Every namespace and process it creates is
# removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bird >/dev/null || ! command -v birdc >/dev/null || ! command -v dig >/dev/null || ! command -v ip >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "anycast_netns: needs root (network namespaces, apt-get); skipped"
    exit 0
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bird2 iproute2 dnsutils >/dev/null
fi
bin=${STEERDNS_BIN:-target/debug/steerdns}
if [ -z "${STEERDNS_BIN:-}" ]; then
  cargo build --quiet
fi
bin=$(realpath "$bin")

# --- the configs of docs/anycast.md: steerdns check and bird -p -----------
# Each block after a `<!-- check: steerdns|bird FILE -->` line is written to
# FILE and checked. The GeoIP path of the docs points at a real database
# in production; here the repository's sample database stands in.
docs=$(mktemp -d /tmp/steerdns-anycast-docs.XXXXXX)
awk -v dir="$docs" '
  /^<!-- check: (steerdns|bird) [^ ]+ -->$/ { kind = $3; file = $4; want = 1; next }
  want && /^```/ { want = 0; inblock = 1; out = dir "/" kind "-" file; next }
  inblock && /^```$/ { inblock = 0; close(out); next }
  inblock { print > out }
' docs/anycast.md
n_docs=0
for f in "$docs"/steerdns-*; do
  sed -i "s#/var/lib/steerdns/GeoLite2-City.mmdb#$(pwd)/geoip/sample.mmdb#" "$f"
  "$bin" check --config "$f" >/dev/null 2>&1 || { echo "FAIL: docs/anycast.md: $(basename "$f")"; "$bin" check --config "$f"; exit 1; }
  n_docs=$((n_docs + 1))
done
for f in "$docs"/bird-*; do
  bird -p -c "$f" || { echo "FAIL: docs/anycast.md: $(basename "$f") does not parse"; exit 1; }
  n_docs=$((n_docs + 1))
done
rm -rf "$docs"
[ "$n_docs" -ge 5 ] || { echo "FAIL: docs/anycast.md: only $n_docs config blocks found"; exit 1; }
echo "ok   docs/anycast.md: $n_docs configs pass steerdns check / bird -p"

if [ "$(id -u)" -ne 0 ]; then
  echo "anycast_netns: needs root (network namespaces); skipped"
  exit 0
fi

HOLD_DOWN_MS=2000
DRAIN_MS=3000
ANYCAST=192.0.2.53
ANYCAST6=2001:db8:53::53
tag=$$
R=sdr$tag; N1=sdn1$tag; N2=sdn2$tag; C=sdc$tag
work=$(mktemp -d /tmp/steerdns-anycast.XXXXXX)
declare -A SPID=()   # node -> steerdns pid

cleanup() {
  set +e
  for ns in "$R" "$N1" "$N2" "$C"; do
    # Everything in these namespaces was started by this script: BIRD,
    # steerdns, its guard, stray digs. Continue stopped ones, then kill.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  done
  for ns in "$R" "$N1" "$N2" "$C"; do
    ip netns del "$ns" 2>/dev/null
  done
  if [ "${KEEP_LOGS:-}" = "" ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*"
  for n in n1 n2; do
    echo "--- $n steerdns log (last 40 lines)"; tail -n 40 "$work/$n/steerdns.log" 2>/dev/null
  done
  echo "--- router routes"; birdc -s "$work/r/bird.ctl" show route all 2>/dev/null
  exit 1
}

now_ms() { date +%s%3N; }
inn() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- namespaces and links -------------------------------------------------
for ns in "$R" "$N1" "$N2" "$C"; do
  ip netns add "$ns"
  inn "$ns" ip link set lo up
done
link() { # link NODE_NS IFACE_IN_R IFACE_IN_NODE SUBNET_OCTET
  ip -n "$R" link add "$2" type veth peer name "$3" netns "$1"
  ip -n "$R" addr add "10.99.$4.1/30" dev "$2"
  ip -n "$1" addr add "10.99.$4.2/30" dev "$3"
  ip -n "$R" link set "$2" up
  ip -n "$1" link set "$3" up
  ip -n "$1" route add default via "10.99.$4.1"
  ip -n "$R" addr add "fd99:$4::1/64" dev "$2" nodad
  ip -n "$1" addr add "fd99:$4::2/64" dev "$3" nodad
  ip -n "$1" -6 route add default via "fd99:$4::1"
}
link "$N1" rn1 up1 1
link "$N2" rn2 up2 2
link "$C" rc up3 3
inn "$R" sysctl -qw net.ipv4.ip_forward=1
inn "$R" sysctl -qw net.ipv6.conf.all.forwarding=1
for ns in "$N1" "$N2"; do
  ip -n "$ns" addr add "$ANYCAST/32" dev lo
  ip -n "$ns" addr add "$ANYCAST6/128" dev lo
done
# Room for a rule in front of the local table in n1 (the self-check case).
ip -n "$N1" rule add pref 100 lookup local
ip -n "$N1" rule del pref 0

# --- BIRD -----------------------------------------------------------------
mkdir -p "$work/r" "$work/n1" "$work/n2"
cat >"$work/r/bird.conf" <<CONF
router id 10.99.0.1;
protocol device { scan time 10; }
protocol kernel { ipv4 { import none; export all; }; }
protocol kernel { ipv6 { import none; export all; }; }
template bgp node {
  local as 65000;
  connect delay time 1; connect retry time 1; error wait time 1, 5;
  hold time 6; keepalive time 2;
}
protocol bgp n1 from node { neighbor 10.99.1.2 as 65001; ipv4 { import all; export none; }; }
protocol bgp n2 from node { neighbor 10.99.2.2 as 65002; ipv4 { import all; export none; }; }
protocol bgp n1v6 from node { neighbor fd99:1::2 as 65001; ipv6 { import all; export none; }; }
protocol bgp n2v6 from node { neighbor fd99:2::2 as 65002; ipv6 { import all; export none; }; }
CONF
node_bird_conf() { # node_bird_conf N ASN
  # The docs' node config (docs/anycast.md), with this test's addresses.
  cat <<CONF
router id 10.99.$1.2;
protocol device { scan time 10; }
# steerdns enables this protocol while the node may announce; it starts
# disabled, so neither a BIRD restart nor a node without steerdns announces.
protocol static steerdns_anycast4 {
  disabled yes;
  ipv4;
  route $ANYCAST/32 blackhole;
}
protocol static steerdns_anycast6 {
  disabled yes;
  ipv6;
  route $ANYCAST6/128 blackhole;
}
template bgp up {
  local as $2;
  connect delay time 1; connect retry time 1; error wait time 1, 5;
  hold time 6; keepalive time 2;
}
protocol bgp uplink4 from up {
  neighbor 10.99.$1.1 as 65000;
  ipv4 { import none; export where proto = "steerdns_anycast4"; };
}
protocol bgp uplink6 from up {
  neighbor fd99:$1::1 as 65000;
  ipv6 { import none; export where proto = "steerdns_anycast6"; };
}
CONF
}
node_bird_conf 1 65001 >"$work/n1/bird.conf"
node_bird_conf 2 65002 >"$work/n2/bird.conf"
for n in r n1 n2; do
  bird -p -c "$work/$n/bird.conf"
done
inn "$R" bird -c "$work/r/bird.conf" -s "$work/r/bird.ctl" -P "$work/r/bird.pid"
inn "$N1" bird -c "$work/n1/bird.conf" -s "$work/n1/bird.ctl" -P "$work/n1/bird.pid"
inn "$N2" bird -c "$work/n2/bird.conf" -s "$work/n2/bird.ctl" -P "$work/n2/bird.pid"

# --- steerdns -------------------------------------------------------------
node_config() { # node_config NAME
  cat <<CONF
[server]
node_name = "$1"
dns_listen = ["0.0.0.0:53", "[::]:53"]
http_listen = "127.0.0.1:9153"
udp_workers = 1
watch_interval = "0s"

[zones."anycast.test"]
ns = ["ns1"]
records = [
  { name = "ns1", type = "A", data = "$ANYCAST" },
  { name = "www", type = "A", data = "192.0.2.80" },
]

[anycast]
prefixes = ["$ANYCAST/32", "$ANYCAST6/128"]
bird_socket = "$work/$1/bird.ctl"
bird_protocols = ["steerdns_anycast4", "steerdns_anycast6"]
hold_down = "${HOLD_DOWN_MS}ms"
drain = "${DRAIN_MS}ms"
lease = "1s"
CONF
}
nsof() { if [ "$1" = n1 ]; then echo "$N1"; else echo "$N2"; fi; }
start_node() { # start_node NAME
  local ns; ns=$(nsof "$1")
  node_config "$1" >"$work/$1/steerdns.toml"
  "$bin" check --config "$work/$1/steerdns.toml" >/dev/null
  ip netns exec "$ns" "$bin" serve --config "$work/$1/steerdns.toml" >>"$work/$1/steerdns.log" 2>&1 &
  SPID[$1]=$!
  disown "${SPID[$1]}"
}
start_node n1
start_node n2

# Which nodes the router has routes from: "n1 n2", "n1", "n2" or "" when
# both families agree; "v4[...] v6[...]" when they differ.
router_paths() {
  local out4 out6 p4="" p6=""
  out4=$(birdc -s "$work/r/bird.ctl" show route "$ANYCAST/32" all 2>/dev/null || true)
  out6=$(birdc -s "$work/r/bird.ctl" show route "$ANYCAST6/128" all 2>/dev/null || true)
  grep -q 'via 10.99.1.2' <<<"$out4" && p4="n1"
  grep -q 'via 10.99.2.2' <<<"$out4" && p4="${p4:+$p4 }n2"
  grep -q 'via fd99:1::2' <<<"$out6" && p6="n1"
  grep -q 'via fd99:2::2' <<<"$out6" && p6="${p6:+$p6 }n2"
  if [ "$p4" = "$p6" ]; then echo "$p4"; else echo "v4[$p4] v6[$p6]"; fi
}
# The node that answers the client now (its NSID), or "none".
ask() { # ask [ADDRESS]
  local out
  out=$(inn "$C" dig @"${1:-$ANYCAST}" +nsid +time=1 +tries=1 www.anycast.test 2>/dev/null || true)
  if grep -q 'status: NOERROR' <<<"$out" && grep -q '192\.0\.2\.80' <<<"$out"; then
    grep -o 'NSID: .*("[^"]*")' <<<"$out" | sed 's/.*("\(.*\)")/\1/' || echo "?"
  else
    echo none
  fi
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND... (bounded)
  local limit=$1 what=$2; shift 2
  local end=$(( $(now_ms) + limit * 1000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  fail "timed out after ${limit}s waiting for: $what"
}
paths_are() { [ "$(router_paths)" = "$1" ]; }
answers_from() { [ "$(ask)" = "$1" ]; }
answers6_from() { [ "$(ask "$ANYCAST6")" = "$1" ]; }

wait_for 30 "both nodes announced at the router" paths_are "n1 n2"
wait_for 5 "the client answered by n1" answers_from n1
wait_for 5 "the client answered by n1 over IPv6" answers6_from n1
echo "ok   both nodes announce IPv4 and IPv6; the client is answered by n1 (NSID) on both"

# Probe the anycast address every 100 ms for SECONDS in the background, one
# dig each (so a probe stuck on a stopped node does not delay the others);
# lines "start_ms node end_ms".
probe() { # probe SECONDS FILE
  local n=$(( $1 * 10 )) i
  : >"$2"
  for i in $(seq 1 "$n"); do
    ( s=$(now_ms); r=$(ask); echo "$s $r $(now_ms)" >>"$2" ) &
    sleep 0.1
  done
  wait
}
# The first query (by start time) answered by NODE: its start, or with a
# third argument "end", the time its answer came back.
first_from() { sort -n "$1" | awk -v n="$2" -v col="${3:-start}" '$2 == n { print (col == "end" ? $3 : $1); exit }'; }
last_from() { sort -n "$1" | awk -v n="$2" '$2 == n { t = $1 } END { print t }'; }

# --- a broken reload keeps the route and the client -----------------------
cp "$work/n1/steerdns.toml" "$work/n1/good.toml"
echo 'this is = not [valid' >>"$work/n1/steerdns.toml"
kill -HUP "${SPID[n1]}"
wait_for 10 "n1 logs the refused reload" grep -q "reload failed, keeping the old config" "$work/n1/steerdns.log"
for _ in 1 2 3 4 5 6; do
  [ "$(router_paths)" = "n1 n2" ] || fail "n1's route changed after a refused reload: $(router_paths)"
  [ "$(ask)" = n1 ] || fail "the client left n1 after a refused reload"
  sleep 0.5
done
status=$(inn "$N1" "$bin" anycast status --api 127.0.0.1:9153)
grep -q 'ANNOUNCED' <<<"$status" || fail "anycast status after a refused reload: $status"
cp "$work/n1/good.toml" "$work/n1/steerdns.toml"
echo "ok   a refused reload on n1 keeps its route and the client (3 s watched)"

# --- the self-check fails while the process runs --------------------------
# Queries n1 sends to its own anycast address are refused by a policy rule
# (clients' queries arrive on the uplink and are still answered): only the
# self-check through the listener path fails, and that alone must withdraw.
t0=$(now_ms)
ip -n "$N1" rule add pref 10 iif lo to "$ANYCAST" prohibit
f="$work/probe-selfcheck"
probe 4 "$f"
answered=$(first_from "$f" n2 end)
[ -n "$answered" ] || fail "self-check failure: the client never reached n2"
ms=$(( answered - t0 ))
[ "$ms" -le 3000 ] || fail "self-check failure: withdrawn after ${ms} ms (> 3000)"
[ "$(router_paths)" = "n2" ] || fail "n1 with a failing self-check is still announced: $(router_paths)"
grep -q "anycast: withdrawing .*DNS self-check failed" "$work/n1/steerdns.log" || fail "no withdrawal log line on n1"
SELFCHECK_MS=$ms
t0=$(now_ms)
ip -n "$N1" rule del pref 10
wait_for 15 "n1 back after its self-check passes again" paths_are "n1 n2"
back=$(( $(now_ms) - t0 ))
[ "$back" -ge "$HOLD_DOWN_MS" ] || fail "n1 came back after ${back} ms, before its hold-down"
wait_for 5 "the client back on n1" answers_from n1
echo "ok   self-check to the anycast address fails on n1: the client moved to n2 after ${ms} ms; back ${back} ms after it passes again"

# --- SIGSTOP: a hung node --------------------------------------------------
failover_case() { # failover_case SIGNAL -> ms from the signal to the first answer from n2
  local t0 f first answered
  f="$work/probe-$1"
  t0=$(now_ms)
  kill "-$1" "${SPID[n1]}"
  probe 5 "$f"
  first=$(first_from "$f" n2)
  answered=$(first_from "$f" n2 end)
  [ -n "$first" ] || fail "SIG$1: the client never reached n2: $(sort -n "$f" | tr '\n' ' ')"
  last1=$(last_from "$f" n1)
  if [ -n "$last1" ] && [ "$last1" -gt "$first" ]; then
    fail "SIG$1: n1 answered again after the failover"
  fi
  # Counted to the moment the answer arrived (dig's own start-up time
  # included), so the number errs on the slow side.
  echo $(( answered - t0 ))
}
ms=$(failover_case STOP)
[ "$(router_paths)" = "n2" ] || fail "a stopped n1 is still announced: $(router_paths)"
[ "$ms" -le 3000 ] || fail "SIGSTOP failover took ${ms} ms (> 3000)"
echo "ok   SIGSTOP of n1's steerdns: the client moved to n2 after ${ms} ms; n1 withdrawn"
STOP_MS=$ms
for _ in 1 2 3; do
  [ "$(router_paths)" = "n2" ] || fail "a stopped n1 came back: $(router_paths)"
  sleep 0.5
done
t0=$(now_ms)
kill -CONT "${SPID[n1]}"
wait_for 15 "n1 back at the router after SIGCONT" paths_are "n1 n2"
back=$(( $(now_ms) - t0 ))
[ "$back" -ge "$HOLD_DOWN_MS" ] || fail "n1 came back after ${back} ms, before its hold-down"
wait_for 5 "the client back on n1" answers_from n1
echo "ok   SIGCONT: n1 re-announced after ${back} ms (hold-down ${HOLD_DOWN_MS} ms)"

# --- SIGKILL: a dead node -----------------------------------------------------
guard=$(inn "$N1" "$bin" anycast status --api 127.0.0.1:9153 --json | sed -n 's/.*"guard_pid": *\([0-9]*\).*/\1/p')
ms=$(failover_case KILL)
[ "$ms" -le 3000 ] || fail "SIGKILL failover took ${ms} ms (> 3000)"
[ "$(router_paths)" = "n2" ] || fail "a killed n1 is still announced: $(router_paths)"
if [ -n "$guard" ]; then
  wait_for 5 "n1's guard exits after its steerdns died" bash -c "! kill -0 $guard 2>/dev/null"
fi
wait_for 3 "the client on n2 over IPv6 too" answers6_from n2
echo "ok   SIGKILL of n1's steerdns: the client moved to n2 after ${ms} ms (IPv6 too); n1 withdrawn; guard gone"
KILL_MS=$ms
t0=$(now_ms)
start_node n1
wait_for 15 "n1 back at the router after a restart" paths_are "n1 n2"
back=$(( $(now_ms) - t0 ))
[ "$back" -ge "$HOLD_DOWN_MS" ] || fail "restarted n1 announced after ${back} ms, before its hold-down"
wait_for 5 "the client back on n1 after the restart" answers_from n1
wait_for 5 "the client back on n1 over IPv6" answers6_from n1
echo "ok   restart: n1 re-announced after ${back} ms (hold-down ${HOLD_DOWN_MS} ms)"
RESTART_MS=$back

# --- SIGTERM: lame duck, no failed query --------------------------------------
qlog="$work/drain"
: >"$qlog"
t0=$(now_ms)
(
  # A bounded, sequential query loop across the drain and past it.
  end=$(( $(now_ms) + DRAIN_MS + 3000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    s=$(now_ms); r=$(ask); echo "$s $r $(now_ms)" >>"$qlog"
    sleep 0.05
  done
) &
loop=$!
sleep 0.5
term_at=$(now_ms)
kill -TERM "${SPID[n1]}"
wait_for $(( DRAIN_MS / 1000 + 5 )) "n1 exits after its drain" bash -c "! kill -0 ${SPID[n1]} 2>/dev/null"
exited=$(( $(now_ms) - term_at ))
wait "$loop"
[ "$exited" -ge $(( DRAIN_MS - 100 )) ] || fail "SIGTERM: n1 exited after ${exited} ms, before its ${DRAIN_MS} ms drain"
total=$(wc -l <"$qlog")
failed=$(awk '$2 != "n1" && $2 != "n2"' "$qlog" | wc -l)
moved=$(first_from "$qlog" n2 end)
[ -n "$moved" ] || fail "SIGTERM: the client never moved to n2"
[ "$total" -ge 20 ] || fail "SIGTERM: only $total queries sent"
[ "$failed" -eq 0 ] || fail "SIGTERM: $failed of $total queries failed: $(awk '$2 != "n1" && $2 != "n2"' "$qlog" | tr '\n' ' ')"
[ "$(router_paths)" = "n2" ] || fail "a stopped n1 is still announced: $(router_paths)"
echo "ok   SIGTERM of n1: withdrawn, answered ${exited} ms more (drain ${DRAIN_MS} ms); $total queries, $failed failed; the client moved to n2 after $(( moved - term_at )) ms"

echo "anycast failover: self-check failure ${SELFCHECK_MS} ms, SIGSTOP ${STOP_MS} ms, SIGKILL ${KILL_MS} ms; restart re-announced after ${RESTART_MS} ms (hold-down ${HOLD_DOWN_MS} ms); SIGTERM drain: ${failed}/${total} queries failed"
echo "anycast end to end: all checks passed"
