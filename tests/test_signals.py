"""Blocking waits let Python's signal handlers run (PEP 475 style)."""

import signal
import threading
import time

import pytest
from platforms import posix_only

import tiga_cffi

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread")


pytestmark = posix_only("setitimer and signal handlers interrupting a wait")


def test_benign_handler_keeps_the_deadline(ipc_dir):
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        with tiga_cffi.create_tiga_notification_listener("sig", ipc_directory=ipc_dir) as lst:
            signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
            t0 = time.monotonic()
            assert lst.wait(0.5) is False
            elapsed = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits, "the handler never ran during the wait"
    assert 0.45 <= elapsed < 3


class Boom(Exception):
    pass


def test_raising_handler_interrupts_at_once(ipc_dir):
    def handler(*a):
        raise Boom()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        with tiga_cffi.create_tiga_notification_listener("sig2", ipc_directory=ipc_dir) as lst:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            t0 = time.monotonic()
            with pytest.raises(Boom):
                lst.wait(30)
            assert time.monotonic() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_invoke_waits_through_signals_and_stops_for_a_raising_one(ipc_dir):
    def slow(method, data, ctx):
        time.sleep(0.4)
        return f"{method}:{data}"

    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        with tiga_cffi.start_tiga_server("sigsrv", ipc_dir, slow, discovery_interval=0.1), \
                tiga_cffi.Client("sigsrv", ipc_directory=ipc_dir, timeout=10) as c:
            assert c.invoke("warm", "up") == "warm:up"
            signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
            assert c.invoke("slow", "call") == "slow:call"  # interrupted, waited on
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert hits, "the handler never ran during the invoke"

            def handler(*a):
                raise Boom()

            signal.signal(signal.SIGALRM, handler)
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            t0 = time.monotonic()
            with pytest.raises(Boom):
                c.invoke("slow", "again")
            assert time.monotonic() - t0 < 0.39  # before the answer came
            signal.setitimer(signal.ITIMER_REAL, 0)
            time.sleep(0.5)
            assert c.invoke("after", "boom") == "after:boom"  # the client still works
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
