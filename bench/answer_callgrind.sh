#!/usr/bin/env bash
# Instructions per answer() call of `cargo bench --bench answer`, counted by
# valgrind's callgrind: deterministic, so it compares builds on a noisy
# machine where criterion's times move by ±20 %.
#
#   bench/answer_callgrind.sh [BENCH_BINARY...]
#
# Without arguments it builds this checkout's bench (`cargo bench --bench
# answer --no-run`) and measures it. With arguments it measures those bench
# binaries (e.g. copies built from older commits in their own worktrees;
# each reads config/example.toml of the checkout it was built in).
#
# No benchmark is timed (a filter matching none): what runs is the bench's
# allocation check, 10,001 answer() calls per case over its five cases
# (static A, geo+ECS A, NXDOMAIN, apex NS with glue, MX) and one sanity
# answer each. Prints per binary: calls, inclusive Ir of answer(), Ir/call.
set -euo pipefail

command -v valgrind >/dev/null || apt-get install -y valgrind >/dev/null

bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
    out=$(cargo bench --bench answer --no-run 2>&1)
    bin=$(printf '%s\n' "$out" | sed -n 's/.*Executable bench\/answer.rs (\(.*\))/\1/p' | tail -1)
    [ -n "$bin" ] || { printf '%s\n' "$out" >&2; echo "no bench binary found" >&2; exit 1; }
    bins=("$bin")
fi

tmp=$(mktemp -d -t answer_callgrind.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

printf '%-40s %8s %14s %8s\n' binary calls "Ir answer()" Ir/call
for b in "${bins[@]}"; do
    f="$tmp/cg.out"
    (cd "$tmp" && valgrind --tool=callgrind --callgrind-out-file="$f" "$b" --bench zzz_no_such_bench >/dev/null 2>&1)
    # The caller line of answer() carries its call count; the starred line its
    # inclusive cost.
    line=$(callgrind_annotate --tree=caller --inclusive=yes "$f" 2>/dev/null |
        grep -B1 -E '\* +[^ ]*::answer::answer \[' | head -2)
    calls=$(printf '%s\n' "$line" | head -1 | sed -n 's/.*(\([0-9,]*\)x).*/\1/p' | tr -d ,)
    ir=$(printf '%s\n' "$line" | tail -1 | awk '{print $1}' | tr -d ,)
    [ -n "$calls" ] && [ -n "$ir" ] || { echo "$b: answer() not found in the profile" >&2; exit 1; }
    printf '%-40s %8d %14d %8.1f\n' "$(basename "$b")" "$calls" "$ir" "$(awk -v a="$ir" -v b="$calls" 'BEGIN{print a/b}')"
    rm -f "$f"
done
