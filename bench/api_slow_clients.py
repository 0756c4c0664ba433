#!/usr/bin/env python3
"""Slow HTTP clients against the steerdns API: are /healthz and /metrics
still answered, and how fast?

Starts `steerdns serve` on config/example.toml with free loopback ports,
opens --clients slowloris connections to its HTTP API (a request head that
never ends, one byte every 0.5 s; a closed connection is reopened at once),
by default half from 127.0.0.1 (the checker's own address) and half from
127.0.0.2 (--sources), and meanwhile asks /healthz and
/metrics on fresh connections 4 times a second each (5 s deadline).
Prints latency percentiles, failures and the server's CPU seconds.

  bench/api_slow_clients.py [--bin target/release/steerdns] [--clients 1000] [--duration 20]
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(port, path, timeout=5.0, quiet=False):
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
        s.close()
        ok = buf.startswith(b"HTTP/1.1 200")
        if not ok and not quiet:
            print(f"  {path}: {buf[:60]!r} after {time.monotonic() - t0:.3f} s", file=sys.stderr)
    except OSError as e:
        if not quiet:
                print(f"  {path}: {e} after {time.monotonic() - t0:.3f} s", file=sys.stderr)
        ok = False
    return ok, time.monotonic() - t0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/steerdns"))
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--sources", default="127.0.0.1,127.0.0.2",
                    help="source addresses of the slow clients, round robin; "
                         "the checker always uses 127.0.0.1")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.clients + 512)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < a.clients + 64:
        sys.exit(f"open-file limit {hard} too low for {a.clients} clients")

    http_port, dns_port = free_port(), free_port()
    log = tempfile.TemporaryFile()
    srv = subprocess.Popen(
        [a.bin, "serve", "--config", os.path.join(ROOT, "config/example.toml"),
         "--dns-listen", f"127.0.0.1:{dns_port}", "--http-listen", f"127.0.0.1:{http_port}"],
        stdout=log, stderr=log)
    try:
        for _ in range(100):
            if get(http_port, "/healthz", 1.0, quiet=True)[0]:
                break
            if srv.poll() is not None:
                log.seek(0)
                sys.exit("server exited:\n" + log.read().decode(errors="replace"))
            time.sleep(0.1)
        cpu0 = cpu_seconds(srv.pid)
        sources = a.sources.split(",")
        stop = threading.Event()
        stats = {"opened": 0, "reopened": 0}

        def open_conn(i):
            src = sources[i % len(sources)]
            try:
                s = socket.socket()
                s.bind((src, 0))
                s.settimeout(0.2)
                s.connect(("127.0.0.1", http_port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-a: ")
                stats["opened"] += 1
                return s
            except OSError:
                return None

        def attack():
            conns = [open_conn(i) for i in range(a.clients)]
            while not stop.is_set():
                for i, c in enumerate(conns):
                    try:
                        if c is None:
                            raise OSError
                        c.send(b"a")
                    except OSError:
                        if c is not None:
                            c.close()
                        stats["reopened"] += 1
                        conns[i] = open_conn(i)
                stop.wait(0.5)
            for c in conns:
                if c is not None:
                    c.close()

        t = threading.Thread(target=attack)
        t.start()
        while stats["opened"] < a.clients and t.is_alive():
            time.sleep(0.05)
        print(f"{stats['opened']} slow connections opened; measuring for {a.duration:.0f} s")
        lat = {"/healthz": [], "/metrics": []}
        fails = {"/healthz": 0, "/metrics": 0}
        end = time.monotonic() + a.duration
        while time.monotonic() < end:
            for path in lat:
                ok, took = get(http_port, path)
                lat[path].append(took)
                if not ok:
                    fails[path] += 1
            time.sleep(0.25)
        stop.set()
        t.join()
        cpu = cpu_seconds(srv.pid) - cpu0
        print(f"slow clients {a.clients}, connections opened {stats['opened']}, "
              f"reopened after being closed {stats['reopened']}, server CPU {cpu:.2f} s")
        worst = 0.0
        for path, xs in lat.items():
            worst = max(worst, max(xs))
            print(f"{path:9} n={len(xs)} fail={fails[path]} p50={pct(xs, .5)*1000:.1f}ms "
                  f"p99={pct(xs, .99)*1000:.1f}ms max={max(xs)*1000:.1f}ms")
        bad = sum(fails.values())
        print("PASS" if bad == 0 and worst < 1.0 else "FAIL",
              "(every /healthz and /metrics answered within 1 s)" if bad == 0 and worst < 1.0
              else f"({bad} failed, worst {worst:.2f} s)")
        return 0 if bad == 0 and worst < 1.0 else 1
    finally:
        srv.terminate()
        srv.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
