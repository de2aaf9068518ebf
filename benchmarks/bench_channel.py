"""Cost of a write and of a verified read against the number of retained entries.

Prints p50/p99 (microseconds) of a 64-byte write and of a read of one new entry
with 0, 1,000 and 10,000 retained entries, beside the floor the protocol sets:
a plain copy plus a checksum of the same payload size (every write and every
verified read hashes the whole payload).

    python benchmarks/bench_channel.py [--samples N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import tiga_cffi

MSG = b"m" * 64


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs):
    us = [x * 1e6 for x in xs]
    return {"p50": statistics.median(us), "p99": pct(us, 99)}


def measure(retained: int, samples: int, directory: str) -> dict:
    name = f"bench{retained}"
    min_age = 0 if retained == 0 else 3600
    w = tiga_cffi.Channel(name, ipc_directory=directory, capacity=8 << 20, min_age=min_age)
    r = tiga_cffi.Channel(name, ipc_directory=directory)
    if retained:
        batch = [MSG] * 500
        for _ in range(retained // 500):
            w.write_many(batch)
    last = r.read().last_id
    writes, reads = [], []
    clock = time.perf_counter
    for _ in range(samples):
        t0 = clock()
        w.write(MSG)
        t1 = clock()
        res = r.read(last)
        t2 = clock()
        assert len(res.entries) == 1
        last = res.last_id
        writes.append(t1 - t0)
        reads.append(t2 - t1)
    payload = w.info().payload_len
    # the floor: copy + checksum of a payload of the same size
    blob = bytes(payload)
    floor = []
    for _ in range(samples):
        t0 = clock()
        copy = bytearray(blob)
        tiga_cffi.wyhash(copy)
        floor.append(clock() - t0)
    w.close()
    r.close()
    return {
        "retained": retained,
        "payload_bytes": payload,
        "write": summary(writes),
        "read_one": summary(reads),
        "copy_checksum": summary(floor),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = [measure(n, args.samples, d) for n in (0, 1000, 10000)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'retained':>8} {'payload':>9} {'write p50':>10} {'write p99':>10} "
          f"{'read p50':>9} {'read p99':>9} {'copy+sum p50':>13}   (microseconds)")
    for row in rows:
        print(f"{row['retained']:>8} {row['payload_bytes']:>9} "
              f"{row['write']['p50']:>10.1f} {row['write']['p99']:>10.1f} "
              f"{row['read_one']['p50']:>9.1f} {row['read_one']['p99']:>9.1f} "
              f"{row['copy_checksum']['p50']:>13.1f}")
    base = rows[0]["write"]["p50"]
    big = rows[-1]
    budget = base + 1.5 * big["copy_checksum"]["p50"]
    verdict = "met" if big["write"]["p50"] <= budget else "MISSED"
    print(f"target: write p50 with 10,000 retained {big['write']['p50']:.1f} us <= "
          f"0-retained write {base:.1f} + 1.5 x copy+checksum "
          f"{big['copy_checksum']['p50']:.1f} = {budget:.1f} us: {verdict}")


if __name__ == "__main__":
    main()
