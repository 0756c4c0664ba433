#!/usr/bin/env bash
# Fuzz every target of fuzz/ (cargo-fuzz, libFuzzer) for a bounded time,
# when a nightly toolchain is present; otherwise say so and skip. The seed
# corpus (fuzz/corpus/) is replayed on stable by `cargo test` anyway
# (tests/integration/fuzz_corpus.rs).
#
#   .ci/fuzz.sh                 every target, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=300 .ci/fuzz.sh wire answer
#   FUZZ_SKIP=1 .ci/fuzz.sh          skip (say so)
#   FUZZ_SANITIZER=address           default none: the fuzzed code is safe
#                                    Rust, so panics, hangs and memory
#                                    blow-ups are the findings, and without
#                                    ASan the build and the runs are faster
#
# New inputs go to a scratch copy of the corpus (CI commits nothing); a
# crash fails the step and leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
san=${FUZZ_SANITIZER:-none}
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(wire answer config geoip); fi

if [ "${FUZZ_SKIP:-0}" = 1 ]; then
  echo "SKIPPED fuzzing: FUZZ_SKIP=1; the seed corpus was replayed on stable by cargo test"
  exit 0
fi
if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "SKIPPED fuzzing: no nightly toolchain (cargo-fuzz needs one); the seed corpus was replayed on stable by cargo test"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  if ! cargo install cargo-fuzz --locked --quiet; then
    echo "SKIPPED fuzzing: cargo-fuzz could not be installed; the seed corpus was replayed on stable by cargo test"
    exit 0
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== building fuzz targets (nightly, sanitizer $san, debug assertions)"
if ! cargo +nightly fuzz build -a -s "$san" >"$work/build.log" 2>&1; then
  tail -30 "$work/build.log"
  echo "FAIL building the fuzz targets"
  exit 1
fi
fails=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp fuzz/corpus/"$t"/* "$work/$t/"
  echo "== fuzz $t for ${secs}s"
  if cargo +nightly fuzz run -a -s "$san" "$t" "$work/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$work/$t.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$t.log" | tr '\n' ' '
    echo
    echo "ok   $t: $(find "$work/$t" -type f | wc -l) corpus entries after the run"
  else
    tail -40 "$work/$t.log"
    echo "FAIL $t (input in fuzz/artifacts/$t/)"
    fails=$((fails + 1))
  fi
done
if [ "$fails" -ne 0 ]; then echo "$fails fuzz targets failed"; exit 1; fi
echo "fuzzing: all ${#targets[@]} targets ran ${secs}s each without a crash"
