"""Invoke round trip between two processes: tiga_cffi beside multiprocessing.Pipe and
an AF_UNIX socket pair, measured in the same run; plus the first invoke of a new
client against a freshly started server, and the bare write -> listener wake-up.

    python benchmarks/bench_invoke.py [--samples N] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_table, stats_us  # noqa: E402
from bench_suite import rr_pipe, rr_socket, rr_tiga  # noqa: E402

import tiga_cffi  # noqa: E402

CTX = mp.get_context("spawn")
REQ = "r" * 32
REPLY = "a" * 32


def echo(method, data, ctx):
    return REPLY


def first_server(ipc_dir, ready, stop):
    with tiga_cffi.start_tiga_server("bench", ipc_dir, echo, discovery_interval=0.1):
        ready.set()
        stop.wait()


def wake_listener(ipc_dir, ready, out, n):
    lst = tiga_cffi.create_tiga_notification_listener("wake", ipc_directory=ipc_dir)
    ch = tiga_cffi.Channel("wake", ipc_directory=ipc_dir)
    last = ch.read().last_id
    ready.set()
    lat = []
    while len(lat) < n:
        if not lst.wait(5):
            break
        now = time.monotonic_ns()
        r = ch.read(last)
        for e in r.entries:
            lat.append((now - int(e.message)) / 1e9)
        last = r.last_id
    out.put(lat)


def bench_first_invoke(base, rounds):
    out = []
    for k in range(rounds):
        d = os.path.join(base, f"first{k}")
        ready, stop = CTX.Event(), CTX.Event()
        p = CTX.Process(target=first_server, args=(d, ready, stop))
        p.start()
        ready.wait(30)
        t0 = time.perf_counter()
        with tiga_cffi.Client("bench", ipc_directory=d, timeout=30) as c:
            c.invoke("echo", REQ)
            out.append(time.perf_counter() - t0)
        stop.set()
        p.join(30)
    return out


def bench_wake(ipc_dir, n):
    ready, q = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=wake_listener, args=(ipc_dir, ready, q, n))
    p.start()
    ready.wait(30)
    time.sleep(0.2)
    with tiga_cffi.Channel("wake", ipc_directory=ipc_dir, min_age=0.01) as ch:
        for _ in range(n):
            ch.write(str(time.monotonic_ns()).encode())
            time.sleep(0.002)
    lat = q.get(timeout=60)
    p.join(30)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "rr"))
        res = {
            "tiga_cffi invoke": rr_tiga(os.path.join(d, "rr"), "default", args.warmup,
                                        args.samples),
            "multiprocessing.Pipe": rr_pipe(args.warmup, args.samples),
            "AF_UNIX socketpair": rr_socket(args.warmup, args.samples),
            "first invoke, fresh server": stats_us(bench_first_invoke(d, 5)),
            "write -> listener wake-up": stats_us(bench_wake(d, 1000)),
        }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    pipe = res["multiprocessing.Pipe"]["p50"]
    sock = res["AF_UNIX socketpair"]["p50"]
    rows = []
    for name, s in res.items():
        rows.append({"what": name, "p50 us": f"{s['p50']:.1f}", "p99 us": f"{s['p99']:.1f}",
                     "n": s["n"], "p50 / Pipe": f"{s['p50'] / pipe:.2f}",
                     "p50 / socket": f"{s['p50'] / sock:.2f}"})
    print_table(rows, ["what", "p50 us", "p99 us", "n", "p50 / Pipe", "p50 / socket"])
    t = res["tiga_cffi invoke"]["p50"]
    first = res["first invoke, fresh server"]["p50"] / 1000
    print(f"target: invoke p50 below Pipe and socket: {'met' if t < min(pipe, sock) else 'MISSED'}"
          f"; first invoke {first:.1f} ms < 50 ms: {'met' if first < 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
