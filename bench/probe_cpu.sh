#!/usr/bin/env bash
# CPU cost of one HTTP health probe, in process (bench/probe_cpu.rs): the
# probing thread's CPU time per probe, and its user-space instructions per
# probe under callgrind (deterministic: noisy neighbours do not move it).
#
#   bench/probe_cpu.sh [-b PROBE_CPU_BINARY]... [-n PROBES] [-N CALLGRIND_PROBES]
#
#   -b  measure this probe_cpu binary (repeatable, e.g. a copy built from an
#       older commit and the current one); default: build
#       target/release/examples/probe_cpu
#   -n  probes of the CPU-time run (default 20000)
#   -N  probes counted under callgrind (default 2000); the count is the
#       difference between a run of 200 + N and a run of 200 probes, so
#       start-up and warm-up cancel out
#
# Needs valgrind (installed with apt-get when missing). Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BINS=()
PROBES=20000
CG_PROBES=2000
while getopts "b:n:N:h" opt; do
    case "$opt" in
        b) BINS+=("$OPTARG") ;;
        n) PROBES=$OPTARG ;;
        N) CG_PROBES=$OPTARG ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
if [[ ${#BINS[@]} -eq 0 ]]; then
    (cd "$ROOT" && cargo build --release --quiet --example probe_cpu)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    BINS=("$TARGET_DIR/release/examples/probe_cpu")
fi
command -v valgrind >/dev/null || apt-get install -y valgrind >/dev/null

TMP=$(mktemp -d "${TMPDIR:-/tmp}/steerdns-probecpu.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# main_thread_ir BIN PROBES: instructions of the probing (first) thread.
main_thread_ir() {
    local out=$TMP/cg
    rm -f "$out".*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out.%p" \
        "$1" --probes "$2" >/dev/null 2>"$TMP/vg.err" || { cat "$TMP/vg.err" >&2; exit 1; }
    # Thread 1 is main, where the probes run; the server is another thread.
    awk '/^summary:/ { print $2 }' "$(ls "$out".*-01 | head -1)"
}

printf '%-50s %14s %16s\n' binary "cpu us/probe" "instr/probe"
for bin in "${BINS[@]}"; do
    cpu=$("$bin" --probes "$PROBES" | sed -n 's/.*cpu \([0-9.]*\) us\/probe.*/\1/p')
    a=$(main_thread_ir "$bin" 0)
    b=$(main_thread_ir "$bin" "$CG_PROBES")
    printf '%-50s %14s %16d\n' "$bin" "$cpu" $(((b - a) / CG_PROBES))
done
