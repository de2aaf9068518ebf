"""Peer processes for the tests (started with multiprocessing's spawn context)."""

import multiprocessing as mp
import os
import time

import tiga_cffi

CTX = mp.get_context("spawn")


def echo_handler(method, data, ctx):
    if method == "fail":
        raise ValueError(f"failed on purpose: {data}")
    if method == "pid":
        return str(os.getpid())
    if method == "sleep":
        time.sleep(float(data))
        return "slept"
    if method == "whoami":
        return ctx.client_id
    return data


def run_server(ipc_dir, channel, ready=None, stale_after=300.0, scavenge_interval=30.0):
    srv = tiga_cffi.start_tiga_server(channel, ipc_dir, echo_handler,
                                      stale_after=stale_after,
                                      scavenge_interval=scavenge_interval)
    if ready is not None:
        ready.set()
    srv.serve_forever()


def start_server(ipc_dir, channel="svc", **kw):
    ready = CTX.Event()
    p = CTX.Process(target=run_server, args=(str(ipc_dir), channel, ready), kwargs=kw,
                    daemon=True)
    p.start()
    assert ready.wait(30), "server did not start"
    return p


def run_client(ipc_dir, channel, client_id, count, results):
    bad = 0
    try:
        with tiga_cffi.Client(channel, ipc_directory=ipc_dir, client_id=client_id,
                              timeout=60) as c:
            for i in range(count):
                data = f"{client_id}:{i}"
                if c.invoke("echo", data) != data:
                    bad += 1
                if i % 50 == 0 and c.invoke("whoami") != client_id:
                    bad += 1
        results.put((client_id, bad, None))
    except Exception as e:  # reported to the test
        results.put((client_id, bad, repr(e)))


def hold_listener(ipc_dir, name, ready):
    """Register a listener and sleep until killed."""
    lst = tiga_cffi.create_tiga_notification_listener(name, ipc_directory=ipc_dir)
    ready.set()
    time.sleep(3600)
    lst.close()


def hold_client(ipc_dir, channel, client_id, ready):
    c = tiga_cffi.Client(channel, ipc_directory=ipc_dir, client_id=client_id, timeout=10)
    c.invoke("echo", "hi")
    ready.set()
    time.sleep(3600)


def write_later(ipc_dir, name, delay):
    time.sleep(delay)
    tiga_cffi.tiga_write(name, b"ping", ipc_directory=ipc_dir)


def soak_writer(ipc_dir, name, wid, log_path):
    """Write `wid:n` messages forever; log each one before the write (attempted) and
    after it returned (done, with its id). Killed at any moment by the soak test."""
    with open(log_path, "a", buffering=1) as log, \
            tiga_cffi.Channel(name, ipc_directory=ipc_dir, min_age=600, reader_grace=0.05,
                              lock_timeout=30) as ch:
        n = 0
        while True:
            msg = f"{wid}:{os.getpid()}:{n}"
            log.write(f"try {msg}\n")
            eid = ch.write(msg.encode()).id
            log.write(f"done {eid} {msg}\n")
            n += 1
            time.sleep(0.0005)


def soak_reader(ipc_dir, name, log_path):
    """Follow the channel and log every (id, message) it returns."""
    with open(log_path, "a", buffering=1) as log, \
            tiga_cffi.Channel(name, ipc_directory=ipc_dir) as ch:
        last = 0
        while True:
            r = ch.read(last)
            for e in r.entries:
                log.write(f"read {e.id} {e.message.decode()}\n")
            last = r.last_id
            time.sleep(0.001)


def soak_lock_holder(ipc_dir, name, ready):
    """Take the append lock (the lock every append takes) and hold it until killed."""
    from tiga_cffi.channel import state_lock

    with state_lock(ipc_dir, name) as held:
        assert held
        ready.set()
        time.sleep(3600)
