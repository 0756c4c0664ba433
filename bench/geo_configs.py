#!/usr/bin/env python3
"""Configs for bench/geo_load.sh: N balanced names, 60 % location-dependent.

    geo_configs.py N DB [ASN_DB] OUTDIR PORT

writes OUTDIR/steerdns.toml and OUTDIR/gdnsd/{config,zones/lb.example.com}
with equivalent steering:

  * names i % 5 in {0, 1}: geo map, each name its own map (a continent map
    plus three country exceptions chosen by the name's number, a US-CA
    subdivision rule every third name, an ASN rule every fourth when an ASN
    database is given) over regional pools;
  * i % 5 == 2: proximity over one of 8 pool subsets (3 to 6 regions);
  * i % 5 == 3: failover; i % 5 == 4: weighted (static A records in gdnsd).

gdnsd gets one map per geo name (the same rules, nested continent/country/
subdivision) and one auto_dc_coords map per pool subset, one resource per
name. gdnsd has no ASN maps: its geo maps skip the ASN rules.
"""

import os
import sys

REGIONS = [  # name, lat, lon, continent
    ("fra", 50.1, 8.7, "EU"),
    ("iad", 39.0, -77.5, "NA"),
    ("sjc", 37.4, -122.0, "NA"),
    ("sin", 1.35, 103.8, "AS"),
    ("gru", -23.5, -46.6, "SA"),
    ("nrt", 35.7, 139.7, "AS"),
    ("syd", -33.9, 151.2, "OC"),
    ("jnb", -26.2, 28.0, "AF"),
]
CONT_POOL = {"EU": "fra", "NA": "iad", "SA": "gru", "AS": "sin", "OC": "syd", "AF": "jnb"}
COUNTRIES = [  # code, continent
    ("GB", "EU"), ("DE", "EU"), ("FR", "EU"), ("SE", "EU"), ("PL", "EU"), ("ES", "EU"),
    ("IT", "EU"), ("NL", "EU"), ("US", "NA"), ("CA", "NA"), ("MX", "NA"), ("BR", "SA"),
    ("AR", "SA"), ("CL", "SA"), ("JP", "AS"), ("KR", "AS"), ("IN", "AS"), ("CN", "AS"),
    ("SG", "AS"), ("ID", "AS"), ("AU", "OC"), ("NZ", "OC"), ("ZA", "AF"), ("NG", "AF"),
    ("EG", "AF"), ("KE", "AF"), ("TR", "AS"), ("RU", "EU"), ("UA", "EU"), ("VN", "AS"),
]
SUBSETS = [
    ["fra", "iad", "sin"],
    ["fra", "iad", "sjc", "sin"],
    ["iad", "sjc", "gru"],
    ["fra", "sin", "nrt", "syd"],
    ["fra", "iad", "sjc", "sin", "gru"],
    ["fra", "jnb", "sin"],
    ["fra", "iad", "sjc", "sin", "nrt", "syd"],
    ["iad", "nrt", "syd"],
]
ASNS = [15169, 13335, 16509, 8075, 3320, 7922, 701, 3356]


def addr(region_idx, name_idx):
    return "10.%d.%d.%d" % (region_idx + 1, name_idx // 250, name_idx % 250 + 1)


def geo_rules(g, with_asn):
    """(continent map, country exceptions, subdivision rules, asn rules)."""
    countries = []
    for k in range(3):
        cc, cont = COUNTRIES[(g * 7 + k * 11) % len(COUNTRIES)]
        # send the country to the next region over
        pool = REGIONS[(REGIONS.index(next(r for r in REGIONS if r[0] == CONT_POOL[cont])) + 1 + g) % len(REGIONS)][0]
        countries.append((cc, cont, pool))
    subs = [("US-CA", "sjc")] if g % 3 == 0 else []
    asns = [(ASNS[g % len(ASNS)], "fra")] if with_asn and g % 4 == 0 else []
    return countries, subs, asns


def main():
    n = int(sys.argv[1])
    db = sys.argv[2]
    asn_db = sys.argv[3] if len(sys.argv) > 5 else ""
    outdir, port = sys.argv[-2], int(sys.argv[-1])
    with_asn = bool(asn_db)
    os.makedirs(os.path.join(outdir, "gdnsd", "zones"), exist_ok=True)
    os.makedirs(os.path.join(outdir, "gdnsd", "geoip"), exist_ok=True)

    t = []
    t.append("[server]\ndns_listen = [\"127.0.0.1:%d\"]\nhttp_listen = \"127.0.0.1:%d\"\n"
             "udp_workers = 1\nwatch_interval = \"0s\"\n" % (port, port + 1))
    t.append("[geoip]\ndatabase = \"%s\"\n" % db)
    if asn_db:
        t.append("asn_database = \"%s\"\n" % asn_db)
    t.append("\n[zones.\"lb.example.com\"]\nns = [\"ns1\"]\nrecords = [{ name = \"ns1\", type = \"A\", data = \"192.0.2.53\" }]\n")
    zone = ["$TTL 3600",
            "@ SOA ns1 hostmaster 1 3600 900 604800 60",
            "@ NS ns1",
            "ns1 A 192.0.2.53"]
    gmaps, gres = [], []
    geo_i = 0
    for i in range(n):
        name = "s%d" % i
        kind = i % 5
        pools = {r[0]: "%s-%s" % (name, r[0]) for r in REGIONS}
        for ri, (r, lat, lon, _) in enumerate(REGIONS):
            t.append("[pools.\"%s\"]\nlatitude = %s\nlongitude = %s\nendpoints = [{ address = \"%s\" }]\n"
                     % (pools[r], lat, lon, addr(ri, i)))
        dcmap = " ".join("%s => %s" % (r[0], addr(ri, i)) for ri, r in enumerate(REGIONS))
        if kind in (0, 1):
            countries, subs, asns = geo_rules(geo_i, with_asn)
            geo_i += 1
            cont = ", ".join("%s = [\"%s\", \"%s\"]" % (c, pools[p], pools["fra" if p != "fra" else "iad"])
                             for c, p in CONT_POOL.items())
            ctry = ", ".join("%s = [\"%s\"]" % (cc, pools[p]) for cc, _, p in countries)
            t.append("[names.\"%s.lb.example.com\"]\npolicy = \"geo\"\n" % name)
            t.append("[names.\"%s.lb.example.com\".geo]\ndefault = [\"%s\", \"%s\"]\ncontinent = { %s }\ncountry = { %s }\n"
                     % (name, pools["fra"], pools["iad"], cont, ctry))
            if subs:
                t.append("subdivision = { %s }\n" % ", ".join("\"%s\" = [\"%s\"]" % (s, pools[p]) for s, p in subs))
            if asns:
                t.append("asn = { %s }\n" % ", ".join("\"%d\" = [\"%s\"]" % (a, pools[p]) for a, p in asns))
            # gdnsd: nested continent -> country -> subdivision
            m = {c: {"_": [p, "fra" if p != "fra" else "iad"]} for c, p in CONT_POOL.items()}
            for cc, c, p in countries:
                m[c][cc] = {"_": [p]}
            for s, p in subs:
                cc, sd = s.split("-")
                m["NA"].setdefault(cc, {"_": ["iad", "fra"]})
                m["NA"][cc][sd] = {"_": [p]}

            def render(node):
                if list(node.keys()) == ["_"]:
                    return "[ %s ]" % ", ".join(node["_"])
                parts = []
                for k, v in node.items():
                    if k == "_":
                        parts.append("default => [ %s ]" % ", ".join(v))
                    else:
                        parts.append("%s => %s" % (k, render(v)))
                return "{ %s }" % " ".join(parts)

            body = " ".join("%s => %s" % (c, render(v)) for c, v in m.items())
            gmaps.append("    m%s => { geoip2_db => db.mmdb datacenters => [ fra, iad, sjc, sin, gru, nrt, syd, jnb ] map => { %s } }"
                         % (name, body))
            gres.append("    %s => { map => m%s service_types => up dcmap => { %s } }" % (name, name, dcmap))
            zone.append("%s 30 DYNA geoip!%s" % (name, name))
        elif kind == 2:
            sub = SUBSETS[(i // 5) % len(SUBSETS)]
            t.append("[names.\"%s.lb.example.com\"]\npolicy = \"proximity\"\npools = [%s]\n"
                     % (name, ", ".join("\"%s\"" % pools[r] for r in sub)))
            gmaps_name = "prox%d" % ((i // 5) % len(SUBSETS))
            if not any(x.startswith("    %s " % gmaps_name) for x in gmaps):
                coords = " ".join("%s => [ %s, %s ]" % (r[0], r[1], r[2]) for r in REGIONS if r[0] in sub)
                gmaps.append("    %s => { geoip2_db => db.mmdb datacenters => [ %s ] auto_dc_coords => { %s } }"
                             % (gmaps_name, ", ".join(sub), coords))
            sub_dcmap = " ".join("%s => %s" % (r[0], addr(ri, i)) for ri, r in enumerate(REGIONS) if r[0] in sub)
            gres.append("    %s => { map => %s service_types => up dcmap => { %s } }" % (name, gmaps_name, sub_dcmap))
            zone.append("%s 30 DYNA geoip!%s" % (name, name))
        else:
            policy = "failover" if kind == 3 else "weighted"
            t.append("[names.\"%s.lb.example.com\"]\npolicy = \"%s\"\npools = [\"%s\", \"%s\"]\n"
                     % (name, policy, pools["fra"], pools["iad"]))
            zone.append("%s 30 A %s" % (name, addr(0, i)))
    with open(os.path.join(outdir, "steerdns.toml"), "w") as f:
        f.write("\n".join(t))
    gdir = os.path.abspath(os.path.join(outdir, "gdnsd"))
    for sub in ("run", "state"):
        os.makedirs(os.path.join(gdir, sub), exist_ok=True)
    # Own run and state dirs: another gdnsd on the host keeps its control socket.
    gd = ["options => {", "  listen => [ 127.0.0.1:%d ]" % (port + 2), "  udp_threads => 1", "  tcp_threads => 1",
          "  run_dir => %s/run" % gdir, "  state_dir => %s/state" % gdir, "}"]
    if gmaps:
        gd += ["plugins => {", "  geoip => {", "    maps => {"] + ["  " + m for m in gmaps] + ["    }", "    resources => {"] + ["  " + r for r in gres] + ["    }", "  }", "}"]
    with open(os.path.join(outdir, "gdnsd", "config"), "w") as f:
        f.write("\n".join(gd) + "\n")
    with open(os.path.join(outdir, "gdnsd", "zones", "lb.example.com"), "w") as f:
        f.write("\n".join(zone) + "\n")


if __name__ == "__main__":
    main()
