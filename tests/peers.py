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
