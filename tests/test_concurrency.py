"""Several processes and threads write one channel while others read it:
no entry is lost or duplicated, no reader ever gets unverified bytes."""

import multiprocessing as mp
import threading
import time

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
