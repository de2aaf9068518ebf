"""Several processes and threads write one channel while others read it:
no entry is lost or duplicated, no reader ever gets unverified bytes."""

import multiprocessing as mp
import os
import threading
import time

from platforms import needs_fork

import tiga_cffi

PROCS, THREADS, PER_THREAD = 4, 4, 500
TOTAL = PROCS * THREADS * PER_THREAD


def message(p, t, i):
    return f"p{p}-t{t}-{i}".encode()


def writer_proc(ipc_dir, p, start, errors):
    # half the threads share one Channel, the others use the module function's cache
    shared = tiga_cffi.Channel("stress", ipc_directory=ipc_dir, min_age=3600,
                               capacity=4 << 20, lock_timeout=60)

    def run(t):
        try:
            start.wait(30)
            for i in range(PER_THREAD):
                if t % 2:
                    shared.write(message(p, t, i))
                else:
                    with tiga_cffi.Channel("stress", ipc_directory=ipc_dir, min_age=3600,
                                           lock_timeout=60) as own:
                        own.write(message(p, t, i))
        except Exception as e:  # pragma: no cover - reported to the parent
            errors.put(f"writer p{p} t{t}: {e!r}")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    shared.close()


def reader_proc(ipc_dir, stop, results, errors):
    ch = tiga_cffi.Channel("stress", ipc_directory=ipc_dir)
    last, seen, reads = 0, 0, 0
    try:
        while True:
            done = stop.is_set()
            r = ch.read(last)
            reads += 1
            for e in r.entries:
                if e.id != last + 1:
                    errors.put(f"reader: id {e.id} after {last}")
                last = e.id
                seen += 1
                p, t, i = e.message.decode().split("-")
                if not (p.startswith("p") and t.startswith("t") and i.isdigit()):
                    errors.put(f"reader: bad message {e.message!r}")
            if r.missed:
                errors.put(f"reader: missed {r.missed}")
            if done:
                break
    except Exception as e:
        errors.put(f"reader: {e!r}")
    results.put((seen, reads))


def test_many_writers_and_readers(ipc_dir):
    ctx = mp.get_context("spawn")
    start, stop = ctx.Event(), ctx.Event()
    errors, results = ctx.Queue(), ctx.Queue()
    # create the channel with the capacity every writer agrees on
    tiga_cffi.Channel("stress", ipc_directory=ipc_dir, capacity=4 << 20).close()
    readers = [ctx.Process(target=reader_proc, args=(str(ipc_dir), stop, results, errors))
               for _ in range(2)]
    writers = [ctx.Process(target=writer_proc, args=(str(ipc_dir), p, start, errors))
               for p in range(PROCS)]
    for pr in readers + writers:
        pr.start()
    time.sleep(0.5)
    start.set()
    for w in writers:
        w.join(240)
        assert w.exitcode == 0
    stop.set()
    for r in readers:
        r.join(60)
        assert r.exitcode == 0
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    assert errs == []
    stats = [results.get(timeout=10) for _ in readers]
    assert all(seen == TOTAL for seen, _ in stats), stats

    with tiga_cffi.Channel("stress", ipc_directory=ipc_dir) as ch:
        r = ch.read()
    assert r.last_id == TOTAL and r.missed == 0
    assert [e.id for e in r.entries] == list(range(1, TOTAL + 1))
    got = sorted(e.message for e in r.entries)
    want = sorted(message(p, t, i) for p in range(PROCS) for t in range(THREADS)
                  for i in range(PER_THREAD))
    assert got == want


def test_threads_share_one_channel_with_reads_and_close(ipc_dir):
    ch = tiga_cffi.Channel("threads", ipc_directory=ipc_dir, min_age=3600)
    errors = []

    def work(k):
        try:
            for i in range(200):
                ch.write(f"{k}:{i}".encode())
                ch.read(max(0, ch.version and 0))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    r = ch.read()
    assert r.last_id == 1600 and len({e.message for e in r.entries}) == 1600
    ch.close()


def _write_in_child(ch, lst, q):
    try:
        ch.write(b"child")
        q.put(("ok", lst.slot))
    except BaseException as e:  # reported to the parent
        q.put(("error", repr(e)))


@needs_fork("handles followed into a forked child")
def test_objects_follow_a_fork_even_mid_call(ipc_dir):
    """A Channel a parent thread is inside (holding its lock, waiting for the file
    lock) when the process forks: the child's first use opens a fresh handle instead
    of waiting on a lock nobody in the child will release. A listener gets a slot
    of its own in the child; the parent's stays registered."""
    import fcntl
    import multiprocessing
    import struct
    import warnings

    fork = multiprocessing.get_context("fork")
    with tiga_cffi.Channel("forkmid", ipc_directory=ipc_dir) as ch, \
            tiga_cffi.create_tiga_notification_listener("forkmid", ipc_directory=ipc_dir) as lst:
        parent_slot = lst.slot
        with open(ipc_dir / "tiga_forkmid_state", "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            t = threading.Thread(target=ch.write, args=(b"parent",))
            t.start()
            deadline = time.monotonic() + 10
            while ch.pending_writes() < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.05)  # the writer now holds the handle and waits in flock
            q = fork.Queue()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                p = fork.Process(target=_write_in_child, args=(ch, lst, q))
                p.start()
            time.sleep(0.1)
            fcntl.flock(f, fcntl.LOCK_UN)
        t.join(10)
        try:
            status, detail = q.get(timeout=20)
        finally:
            p.join(5)
            if p.is_alive():  # hung on the parent's lock: do not leave it behind
                p.kill()
        assert status == "ok", detail
        assert detail != parent_slot  # the child registered its own slot
        assert sorted(e.message for e in ch.read().entries) == [b"child", b"parent"]
        raw = (ipc_dir / "tiga_forkmid_notify").read_bytes()
        token, _, pid = struct.unpack_from("<qqi", raw, parent_slot * 24)
        assert token != 0 and pid == os.getpid()  # the parent still listens
