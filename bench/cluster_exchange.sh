#!/usr/bin/env bash
# Verdict exchange cost between real steerdns processes.
#
#   bench/cluster_exchange.sh [-n ENDPOINTS] [-p PEERS] [-i PULL_INTERVAL] [-w SECONDS]
#
# Starts PEERS+1 steerdns processes (release build) on 127.31.0.1..N, each
# with ENDPOINTS probed endpoints (TCP monitor at a 1 h interval, so
# probing is nearly idle), twice: alone (no peers), then as a cluster
# pulling each other every PULL_INTERVAL. For each run it samples every
# process's CPU time from /proc/PID/stat over WINDOW seconds (after a
# warm-up) and prints CPU per node, the difference (the exchange's cost),
# and the bytes of each node's last pulls (steerdns_cluster_pull_bytes).
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
n=10000 peers=3 interval=1s window=20
while getopts "n:p:i:w:" o; do
  case $o in n) n=$OPTARG ;; p) peers=$OPTARG ;; i) interval=$OPTARG ;; w) window=$OPTARG ;; *) exit 2 ;; esac
done
cargo build --release --quiet
bin=target/release/steerdns
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)
nodes=$((peers + 1))

config() { # config NODE WITH_PEERS
  python3 - "$1" "$2" "$n" "$nodes" "$interval" <<'PY'
import sys
node, with_peers, n, nodes, interval = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
out = [f'''[server]
node_name = "n{node}"
dns_listen = ["127.31.0.{node + 1}:5353"]
http_listen = "127.31.0.{node + 1}:9153"
udp_workers = 1
watch_interval = "0s"
[cluster]
token = "bench"
pull_interval = "{interval}"
peers = [''']
if with_peers:
    for j in range(nodes):
        if j != node:
            out.append(f'  {{ name = "n{j}", url = "http://127.31.0.{j + 1}:9153" }},')
out.append(']\n[zones."lb.example.com"]\nns = ["ns1"]\nrecords = [{ name = "ns1", type = "A", data = "192.0.2.53" }]')
out.append('[monitors.t]\ntype = "tcp"\nport = 9\ninterval = "1h"\ntimeout = "1s"\nquorum = "majority"')
for p in range((n + 99) // 100):
    eps = ", ".join(f'{{ address = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", probe_address = "127.0.0.1" }}'
                    for i in range(p * 100, min(n, p * 100 + 100)))
    out.append(f'[pools.p{p}]\nmonitor = "t"\nendpoints = [{eps}]')
print("\n".join(out))
PY
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # run WITH_PEERS -> prints per-node CPU %
  local with=$1
  pids=()
  for i in $(seq 0 $((nodes - 1))); do
    config "$i" "$with" >"$work/n$i.toml"
    "$bin" serve --config "$work/n$i.toml" >"$work/n$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 0 $((nodes - 1))); do
    for _ in $(seq 1 200); do
      curl -sf "http://127.31.0.$((i + 1)):9153/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  sleep 5 # warm-up: first pulls carry the key tables
  local before=() after=()
  for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  sleep "$window"
  for p in "${pids[@]}"; do after+=("$(cpu_ticks "$p")"); done
  local total=0
  for k in "${!pids[@]}"; do
    local d=$((after[k] - before[k]))
    total=$((total + d))
  done
  echo "$total"
  if [ "$with" = 1 ]; then
    curl -sf http://127.31.0.1:9153/metrics | grep -E '^steerdns_cluster_(pull_bytes|pulls_total|peer_fresh)' >"$work/metrics" || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

alone=$(run 0)
cluster=$(run 1)
pct() { awk -v t="$1" -v hz="$hz" -v w="$window" -v n="$nodes" 'BEGIN { printf "%.2f", t / hz / w / n * 100 }'; }
echo "endpoints $n, nodes $nodes (each pulls $peers peers every $interval), window ${window}s"
echo "CPU per node alone:   $(pct "$alone") % of a core"
echo "CPU per node cluster: $(pct "$cluster") % of a core"
echo "exchange cost:        $(pct $((cluster - alone))) % of a core per node"
echo "node n0's view:"
cat "$work/metrics"
