#!/usr/bin/env bash
# `steerdns check` on generated configs: CPU seconds (user + system; the
# wall time is printed too, but shared machines make it noisy) and peak
# memory (max RSS).
#
#   bench/config_check.sh [BIN]      BIN defaults to target/release/steerdns (built if missing)
#   SIZES="10000 100000 443000" bench/config_check.sh
#
# Configs (in a temp dir, removed at exit):
#   records-N     one zone with N static records (A, AAAA, TXT, MX mix), valid
#   errors-N      N records of which 2,000 are bad: 1,000 type errors (a TTL
#                 given as a boolean) and 1,000 semantic ones (bad A data),
#                 spread through the file; all 1,000 type errors must be
#                 listed (semantic checks run once the types are right)
#   semantic-N    N records of which 2,000 have bad A data (no type error)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/steerdns}
if [ ! -x "$bin" ]; then cargo build --release --quiet; bin=target/release/steerdns; fi
sizes=${SIZES:-"10000 100000"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gen() { # gen N ERRORS FILE [semantic]
  python3 - "$1" "$2" "$3" "${4:-mixed}" <<'PY'
import sys
n, errors, path, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
step = n // errors if errors else 0
with open(path, "w") as f:
    f.write('[server]\nnode_name = "bench"\ndns_listen = ["127.0.0.1:0"]\n\n')
    f.write('[zones."big.example.com"]\nns = ["ns1"]\nrecords = [\n')
    f.write('  { name = "ns1", type = "A", data = "192.0.2.53" },\n')
    bad = 0
    for i in range(n):
        name = f"h{i}"
        if step and i % step == step // 2 and bad < errors:
            if bad % 2 == 0 and kind == "mixed":
                f.write(f'  {{ name = "{name}", type = "A", ttl = true, data = "192.0.2.1" }},\n')
            else:
                f.write(f'  {{ name = "{name}", type = "A", data = "not-an-ip-{i}" }},\n')
            bad += 1
            continue
        k = i % 4
        if k == 0:
            f.write(f'  {{ name = "{name}", type = "A", data = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" }},\n')
        elif k == 1:
            f.write(f'  {{ name = "{name}", type = "AAAA", data = "2001:db8::{i >> 16:x}:{i & 0xffff:x}" }},\n')
        elif k == 2:
            f.write(f'  {{ name = "{name}", type = "TXT", ttl = "5m", data = "\\"v=spf1 -all {i}\\"" }},\n')
        else:
            f.write(f'  {{ name = "{name}", type = "MX", data = "10 h{i - 3}" }},\n')
    f.write("]\n")
PY
}

run() { # run LABEL FILE
  local label=$1 file=$2 out
  /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$bin" check --config "$file" >"$work/out" 2>"$work/err" || true
  out=$(tail -1 "$work/time")
  local secs cpu kb
  read -r secs user sys kb <<<"$out"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  local listed
  listed=$(grep -c "^$file:[0-9]*:[0-9]*: " "$work/err" || true)
  printf '%-16s %10s bytes  CPU %6ss  wall %6ss  max RSS %5s MiB  errors listed %s\n' \
    "$label" "$(stat -c %s "$file")" "$cpu" "$secs" "$((kb / 1024))" "$listed"
}

echo "binary: $bin"
for n in $sizes; do
  gen "$n" 0 "$work/records-$n.toml"
  run "records-$n" "$work/records-$n.toml"
  gen "$n" 2000 "$work/errors-$n.toml"
  run "errors-$n" "$work/errors-$n.toml"
  gen "$n" 2000 "$work/semantic-$n.toml" semantic
  run "semantic-$n" "$work/semantic-$n.toml"
done
