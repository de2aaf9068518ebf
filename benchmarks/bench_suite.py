"""tiga_cffi beside the other ways two Python processes talk, in one run.

Round trips (request/reply between two processes) for tiga_cffi in three profiles,
multiprocessing.Pipe, an AF_UNIX socket pair, multiprocessing.Queue and pyzmq REQ/REP
over ipc:// (when pyzmq is installed: `pip install pyzmq`, for the benchmark only);
asyncio round trips (invoke_async alone and beside 100 idle subscriptions, pyzmq's
zmq.asyncio REQ/REP), the largest gap of a 1 ms heartbeat task while 1,000
invoke_async calls are gathered (beside what asyncio itself shows for 1,000 trivial
calls), and the CPU of a process whose 100 async subscriptions wait idle;
one-way throughput of 64-byte and 1 MiB messages; CPU per invoke; an idle server's CPU;
a server's memory with 100 clients and over connect/invoke/exit cycles.

Profiles of the tiga_cffi rows:
  fast      capacity 1 MiB, minimum age 10 ms, ack-trim on, hybrid wait (spin 50 us)
  compat    capacity 1 MiB, minimum age 1 s (the peers' default), hybrid wait,
            paced at 1,000 invokes/s
  blocking  as fast, spin 0 (every wait sleeps on the futex)
Pipe and the socket pair are also run paced at 1,000 calls/s, beside compat, to show
what the pacing itself costs on the machine (not a target). The "floor" rows are one
futex wake-up each way through tiga's notify slots with nothing else (no data, lock or
checksum): no blocking call can be faster than that on the machine. Where the
scheduler puts the two processes decides much of a blocking round trip (one CPU: a
context switch; two: an inter-processor wake-up of a halted CPU), so the blocking row,
the socket pair and the floor are also run with the placement fixed both ways.

    python benchmarks/bench_suite.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_table, stats_us  # noqa: E402

import tiga_cffi  # noqa: E402

CTX = mp.get_context("spawn")
REQ = "r" * 32
REPLY = "a" * 32
PROFILES = {
    "default": {"min_age": None, "spin": 50e-6},
    "fast": {"min_age": 0.01, "spin": 50e-6},
    "compat": {"min_age": 1.0, "spin": 50e-6},
    "blocking": {"min_age": 0.01, "spin": 0.0},
}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- servers (child processes)

def echo(method, data, ctx):
    return REPLY


def pin(cpu: Optional[int]) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def tiga_server(d, profile, ready, stop, out, cpu=None):
    pin(cpu)
    opts = PROFILES[profile]
    with tiga_cffi.start_tiga_server("bench", d, echo, discovery_interval=0.1,
                                     min_age=opts["min_age"], spin=opts["spin"]):
        ready.set()
        c0 = cpu_seconds()
        stop.wait()
        out.put(cpu_seconds() - c0)


def pipe_server(conn, out):
    c0 = cpu_seconds()
    while True:
        msg = conn.recv_bytes()
        if not msg:
            break
        conn.send_bytes(REPLY.encode())
    out.put(cpu_seconds() - c0)


def socket_server(sock, out, cpu=None):
    pin(cpu)
    c0 = cpu_seconds()
    while True:
        msg = sock.recv(64)
        if not msg or msg == b"quit":
            break
        sock.sendall(REPLY.encode())
    out.put(cpu_seconds() - c0)


def queue_server(qin, qout, out):
    c0 = cpu_seconds()
    while True:
        msg = qin.get()
        if msg is None:
            break
        qout.put(REPLY.encode())
    out.put(cpu_seconds() - c0)


def zmq_server(addr, ready, out):
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.bind(addr)
    ready.set()
    c0 = cpu_seconds()
    while True:
        msg = s.recv()
        if msg == b"quit":
            s.send(b"")
            break
        s.send(REPLY.encode())
    out.put(cpu_seconds() - c0)
    s.close()
    ctx.term()


# ---------------------------------------------------------------- round trips

def timed_loop(call: Callable[[], Any], warm: int, n: int, pace: float = 0.0) -> Dict[str, Any]:
    for _ in range(warm):
        call()
    samples = []
    c0 = cpu_seconds()
    next_t = time.perf_counter()
    for _ in range(n):
        if pace:  # sleep (not spin) until the next slot, so CPU per call stays fair
            next_t += pace
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    res = stats_us(samples)
    res["client_cpu_s"] = cpu_seconds() - c0
    return res


def rr_tiga(d, profile, warm, n, cpu=None):
    opts = PROFILES[profile]
    ready, stop, out = CTX.Event(), CTX.Event(), CTX.Queue()
    p = CTX.Process(target=tiga_server, args=(d, profile, ready, stop, out, cpu))
    p.start()
    ready.wait(60)
    pace = 0.001 if profile == "compat" else 0.0
    with tiga_cffi.Client("bench", ipc_directory=d, timeout=30, min_age=opts["min_age"],
                          spin=opts["spin"]) as c:
        res = timed_loop(lambda: c.invoke("echo", REQ), warm, n, pace)
    stop.set()
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    return res


def wake_peer(d, calls, ready, out, cpu=None):
    """Answer each of `calls` signals on channel "ping" with a signal on "pong",
    going straight back to sleep each time, as a blocking server does."""
    from tiga_cffi._tiga import ffi, lib

    pin(cpu)
    lst = tiga_cffi.create_tiga_notification_listener("ping", ipc_directory=d)
    pong = tiga_cffi.Channel("pong", ipc_directory=d)
    lh, ph, woken = lst._handle._h, pong._handle._h, ffi.new("int32_t *")
    ready.set()
    c0 = cpu_seconds()
    for _ in range(calls):
        if lib.tiga_listener_wait(lh, 60000, 0) != 0:
            break
        lib.tiga_channel_signal(ph, woken)
    out.put(cpu_seconds() - c0)


def rr_wake(d, warm, n, pace=0.0, cpu=None):
    """The floor under a blocking call: one futex wake-up each way through
    tiga's notify slots (spin 0), with no data, no lock, no checksum."""
    from tiga_cffi._tiga import ffi, lib

    ready, out = CTX.Event(), CTX.Queue()
    lst = tiga_cffi.create_tiga_notification_listener("pong", ipc_directory=d)
    ping = tiga_cffi.Channel("ping", ipc_directory=d)
    p = CTX.Process(target=wake_peer, args=(d, warm + n, ready, out, cpu))
    p.start()
    ready.wait(60)
    time.sleep(0.2)  # the peer's first wait is asleep
    lh, ph, woken = lst._handle._h, ping._handle._h, ffi.new("int32_t *")

    def call():
        lib.tiga_channel_signal(ph, woken)
        if lib.tiga_listener_wait(lh, 10000, 0) != 0:
            raise RuntimeError("no answer from the wake-up peer")

    res = timed_loop(call, warm, n, pace)
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    lst.close()
    ping.close()
    return res


def rr_pipe(warm, n, pace=0.0):
    a, b = CTX.Pipe()
    out = CTX.Queue()
    p = CTX.Process(target=pipe_server, args=(b, out))
    p.start()
    req = REQ.encode()

    def call():
        a.send_bytes(req)
        a.recv_bytes()

    res = timed_loop(call, warm, n, pace)
    a.send_bytes(b"")
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    return res


def rr_socket(warm, n, pace=0.0, cpu=None):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out = CTX.Queue()
    p = CTX.Process(target=socket_server, args=(b, out, cpu))
    p.start()
    b.close()
    req = REQ.encode()

    def call():
        a.sendall(req)
        a.recv(64)

    res = timed_loop(call, warm, n, pace)
    a.sendall(b"quit")
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    return res


def rr_queue(warm, n):
    qin, qout, out = CTX.Queue(), CTX.Queue(), CTX.Queue()
    p = CTX.Process(target=queue_server, args=(qin, qout, out))
    p.start()
    req = REQ.encode()

    def call():
        qin.put(req)
        qout.get()

    res = timed_loop(call, warm, n)
    qin.put(None)
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    return res


def start_zmq_server(d, sock):
    """A REP server process at ipc://<d>/<sock>: (address, process, its CPU queue)."""
    addr = f"ipc://{d}/{sock}"
    ready, out = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=zmq_server, args=(addr, ready, out))
    p.start()
    ready.wait(60)
    return addr, p, out


def rr_zmq(d, warm, n):
    try:
        import zmq
    except ImportError:
        return None
    addr, p, out = start_zmq_server(d, "zmq.sock")
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(addr)
    req = REQ.encode()

    def call():
        s.send(req)
        s.recv()

    res = timed_loop(call, warm, n)
    s.send(b"quit")
    s.recv()
    res["server_cpu_s"] = out.get(timeout=60)
    p.join(60)
    s.close()
    ctx.term()
    return res


# ---------------------------------------------------------------- asyncio

def heartbeat_gaps(make_calls, rounds=3):
    """Largest gap between the ticks of a 1 ms heartbeat task while `make_calls()`
    (a list of awaitables) is gathered; the worst of `rounds` rounds, in ms."""
    import asyncio

    async def heartbeat(gaps, stop):
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def one_round():
        gaps, stop = [], asyncio.Event()
        hb = asyncio.ensure_future(heartbeat(gaps, stop))
        await asyncio.sleep(0.02)
        gaps.clear()
        await asyncio.gather(*make_calls())
        stop.set()
        await hb
        return max(gaps) * 1e3

    async def rounds_():
        return [await one_round() for _ in range(rounds)]

    return rounds_


def async_suite(d_fast, d_default, warm, n, idle_seconds):
    """invoke_async against the fast profile (alone, then with 100 idle async
    subscriptions waiting in the same process), the heartbeat while 1,000 are
    gathered (against a default-profile server: a client lagging behind 1,000
    answers must not meet the fast profile's 10 ms minimum age), what asyncio
    itself costs for 1,000 trivial gathered calls, and this process's CPU while
    only the 100 subscriptions wait."""
    import asyncio

    res: Dict[str, Any] = {}
    servers = []
    for d, profile in ((d_fast, "fast"), (d_default, "default")):
        ready, stop, out = CTX.Event(), CTX.Event(), CTX.Queue()
        p = CTX.Process(target=tiga_server, args=(d, profile, ready, stop, out))
        p.start()
        ready.wait(60)
        servers.append((p, stop, out))
    opts = PROFILES["fast"]

    async def timed(call, count):
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t0)
        return stats_us(samples)

    async def main():
        with tiga_cffi.Client("bench", ipc_directory=d_fast, timeout=30, min_age=opts["min_age"],
                              spin=opts["spin"]) as c:
            call = lambda: c.invoke_async("echo", REQ)  # noqa: E731
            await timed(call, warm)
            # sync and async in turns on the same client and server, so that where
            # the scheduler happened to put the processes weighs on both alike
            sync_s: list = []
            async_s: list = []
            for _ in range(4):
                for _ in range(n // 4):
                    t0 = time.perf_counter()
                    c.invoke("echo", REQ)
                    sync_s.append(time.perf_counter() - t0)
                for _ in range(n // 4):
                    t0 = time.perf_counter()
                    await c.invoke_async("echo", REQ)
                    async_s.append(time.perf_counter() - t0)
            res["sync, in turns"] = stats_us(sync_s)
            res["async alone"] = stats_us(async_s)
            chans = [tiga_cffi.Channel(f"idle{i}", ipc_directory=d_fast) for i in range(100)]
            subs = [ch.subscribe() for ch in chans]
            waits = [asyncio.ensure_future(s.get_async()) for s in subs]
            await asyncio.sleep(0.2)
            await timed(call, warm)
            res["async, 100 idle subscriptions"] = await timed(call, n)
            c0, t0 = cpu_seconds(), time.monotonic()
            await asyncio.sleep(idle_seconds)
            res["idle_cpu_pct_100_subscriptions"] = (
                100 * (cpu_seconds() - c0) / (time.monotonic() - t0))
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            for sub in subs:
                sub.close()
            for ch in chans:
                ch.close()
        with tiga_cffi.Client("bench", ipc_directory=d_default, timeout=30) as c:
            await c.invoke_async("echo", REQ)
            gaps = heartbeat_gaps(lambda: [c.invoke_async("echo", REQ) for _ in range(1000)])
            res["heartbeat_max_gap_ms"] = max(await gaps())


        async def trivial():
            await asyncio.sleep(0)
            return REPLY

        floor = heartbeat_gaps(lambda: [trivial() for _ in range(1000)])
        res["heartbeat_max_gap_ms_asyncio_floor"] = max(await floor())
        worst = 0.0
        for _ in range(3):  # asyncio.gather() of 1,000 coroutines, alone
            coros = [trivial() for _ in range(1000)]
            t0 = time.perf_counter()
            g = asyncio.gather(*coros)
            worst = max(worst, time.perf_counter() - t0)
            await g
        res["asyncio_gather_call_1000_ms"] = worst * 1e3

    asyncio.run(main())
    for p, stop, out in servers:
        stop.set()
        out.get(timeout=60)
        p.join(60)
    return res


def rr_zmq_asyncio(d, warm, n):
    """pyzmq's asyncio REQ socket against a REP server process, over ipc://."""
    try:
        import zmq
        import zmq.asyncio
    except ImportError:
        return None
    import asyncio

    addr, p, out = start_zmq_server(d, "zmq-async.sock")
    req = REQ.encode()

    async def main():
        ctx = zmq.asyncio.Context()
        s = ctx.socket(zmq.REQ)
        s.connect(addr)
        samples = []
        for i in range(warm + n):
            t0 = time.perf_counter()
            await s.send(req)
            await s.recv()
            if i >= warm:
                samples.append(time.perf_counter() - t0)
        await s.send(b"quit")
        await s.recv()
        s.close()
        ctx.term()
        return stats_us(samples)

    res = asyncio.run(main())
    out.get(timeout=60)
    p.join(60)
    return res


# ---------------------------------------------------------------- one-way throughput

def tiga_reader(d, name, count, ready, out):
    ch = tiga_cffi.Channel(name, ipc_directory=d)
    with tiga_cffi.create_tiga_notification_listener(name, ipc_directory=d) as lst:
        ready.set()
        last, got, nbytes, missed = 0, 0, 0, 0
        while got < count:
            r = ch.read(last)
            missed += r.missed
            for e in r.entries:
                nbytes += len(e.message)
            got += len(r.entries) + r.missed
            last = r.last_id
            if got < count:
                lst.wait(1.0)
    out.put((time.perf_counter(), nbytes, missed))


def durable_reader(d, name, count, ready, out):
    """A declared subscriber: writers keep what it has not read."""
    with tiga_cffi.Channel(name, ipc_directory=d) as ch, \
            ch.subscribe(last_id=0, durable=True, missed="count") as sub:
        ready.set()
        got, nbytes = 0, 0
        while got + sub.missed < count:
            batch = sub.poll()
            if not batch:
                e = sub.get(5.0)
                if e is None:
                    break
                batch = [e]
            got += len(batch)
            for e in batch:
                nbytes += len(e.message)
        out.put((time.perf_counter(), nbytes, sub.missed))


def oneway_durable(d, name, size, count, capacity, batch=1):
    """One declared subscriber; the writer trims what it has read at once
    (read_min_age 0: no reader that declares nothing)."""
    return oneway_tiga(d, name, size, count, capacity, batch, reader=durable_reader,
                       read_min_age=0)


def socket_reader(sock, size, count, out):
    buf = bytearray(size)
    view = memoryview(buf)
    nbytes = 0
    for _ in range(count):
        got = 0
        while got < size:
            got += sock.recv_into(view[got:], size - got)
        nbytes += len(bytes(buf))  # a message object of its own, as a reader hands on
    out.put((time.perf_counter(), nbytes, 0))


def oneway_socket(size, count):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out = CTX.Queue()
    p = CTX.Process(target=socket_reader, args=(b, size, count, out))
    p.start()
    b.close()
    time.sleep(0.3)
    msg = b"m" * size
    t0 = time.perf_counter()
    for _ in range(count):
        a.sendall(msg)
    t_end, nbytes, _ = out.get(timeout=300)
    p.join(60)
    a.close()
    dt = t_end - t0
    return {"msgs_per_s": count / dt, "mib_per_s": nbytes / dt / 2**20, "missed": 0}


def stop_reader(d, name, ready, out, stop):
    """A declared subscriber that reports (time, entries so far) every 50 ms."""
    with tiga_cffi.Channel(name, ipc_directory=d) as ch, \
            ch.subscribe(last_id=0, durable=True, missed="count") as sub:
        ready.set()
        got, ids, marks, next_mark = 0, [], [], time.monotonic()
        while not stop.is_set():
            e = sub.get(0.02)
            for x in ([e] if e is not None else []) + sub.poll():
                got += 1
                ids.append(x.id)
            now = time.monotonic()
            if now >= next_mark:
                marks.append((now, got))
                next_mark = now + 0.05
        consecutive = ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
        out.put((marks, got, sub.missed, consecutive))


def stopped_subscriber(d, rate, size, seconds, stop_at, stop_for, capacity):
    """Four declared subscribers of one paced writer; the first is SIGSTOPped for
    stop_for seconds. Returns each other subscriber's rate while it was stopped
    against its rate in the same span before, and what the stopped one got."""
    import signal as sig

    name = "stop"
    tiga_cffi.Channel(name, ipc_directory=d, capacity=capacity).close()
    procs = []
    stop = CTX.Event()
    for _ in range(4):
        ready, out = CTX.Event(), CTX.Queue()
        p = CTX.Process(target=stop_reader, args=(d, name, ready, out, stop))
        p.start()
        ready.wait(60)
        procs.append((p, out))
    msg = b"m" * size
    n = int(rate * seconds)
    t_stop = t_cont = 0.0
    with tiga_cffi.Channel(name, ipc_directory=d, min_age=0.01, read_min_age=0,
                           write_timeout=30) as ch:
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            if not t_stop and now - t0 >= stop_at:
                os.kill(procs[0][0].pid, sig.SIGSTOP)
                t_stop = time.monotonic()
            if t_stop and not t_cont and now - t_stop >= stop_for:
                os.kill(procs[0][0].pid, sig.SIGCONT)
                t_cont = time.monotonic()
            ch.write(msg)
        writer_s = time.monotonic() - t0
        if not t_cont:
            os.kill(procs[0][0].pid, sig.SIGCONT)
            t_cont = time.monotonic()
        time.sleep(1.0)  # the resumed one catches up
    stop.set()
    results = [out.get(timeout=120) for _, out in procs]
    for p, _ in procs:
        p.join(60)

    def rate_in(marks, a, b):
        inside = [(t, g) for t, g in marks if a <= t <= b]
        if len(inside) < 2:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    span = t_cont - t_stop
    ratios = []
    for marks, _, _, _ in results[1:]:
        before = rate_in(marks, t_stop - span, t_stop)
        during = rate_in(marks, t_stop, t_cont)
        ratios.append(during / before if before else 0.0)
    _, got, missed, consecutive = results[0]
    return {"writes": n, "writer_rate": n / writer_s, "stopped_s": span,
            "others_rate_ratio_min": min(ratios), "stopped_got": got,
            "stopped_missed": missed, "stopped_in_order": consecutive}


def pipe_reader(conn, count, out):
    nbytes = 0
    for _ in range(count):
        nbytes += len(conn.recv_bytes())
    out.put((time.perf_counter(), nbytes, 0))


def oneway_tiga(d, name, size, count, capacity, batch, reader=tiga_reader, **writer_opts):
    """`count` messages of `size` bytes, `batch` per write, to a reader process;
    writer_opts go to the writer's Channel (beside min_age 10 ms)."""
    count -= count % batch
    ready, out = CTX.Event(), CTX.Queue()
    tiga_cffi.Channel(name, ipc_directory=d, capacity=capacity).close()
    p = CTX.Process(target=reader, args=(d, name, count, ready, out))
    p.start()
    ready.wait(60)
    msg = b"m" * size
    with tiga_cffi.Channel(name, ipc_directory=d, min_age=0.01, write_timeout=30,
                           **writer_opts) as ch:
        t0 = time.perf_counter()
        if batch > 1:
            for _ in range(count // batch):
                ch.write_many([msg] * batch)
        else:
            for _ in range(count):
                ch.write(msg)
    t_end, nbytes, missed = out.get(timeout=300)
    p.join(60)
    dt = t_end - t0
    # what the reader received: entries trimmed before it read them do not count
    return {"msgs_per_s": (count - missed) / dt, "mib_per_s": nbytes / dt / 2**20,
            "missed": missed}


def oneway_pipe(size, count):
    a, b = CTX.Pipe(duplex=False)
    out = CTX.Queue()
    p = CTX.Process(target=pipe_reader, args=(a, count, out))
    p.start()
    time.sleep(0.3)
    msg = b"m" * size
    t0 = time.perf_counter()
    for _ in range(count):
        b.send_bytes(msg)
    t_end, nbytes, _ = out.get(timeout=300)
    p.join(60)
    dt = t_end - t0
    return {"msgs_per_s": count / dt, "mib_per_s": nbytes / dt / 2**20, "missed": 0}


# ---------------------------------------------------------------- idle, memory, churn

def proc_rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident KiB: VmRSS (all), RssAnon (private memory) or RssFile (mapped
    files: the channels' pages, shared with the page cache and the peers)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz


def churn_server(d, ready, stop):
    with tiga_cffi.start_tiga_server("churn", d, echo, discovery_interval=0.1,
                                     stale_after=0.5, scavenge_interval=0.25):
        ready.set()
        stop.wait()


def idle_and_memory(d, clients: int, cycles: int) -> Dict[str, Any]:
    res: Dict[str, Any] = {}
    ready, stop = CTX.Event(), CTX.Event()
    p = CTX.Process(target=churn_server, args=(d, ready, stop))
    p.start()
    ready.wait(60)
    with tiga_cffi.Client("churn", ipc_directory=d, timeout=30) as c:
        c.invoke("echo", "x")
        time.sleep(1.0)
        c0, t0 = proc_cpu_s(p.pid), time.monotonic()
        time.sleep(5.0)
        res["idle_server_cpu_pct"] = 100 * (proc_cpu_s(p.pid) - c0) / (time.monotonic() - t0)
    held = [tiga_cffi.Client("churn", ipc_directory=d, timeout=30) for _ in range(clients)]
    for c in held:
        c.invoke("echo", "x")
    res[f"server_rss_kib_{clients}_clients"] = proc_rss_kib(p.pid)
    res[f"server_rss_anon_kib_{clients}_clients"] = proc_rss_kib(p.pid, "RssAnon")
    res[f"server_rss_file_kib_{clients}_clients"] = proc_rss_kib(p.pid, "RssFile")
    for c in held:
        c.close()
    time.sleep(1.5)  # scavenged

    def snapshot():
        return {"rss_kib": proc_rss_kib(p.pid), "fds": len(os.listdir(f"/proc/{p.pid}/fd")),
                "files": len(os.listdir(d)), "threads": len(os.listdir(f"/proc/{p.pid}/task"))}

    def cycle(n):
        """n cycles; returns the seconds they took (the settling pause not counted)."""
        t0 = time.monotonic()
        for _ in range(n):
            with tiga_cffi.Client("churn", ipc_directory=d, timeout=30) as c:
                c.invoke("echo", "x")
        took = time.monotonic() - t0
        time.sleep(1.5)  # the departed clients' workers end, their files are scavenged
        return took

    # Warm the allocator with a first round (a tenth of the cycles), then look at
    # the growth over the cycles, with a look half way (growth or a plateau?).
    cycle(max(1, cycles // 10))
    before = snapshot()
    took = cycle(cycles // 2)
    half = snapshot()
    took += cycle(cycles - cycles // 2)
    res["churn_cycles_per_s"] = cycles / took
    after = snapshot()
    res["churn_before"], res["churn_half_way"], res["churn_after"] = before, half, after
    stop.set()
    p.join(60)
    return res


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--compat-samples", type=int, default=20000,
                    help="samples for the paced compat row (1,000/s: 20 s by default)")
    ap.add_argument("--cycles", type=int, default=10000, help="connect/invoke/exit cycles")
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.samples, args.compat_samples, args.cycles = 200, 2000, 1000, 300

    rt: Dict[str, Optional[Dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as base:
        def fresh(name: str) -> str:
            d = os.path.join(base, name)
            os.makedirs(d)
            return d

        rt["tiga_cffi fast"] = rr_tiga(fresh("fast"), "fast", args.warmup, args.samples)
        rt["tiga_cffi blocking"] = rr_tiga(fresh("blocking"), "blocking", args.warmup,
                                           args.samples)
        rt["tiga_cffi compat @1000/s"] = rr_tiga(fresh("compat"), "compat", args.warmup,
                                                 args.compat_samples)
        rt["multiprocessing.Pipe"] = rr_pipe(args.warmup, args.samples)
        rt["AF_UNIX socketpair"] = rr_socket(args.warmup, args.samples)
        rt["multiprocessing.Queue"] = rr_queue(args.warmup, args.samples)
        rt["pyzmq REQ/REP ipc://"] = rr_zmq(fresh("zmq"), args.warmup, args.samples)
        # Context, not targets: what a bare wake-up each way costs (the floor
        # under the blocking row), and what pacing costs the others (both
        # processes go idle between calls and must be woken).
        rt["floor: wake-up only, spin 0"] = rr_wake(fresh("wake"), args.warmup, args.samples)
        rt["floor: wake-up only @1000/s"] = rr_wake(fresh("wake2"), args.warmup,
                                                    args.compat_samples, 0.001)
        # The same with the placement fixed, so that the scheduler's choice
        # does not decide the comparison: both processes on one CPU, then on
        # two (this process on CPU 0, the server on CPU 0 or 1).
        if len(os.sched_getaffinity(0)) >= 2:
            mask = os.sched_getaffinity(0)
            for where, cpu in (("one CPU", 0), ("two CPUs", 1)):
                pin(0)
                try:
                    rt[f"tiga_cffi blocking, {where}"] = rr_tiga(
                        fresh(f"blocking{cpu}"), "blocking", args.warmup, args.samples, cpu)
                    rt[f"AF_UNIX socketpair, {where}"] = rr_socket(args.warmup, args.samples,
                                                                   0.0, cpu)
                    rt[f"floor: wake-up only, {where}"] = rr_wake(
                        fresh(f"wake{cpu}x"), args.warmup, args.samples, 0.0, cpu)
                finally:
                    os.sched_setaffinity(0, mask)
        rt["multiprocessing.Pipe @1000/s"] = rr_pipe(args.warmup, args.compat_samples, 0.001)
        rt["AF_UNIX socketpair @1000/s"] = rr_socket(args.warmup, args.compat_samples, 0.001)

        n64 = 20000 if args.quick else 200000
        n1m = 100 if args.quick else 1000
        ow = {
            "64 B tiga_cffi fast": oneway_tiga(fresh("ow1"), "ow", 64, n64, 1 << 20, 1),
            "64 B tiga_cffi write_many(64)": oneway_tiga(fresh("ow2"), "ow", 64, n64, 1 << 20,
                                                         64),
            "64 B tiga_cffi write_many(64), 1 declared subscriber": oneway_durable(
                fresh("ow5"), "ow", 64, n64, 1 << 20, 64),
            "64 B multiprocessing.Pipe": oneway_pipe(64, n64),
            "1 MiB tiga_cffi fast, 64 MiB": oneway_tiga(fresh("ow3"), "ow", 1 << 20, n1m,
                                                        64 << 20, 1),
            "1 MiB tiga_cffi, 1 declared subscriber": oneway_durable(
                fresh("ow4"), "ow", 1 << 20, n1m, 64 << 20),
            "1 MiB multiprocessing.Pipe": oneway_pipe(1 << 20, n1m),
            "1 MiB AF_UNIX socketpair": oneway_socket(1 << 20, n1m),
        }
        stopped = stopped_subscriber(fresh("stop"), 1000, 1024, 3.0 if args.quick else 6.0,
                                     0.5 if args.quick else 2.0, 2.0, 16 << 20)
        res_async = async_suite(fresh("afast"), fresh("adefault"), args.warmup, args.samples,
                                2.0 if args.quick else 10.0)
        zmq_async = rr_zmq_asyncio(fresh("zmqa"), args.warmup, args.samples)
        res_mem = idle_and_memory(fresh("churn"), 100, args.cycles)
    try:
        import resource  # (POSIX)

        maxrss = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB"
    except ImportError:
        maxrss = "unknown"

    pipe = rt["multiprocessing.Pipe"]
    sock = rt["AF_UNIX socketpair"]
    assert pipe and sock
    rows = []
    for name, r in rt.items():
        if r is None:
            rows.append({"round trip (2 processes)": name, "p50 us": "not installed"})
            continue
        n = r["n"]
        cpu = (r["client_cpu_s"] + r["server_cpu_s"]) / n * 1e6
        rows.append({"round trip (2 processes)": name, "p50 us": f"{r['p50']:.1f}",
                     "p99 us": f"{r['p99']:.1f}", "p50/Pipe": f"{r['p50'] / pipe['p50']:.2f}",
                     "p99/Pipe": f"{r['p99'] / pipe['p99']:.2f}",
                     "p50/socket": f"{r['p50'] / sock['p50']:.2f}",
                     "CPU us/call": f"{cpu:.1f}"})
        r["cpu_us_per_call"] = cpu
    print_table(rows, ["round trip (2 processes)", "p50 us", "p99 us", "p50/Pipe", "p99/Pipe",
                       "p50/socket", "CPU us/call"])
    print()
    arows = [("tiga_cffi invoke (sync, fast; in turns with the next)", res_async["sync, in turns"])]
    arows += [(f"tiga_cffi invoke_async ({k}, fast)", res_async[k])
              for k in ("async alone", "async, 100 idle subscriptions")]
    arows.append(("pyzmq.asyncio REQ/REP ipc://", zmq_async))
    rows = []
    sync_turns = res_async["sync, in turns"]
    for name, r in arows:
        if r is None:
            rows.append({"asyncio round trip": name, "p50 us": "not installed"})
            continue
        rows.append({"asyncio round trip": name, "p50 us": f"{r['p50']:.1f}",
                     "p99 us": f"{r['p99']:.1f}",
                     "p50/sync": f"{r['p50'] / sync_turns['p50']:.2f}"})
    print_table(rows, ["asyncio round trip", "p50 us", "p99 us", "p50/sync"])
    for k in ("heartbeat_max_gap_ms", "heartbeat_max_gap_ms_asyncio_floor",
              "asyncio_gather_call_1000_ms", "idle_cpu_pct_100_subscriptions"):
        print(f"{k}: {res_async[k]:.2f}")
    print()
    rows = [{"one-way": k, "msgs/s": f"{v['msgs_per_s']:.0f}", "MiB/s": f"{v['mib_per_s']:.1f}",
             "missed": v["missed"]} for k, v in ow.items()]
    print_table(rows, ["one-way", "msgs/s", "MiB/s", "missed"])
    print()
    print("4 declared subscribers of a writer at 1,000 x 1 KiB/s, one stopped (SIGSTOP) "
          "for 2 s: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in stopped.items()))
    print()
    for k, v in res_mem.items():
        print(f"{k}: {v if not isinstance(v, float) else round(v, 3)}")

    fast, blocking, compat = (rt["tiga_cffi fast"], rt["tiga_cffi blocking"],
                              rt["tiga_cffi compat @1000/s"])
    assert fast and blocking and compat
    targets = [
        ("invoke p50 fast <= 0.5 x Pipe", fast["p50"] / pipe["p50"], 0.5),
        ("invoke p99 fast <= 0.6 x Pipe", fast["p99"] / pipe["p99"], 0.6),
        ("invoke p50 blocking <= 1.0 x socket", blocking["p50"] / sock["p50"], 1.0),
        ("invoke p50 compat @1000/s <= 1.0 x Pipe", compat["p50"] / pipe["p50"], 1.0),
        ("64 B unbatched >= 0.25 x Pipe msgs/s",
         ow["64 B tiga_cffi fast"]["msgs_per_s"] / ow["64 B multiprocessing.Pipe"]["msgs_per_s"],
         -0.25),
        ("64 B write_many >= 0.5 x Pipe msgs/s",
         ow["64 B tiga_cffi write_many(64)"]["msgs_per_s"]
         / ow["64 B multiprocessing.Pipe"]["msgs_per_s"], -0.5),
        ("1 MiB >= 1.0 x Pipe MiB/s",
         ow["1 MiB tiga_cffi fast, 64 MiB"]["mib_per_s"]
         / ow["1 MiB multiprocessing.Pipe"]["mib_per_s"], -1.0),
        ("1 MiB, 1 declared subscriber >= 1.0 x AF_UNIX socketpair MiB/s",
         ow["1 MiB tiga_cffi, 1 declared subscriber"]["mib_per_s"]
         / ow["1 MiB AF_UNIX socketpair"]["mib_per_s"], -1.0),
        ("1 MiB, 1 declared subscriber: no entry missed",
         ow["1 MiB tiga_cffi, 1 declared subscriber"]["missed"], 0.0),
        ("64 B write_many, 1 declared subscriber >= 2 x Pipe msgs/s",
         ow["64 B tiga_cffi write_many(64), 1 declared subscriber"]["msgs_per_s"]
         / ow["64 B multiprocessing.Pipe"]["msgs_per_s"], -2.0),
        ("a subscriber stopped 2 s: the others keep >= 0.8 x their rate",
         stopped["others_rate_ratio_min"], -0.8),
        ("a subscriber stopped 2 s: it misses nothing",
         stopped["stopped_missed"] + (stopped["stopped_got"] != stopped["writes"]), 0.0),
        ("CPU per invoke fast <= 1.0 x Pipe", fast["cpu_us_per_call"] / pipe["cpu_us_per_call"],
         1.0),
        ("idle server < 1 % of a core", res_mem["idle_server_cpu_pct"], 1.0),
        ("async invoke p50 <= 1.5 x sync invoke p50 (fast, in turns)",
         res_async["async alone"]["p50"] / res_async["sync, in turns"]["p50"], 1.5),
        ("1,000 gathered invoke_async: heartbeat max gap <= 5 ms",
         res_async["heartbeat_max_gap_ms"], 5.0),
        ("invoke_async p50 with 100 idle subscriptions <= 1.2 x without",
         res_async["async, 100 idle subscriptions"]["p50"] / res_async["async alone"]["p50"],
         1.2),
        ("idle CPU with 100 idle async subscriptions < 1 % of a core",
         res_async["idle_cpu_pct_100_subscriptions"], 1.0),
    ]
    if zmq_async is not None:
        targets.append(("async invoke p50 <= 0.5 x zmq.asyncio REQ/REP",
                        res_async["async alone"]["p50"] / zmq_async["p50"], 0.5))
    print()
    verdicts = []
    for name, value, bound in targets:
        ok = value >= -bound if bound < 0 else value <= bound
        verdicts.append({"target": name, "value": round(value, 3), "met": ok})
        print(f"{'met   ' if ok else 'MISSED'} {name}: {value:.2f}")
    print(f"(benchmark process max RSS {maxrss})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"round_trip": rt, "one_way": ow, "memory": res_mem, "asyncio": res_async,
                       "zmq_asyncio": zmq_async, "stopped_subscriber": stopped,
                       "targets": verdicts}, f, indent=2)


if __name__ == "__main__":
    main()
