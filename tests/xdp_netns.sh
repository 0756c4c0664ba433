#!/usr/bin/env bash
# End-to-end test of the AF_XDP listener (server.xdp_interface) on a veth
# pair between two network namespaces:
#
#   client ns: veth 10.77.0.2 fd77::2  <---->  server ns: veth 10.77.0.1 fd77::1
#                                               steerdns, xdp_interface = veth
#
# The server namespace drops UDP to port 53 in its netfilter input chain
# (nft), so a UDP answer can only have come through AF_XDP (XDP runs before
# netfilter). Checks: static, geo by client address (no ECS; that address
# comes from the IP header the XDP path parses), geo + ECS, NXDOMAIN, AAAA
# over IPv6, TCP (the kernel path) still served, ping (v4 and v6) passes
# the program, the listener's own count of answers at stop, and that SIGTERM
# and SIGKILL both leave the interface without an XDP program, and that a
# burst found in one wake-up is answered and then coalesced. Frames the
# program does not fully parse must reach the kernel (the nft counter moves)
# instead of AF_XDP: IPv4 with options, IPv4 fragments, IPv6 with a
# destination-options header, IPv6 fragments, and a query on a VLAN; the
# program's count of what it passed (steerdns_xdp_frames_total{result=
# "passed"}) grows by at least the frames sent that way, and not by UDP
# queries.
#
# Needs root; installs iproute2, dnsutils, nftables and iputils-ping with
# apt-get when missing. Skips (exit 0, "skipped: ...") only when the kernel
# has no AF_XDP. Every namespace and process it creates is removed on exit,
# also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "xdp_netns: FAIL: needs root (network namespaces, XDP)" >&2
  exit 1
fi
if ! command -v dig >/dev/null || ! command -v ip >/dev/null || ! command -v nft >/dev/null || ! command -v ping >/dev/null || ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 dnsutils nftables iputils-ping python3 curl >/dev/null
fi
bin=${STEERDNS_BIN:-target/debug/steerdns}
if [ -z "${STEERDNS_BIN:-}" ]; then
  cargo build --quiet
fi
bin=$(realpath "$bin")

tag=$$
S=sdxs$tag; C=sdxc$tag
VS=sdxs$tag; VC=sdxc$tag   # veth ends (names live in different namespaces)
work=$(mktemp -d -t steerdns-xdp.XXXXXX)
spid=""

cleanup() {
  set +e
  for ns in "$S" "$C"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  [ -n "$spid" ] && wait "$spid" 2>/dev/null
  # Deleting the namespaces deletes the veth pair (and with it any program).
  for ns in "$S" "$C"; do ip netns del "$ns" 2>/dev/null; done
  if [ "${KEEP_LOGS:-}" = "" ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }

ip netns add "$S"
ip netns add "$C"
ip link add "$VS" netns "$S" type veth peer name "$VC" netns "$C"
ip -n "$S" addr add 10.77.0.1/24 dev "$VS"
ip -n "$S" addr add fd77::1/64 dev "$VS" nodad
ip -n "$C" addr add 10.77.0.2/24 dev "$VC"
ip -n "$C" addr add fd77::2/64 dev "$VC" nodad
for ns in "$S" "$C"; do ip -n "$ns" link set lo up; done
ip -n "$S" link set "$VS" up
ip -n "$C" link set "$VC" up

# The shipped example, listening on the veth addresses with AF_XDP on, and
# overrides that place the client's own addresses (no ECS) in the US / JP.
cfg=$work/steerdns.toml
sed -e "s#^dns_listen = .*#dns_listen = [\"10.77.0.1:53\", \"[fd77::1]:53\"]\nxdp_interface = \"$VS\"#" \
    -e "s#\"../geoip/sample.mmdb\"#\"$(pwd)/geoip/sample.mmdb\"#" \
    config/example.toml >"$cfg"
cat >>"$cfg" <<'EOF'

[[geoip.override]]
cidr = "10.77.0.0/24"
country = "US"

[[geoip.override]]
cidr = "fd77::/64"
country = "JP"
EOF
"$bin" check --config "$cfg" >/dev/null 2>&1 || { "$bin" check --config "$cfg"; exit 1; }

start_server() { # start_server LOG: starts steerdns in $S, sets spid
  ip netns exec "$S" env NO_COLOR=1 "$bin" serve --config "$cfg" >"$1" 2>&1 &
  spid=$!
  for _ in $(seq 1 100); do
    if grep -q 'listening proto=udp-xdp' "$1"; then return 0; fi
    if grep -q 'AF_XDP listener refused' "$1"; then return 1; fi
    if ! kill -0 "$spid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

log=$work/server.log
if ! start_server "$log"; then
  if grep -q 'the kernel has no AF_XDP' "$log"; then
    echo "xdp_netns: skipped: the kernel has no AF_XDP ($(grep -o 'xdp_interface.*' "$log" | head -1))"
    exit 0
  fi
  echo "FAIL: the AF_XDP listener did not start:"; cat "$log"; exit 1
fi
grep -o 'listening proto=udp-xdp.*' "$log" | sed 's/^/     /'
if ip -n "$S" link show "$VS" | grep -Eq 'xdp(generic)?.*prog/xdp id|prog/xdp id'; then
  ok "XDP program attached to $VS"
else
  fail "no XDP program on $VS:"; ip -n "$S" link show "$VS"
fi

# From here on UDP to port 53 never reaches a socket in the server ns.
ip netns exec "$S" nft -f - <<'EOF'
table inet sdxdp {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport 53 counter drop
  }
}
EOF

queries=0
expect() { # expect DESCRIPTION PATTERN -- dig args...
  local what=$1 pattern=$2; shift 3
  local out
  out=$(ip netns exec "$C" dig +time=2 +tries=2 "$@" 2>&1) || true
  queries=$((queries + 1))
  if grep -Eq "$pattern" <<<"$out"; then ok "$what"; else fail "$what: expected /$pattern/ in:"; echo "$out"; fi
}
expect "static A"               'static\.lb\.example\.com\.\s+300\s+IN\s+A\s+192\.0\.2\.1$' -- @10.77.0.1 static.lb.example.com
expect "aa flag"                'flags: qr aa'                                              -- @10.77.0.1 static.lb.example.com
expect "geo by client address"  'www\.lb\.example\.com\.\s+30\s+IN\s+A\s+198\.51\.100\.10'  -- @10.77.0.1 www.lb.example.com
expect "geo + ECS -> eu"        'www\.lb\.example\.com\.\s+30\s+IN\s+A\s+192\.0\.2\.10'     -- @10.77.0.1 www.lb.example.com +subnet=81.2.69.0/24
expect "ECS scope echoed"       'CLIENT-SUBNET: 81\.2\.69\.0/24/[1-9][0-9]*$'                  -- @10.77.0.1 www.lb.example.com +subnet=81.2.69.0/24
expect "geo + ECS -> ap"        'IN\s+A\s+203\.0\.113\.10'                                  -- @10.77.0.1 www.lb.example.com +subnet=203.2.218.0/24
expect "NXDOMAIN"               'status: NXDOMAIN'                                          -- @10.77.0.1 nope.lb.example.com
expect "IPv6: geo by address"   'IN\s+AAAA\s+2001:db8:f::10'                                -- @fd77::1 www.lb.example.com AAAA
expect "IPv6: static"           'IN\s+A\s+192\.0\.2\.1$'                                    -- @fd77::1 static.lb.example.com
expect "IPv6: NXDOMAIN"         'status: NXDOMAIN'                                          -- @fd77::1 nope.lb.example.com
expect "NSID"                   'NSID: .*example-node-1'                                    -- @10.77.0.1 +nsid static.lb.example.com
udp_queries=$queries

# The program's pass count as /metrics has it, fresh: the metrics are
# carried once a second and an idle worker's poll count moves every 100 ms,
# so once the poll count differs from a first read, the values come from a
# carry made after this call began (bounded wait).
scrape() { # prints "polls passed" from one /metrics read
  ip netns exec "$S" curl -sf http://127.0.0.1:9153/metrics 2>/dev/null |
    awk '$1 == "steerdns_xdp_waits_total{kind=\"poll\"}" {p = $2}
         $1 == "steerdns_xdp_frames_total{result=\"passed\"}" {x = $2}
         END {if (p != "" && x != "") print p, x}' || true
}
fresh_passed() {
  local first now
  first=$(scrape)
  for _ in $(seq 1 50); do
    sleep 0.1
    now=$(scrape)
    if [ -n "$first" ] && [ -n "$now" ] && [ "${now% *}" != "${first% *}" ]; then
      echo "${now#* }"; return 0
    fi
    [ -z "$first" ] && first=$now
  done
  echo none
}
passed_before=$(fresh_passed)
expect "TCP (kernel path)"      'IN\s+A\s+192\.0\.2\.1$'                                    -- @10.77.0.1 +tcp static.lb.example.com
if ip netns exec "$C" ping -c 2 -W 2 -q 10.77.0.1 >/dev/null; then ok "ping passes the program"; else fail "ping 10.77.0.1"; fi
if ip netns exec "$C" ping -6 -c 2 -W 2 -q fd77::1 >/dev/null; then ok "ping -6 passes the program"; else fail "ping -6 fd77::1"; fi
dropped=$(ip netns exec "$S" nft list chain inet sdxdp input | grep -o 'packets [0-9]*' | awk '{print $2}')
if [ "${dropped:-0}" -eq 0 ]; then ok "no UDP query reached the kernel's input (nft counter 0)"; else fail "$dropped UDP packets reached netfilter"; fi

# Frames the program must pass: each one has to show up in the kernel's
# input chain (the nft counter grows by its packets), where it is dropped.
nft_count() { ip netns exec "$S" nft list chain inet sdxdp input | grep -o 'packets [0-9]*' | awk '{print $2}'; }
mac_of() { ip -n "$1" -o link show "$2" | grep -o 'ether [0-9a-f:]*' | cut -d' ' -f2; }
# send_odd KIND: one DNS query for static.lb.example.com, shaped as KIND.
send_odd() {
  ip netns exec "$C" python3 - "$1" "$VC" "$(mac_of "$C" "$VC")" "$(mac_of "$S" "$VS")" <<'PY'
import socket, struct, sys
kind, dev, src_mac, dst_mac = sys.argv[1:5]
q = struct.pack(">HHHHHH", 0x5d5d, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l for l in b"static.lb.example.com".split(b".")) + b"\0"
q += struct.pack(">HH", 1, 1)
if kind in ("v4-frag", "v6-frag"):
    q += b"\0" * 2000  # trailing junk: the datagram needs two fragments
if kind == "vlan":
    # A raw 802.1Q frame to the AF_XDP address and port.
    udp = struct.pack(">HHHH", 40000, 53, 8 + len(q), 0) + q
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1"))
    words = struct.unpack(">10H", ip)
    c = sum(words)
    while c >> 16:
        c = (c & 0xFFFF) + (c >> 16)
    ip = ip[:10] + struct.pack(">H", ~c & 0xFFFF) + ip[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    frame = mac(dst_mac) + mac(src_mac) + struct.pack(">HHH", 0x8100, 7, 0x0800) + ip + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((dev, 0))
    s.send(frame)
elif kind.startswith("v6"):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    if kind == "v6-dstopts":
        # Destination options header, one PadN: 8 bytes, next header by the kernel.
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
    s.sendto(q, ("fd77::1", 53))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if kind == "v4-options":
        s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 1, 1, 0]))  # NOP NOP NOP EOL
    if kind == "v4-frag":
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    s.sendto(q, ("10.77.0.1", 53))
if kind == "plain":
    s.settimeout(3)
    r = s.recv(65535)
    print("answered" if r[:2] == q[:2] and r[2] & 0x80 else "bad reply")
PY
}
# Control: the same query, plain, goes to AF_XDP (answered, counter still).
before=$(nft_count)
plain=$(send_odd plain 2>&1 || true)
after=$(nft_count)
if [ "$plain" = answered ] && [ "$after" -eq "$before" ]; then ok "plain query from the same sender: AF_XDP answered it"; else fail "plain control: '$plain', nft $before -> $after"; fi
for kind in v4-options v4-frag v6-dstopts v6-frag; do
  before=$(nft_count)
  send_odd "$kind"
  after=$before
  for _ in $(seq 1 50); do
    after=$(nft_count)
    [ "$after" -gt "$before" ] && break
    sleep 0.1
  done
  if [ "$after" -gt "$before" ]; then ok "$kind: passed to the kernel"; else fail "$kind: never reached the kernel's input"; fi
done
# A VLAN-tagged query: the kernel here may have no VLAN device to take it
# in, so the proof that XDP passed it is a packet socket on the server's
# veth (taps see what XDP passes, never what it redirects).
rm -f "$work/sniff.ready"
ip netns exec "$S" python3 - "$VS" "$work/sniff.ready" >"$work/sniff.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
open(sys.argv[2], "w").close()
end = time.monotonic() + 5
while time.monotonic() < end:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    # The tag may arrive in the frame or be stripped into metadata: look for
    # our UDP port pair and DNS ID (40000 -> 53, 0x5d5d).
    if bytes.fromhex("9c400035") in f and b"\x5d\x5d\x01\x00" in f:
        print("seen")
        break
PY
sniffer=$!
for _ in $(seq 1 50); do [ -e "$work/sniff.ready" ] && break; sleep 0.1; done
send_odd vlan
wait "$sniffer" || true
if grep -q seen "$work/sniff.out"; then ok "vlan: passed to the kernel"; else fail "vlan: the tagged query never reached the kernel:"; cat "$work/sniff.out"; fi

# Since passed_before the program passed at least: the TCP query's SYN and
# the segment with the query (2), four echo requests, one frame each for
# v4-options, v6-dstopts and vlan, two fragments each for v4-frag and
# v6-frag (a 2 kB datagram, MTU 1500): 13. ARP or NDP may add more; the
# plain control query went to AF_XDP and must not count.
want=13
passed_after=$(fresh_passed)
if [ "$passed_before" != none ] && [ "$passed_after" != none ] && [ $((passed_after - passed_before)) -ge "$want" ]; then
  ok "metrics: the program counted $((passed_after - passed_before)) passed frames (>= $want sent to the kernel)"
else
  fail "metrics: steerdns_xdp_frames_total{result=\"passed\"} $passed_before -> $passed_after, want +$want or more"
fi
# UDP queries to the listen address are redirected, not counted: a batch
# of them moves the count by less than their number (ARP may add a few).
batch=20
passed_before=$(fresh_passed)
answered_batch=0
for i in $(seq 1 "$batch"); do
  if ip netns exec "$C" dig +time=2 +tries=1 +short @10.77.0.1 static.lb.example.com 2>/dev/null | grep -qx '192\.0\.2\.1'; then
    answered_batch=$((answered_batch + 1))
  fi
done
passed_after=$(fresh_passed)
if [ "$answered_batch" -eq "$batch" ] && [ "$passed_before" != none ] && [ "$passed_after" != none ] && [ $((passed_after - passed_before)) -lt "$batch" ]; then
  ok "metrics: $batch UDP queries answered, the pass count moved by $((passed_after - passed_before)) (< $batch)"
else
  fail "metrics: $answered_batch of $batch UDP queries answered, passed $passed_before -> $passed_after (want < +$batch)"
fi

# The workers' counts reach /metrics (carried once a second; bounded wait).
metric=""
for _ in $(seq 1 50); do
  metric=$(ip netns exec "$S" curl -sf http://127.0.0.1:9153/metrics 2>/dev/null | grep '^steerdns_xdp_frames_total{result="answered"}' | awk '{print $2}' || true)
  [ "${metric:-0}" -ge "$udp_queries" ] 2>/dev/null && break
  sleep 0.1
done
if [ "${metric:-0}" -ge "$udp_queries" ] 2>/dev/null; then ok "metrics: steerdns_xdp_frames_total{result=\"answered\"} $metric"; else fail "metrics: xdp answered '${metric:-none}', want >= $udp_queries"; fi

# A burst while the worker is stopped: 64 queries wait on the rx ring, one
# wake-up finds them all, so the worker answers every one and then sleeps
# xdp_coalesce (the default) before it looks again; the coalesce count moves.
coalesced() {
  ip netns exec "$S" curl -sf http://127.0.0.1:9153/metrics 2>/dev/null | grep '^steerdns_xdp_waits_total{kind="coalesce"}' | awk '{print $2}' || true
}
before=$(coalesced)
kill -STOP "$spid"
ip netns exec "$C" python3 - "$work/burst.sent" >"$work/burst.out" 2>&1 <<'PY' &
import socket, struct, sys, time
n = 64
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
q = b"".join(bytes([len(l)]) + l for l in b"static.lb.example.com".split(b".")) + b"\0\0\1\0\1"
for i in range(n):
    s.sendto(struct.pack(">HHHHHH", 0x5000 + i, 0x0100, 1, 0, 0, 0) + q, ("10.77.0.1", 53))
open(sys.argv[1], "w").close()
got, deadline = set(), time.monotonic() + 10
while len(got) < n and time.monotonic() < deadline:
    try:
        r = s.recv(512)
    except socket.timeout:
        continue
    ident, flags, _, an = struct.unpack(">HHHH", r[:8])
    if flags & 0x8000 and flags & 0xF == 0 and an == 1 and r.endswith(bytes([192, 0, 2, 1])):
        got.add(ident)
print(f"answered {len(got)} of {n}")
PY
burst=$!
for _ in $(seq 1 50); do [ -e "$work/burst.sent" ] && break; sleep 0.1; done
kill -CONT "$spid"
wait "$burst" || true
if grep -q 'answered 64 of 64' "$work/burst.out"; then ok "burst: $(cat "$work/burst.out")"; else fail "burst: $(cat "$work/burst.out")"; fi
after=$before
for _ in $(seq 1 50); do
  after=$(coalesced)
  [ "${after:-0}" -gt "${before:-0}" ] 2>/dev/null && break
  sleep 0.1
done
if [ "${after:-0}" -gt "${before:-0}" ] 2>/dev/null; then ok "burst: coalesced (steerdns_xdp_waits_total{kind=\"coalesce\"} ${before:-0} -> $after)"; else fail "burst: no coalescing sleep counted (${before:-none} -> ${after:-none})"; fi

# SIGTERM: stops, logs its count, detaches.
kill -TERM "$spid"
for _ in $(seq 1 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$spid" 2>/dev/null; then fail "steerdns did not stop on SIGTERM"; fi
wait "$spid" 2>/dev/null || true
spid=""
answered=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'xdp listener stopped.*' | grep -o 'answered=[0-9]*' | cut -d= -f2 || true)
if [ "${answered:-0}" -ge "$udp_queries" ]; then ok "AF_XDP answered $answered UDP queries (>= $udp_queries asked)"; else fail "AF_XDP answered ${answered:-none} of $udp_queries"; grep -i xdp "$log"; fi
stop_passed=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'xdp listener stopped.*' | grep -o 'passed=[0-9]*' | cut -d= -f2 || true)
if [ "${stop_passed:-0}" -ge "${passed_after:-1}" ] 2>/dev/null; then ok "stop log: passed=$stop_passed (>= $passed_after in /metrics)"; else fail "stop log: passed=${stop_passed:-none}, /metrics had $passed_after"; fi
if ip -n "$S" link show "$VS" | grep -q 'prog/xdp'; then fail "XDP program still attached after SIGTERM"; else ok "SIGTERM detached the program"; fi

# SIGKILL: the kernel closes the BPF link with the process.
log2=$work/server2.log
if start_server "$log2"; then
  expect "restarted: static A"  'IN\s+A\s+192\.0\.2\.1$'                                    -- @10.77.0.1 static.lb.example.com
  kill -KILL "$spid"; wait "$spid" 2>/dev/null || true; spid=""
  if ip -n "$S" link show "$VS" | grep -q 'prog/xdp'; then fail "XDP program still attached after SIGKILL"; else ok "SIGKILL detached the program"; fi
  if ip netns exec "$C" ping -c 1 -W 2 -q 10.77.0.1 >/dev/null; then ok "ping after the server is gone"; else fail "ping after kill"; fi
else
  fail "restart:"; cat "$log2"
fi

# Without root: the listener refuses with the reason, the sockets answer.
if command -v setpriv >/dev/null; then
  chmod 755 "$work"
  sed -e 's#^dns_listen = .*#dns_listen = ["10.77.0.1:5300"]#' -e 's#^http_listen = .*##' \
      -e 's#^\[server\]$#[server]\nhttp_listen = "127.0.0.1:9300"#' "$cfg" >"$work/user.toml"
  chmod 644 "$work/user.toml"
  ulog=$work/user.log
  ip netns exec "$S" setpriv --reuid=65534 --regid=65534 --clear-groups env NO_COLOR=1 "$bin" serve --config "$work/user.toml" >"$ulog" 2>&1 &
  spid=$!
  for _ in $(seq 1 100); do grep -q 'AF_XDP listener refused\|listening proto=udp-xdp' "$ulog" && break; kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  if grep -q 'AF_XDP listener refused to start: .*needs root' "$ulog"; then
    ok "not root: $(grep -o 'AF_XDP listener refused.*' "$ulog" | head -1)"
  else
    fail "not root: no clear refusal:"; cat "$ulog"
  fi
  expect "not root: sockets answer" 'IN\s+A\s+192\.0\.2\.1$' -- @10.77.0.1 -p 5300 static.lb.example.com
  kill -TERM "$spid"; wait "$spid" 2>/dev/null || true; spid=""
else
  echo "     (no setpriv: the unprivileged refusal is not checked)"
fi

if [ "$fails" -ne 0 ]; then echo "xdp_netns: $fails checks failed"; cat "$log"; exit 1; fi
echo "xdp_netns: all checks passed"
