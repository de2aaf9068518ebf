"""A server that keeps serving (issue 14, items 8 and 9): a client whose worker failed
to attach is tried again, every failure reaches on_error, no worker dies silently, and
the scavenger cannot delete the files of a client that is opening them again."""

import threading
import time

import pytest
from platforms import not_under_wine

import tiga_cffi
from tiga_cffi import NoListenerSlot
from tiga_cffi.server import TigaServer


def errors_into(bucket):
    lock = threading.Lock()

    def on_error(exc, ctx):
        with lock:
            bucket.append((ctx.stage, ctx.client_id, exc))
    return on_error


def test_a_worker_that_could_not_attach_is_tried_again(ipc_dir):
    seen = []
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="k", timeout=10) as c:
        # every listener slot of the client's request channel is taken: the
        # server's worker cannot register (NoListenerSlot) when it attaches
        squatters = [tiga_cffi.create_tiga_notification_listener("svc.req.k",
                                                                 ipc_directory=ipc_dir)
                     for _ in range(128)]
        try:
            srv = tiga_cffi.start_tiga_server("svc", ipc_dir, lambda m, d, ctx: f"ok {d}",
                                              errors_into(seen), discovery_interval=0.1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not seen:
                time.sleep(0.01)
            assert seen and seen[0][0] == "listener" and isinstance(seen[0][2], NoListenerSlot)
        finally:
            for s in squatters:
                s.close()
        try:
            assert c.invoke("echo", "after", timeout=10) == "ok after"
            assert "k" in srv.clients
        finally:
            srv.close()


def test_memory_error_in_attach_reaches_on_error_and_serving_goes_on(ipc_dir, monkeypatch):
    from tiga_cffi import server as server_mod

    calls = []
    original = server_mod._Worker._attach

    def failing_attach(self):
        if not calls:
            calls.append(1)
            raise MemoryError("no memory for the attach")
        return original(self)

    monkeypatch.setattr(server_mod._Worker, "_attach", failing_attach)
    seen = []
    with tiga_cffi.start_tiga_server("mem", ipc_dir, lambda m, d, ctx: d, errors_into(seen),
                                     discovery_interval=0.1), \
            tiga_cffi.Client("mem", ipc_directory=ipc_dir, client_id="m", timeout=10) as c:
        assert c.invoke("echo", "x") == "x"
    assert any(isinstance(e, MemoryError) for _, _, e in seen), seen


def test_an_error_inside_the_serving_loop_is_reported_and_the_worker_lives(ipc_dir,
                                                                           monkeypatch):
    from tiga_cffi import server as server_mod

    blew = []
    original = server_mod._Worker._serve_decoded

    def once(self, rq):
        if not blew:
            blew.append(1)
            raise MemoryError("in the loop")
        return original(self, rq)

    monkeypatch.setattr(server_mod._Worker, "_serve_decoded", once)
    seen = []
    with tiga_cffi.start_tiga_server("loop", ipc_dir, lambda m, d, ctx: d, errors_into(seen),
                                     discovery_interval=0.1) as srv, \
            tiga_cffi.Client("loop", ipc_directory=ipc_dir, client_id="l", timeout=2) as c:
        try:
            c.invoke("echo", "lost")  # this one's turn blew up in the server
        except tiga_cffi.Timeout:
            pass
        assert c.invoke("echo", "next", timeout=10) == "next"
        assert srv.clients == ["l"]
    assert [s for s, _, e in seen if isinstance(e, MemoryError)] == ["read"]


@not_under_wine("wine reports no pending deletion: a client can reopen a scavenged file "
                "before it goes, and mix it with new ones (2 runs in 3 failed so, before and "
                "after issue 15)")
def test_the_scavenger_never_strands_a_client_reopening_its_id(ipc_dir, monkeypatch):
    """A client that closes and reopens the same explicit id while the scavenger
    deletes idle clients is either seen alive or finds its files gone and opens new
    ones: it is always answered. The scavenger's window is widened on purpose."""
    original = TigaServer._stop_worker

    def slow_stop(self, cid):
        w = original(self, cid)
        time.sleep(0.02)  # joining the worker thread used to widen the window like this
        return w

    monkeypatch.setattr(TigaServer, "_stop_worker", slow_stop)
    srv = tiga_cffi.start_tiga_server("sc", ipc_dir, lambda m, d, ctx: d, stale_after=0.01,
                                      scavenge_interval=0.05, discovery_interval=0.1)
    try:
        scavenged = 0
        for i in range(40):
            with tiga_cffi.Client("sc", ipc_directory=ipc_dir, client_id="same",
                                  timeout=15) as c:
                assert c.invoke("echo", f"r{i}") == f"r{i}", i
            time.sleep(0.06 * (i % 5))  # idle for a while: stale, no listener
            if not list(ipc_dir.glob("tiga_sc.req.same_state")):
                scavenged += 1
        assert scavenged > 0  # the scavenger did run between the rounds
    finally:
        srv.close()


def test_a_response_too_big_to_write_is_an_error_response_at_once(ipc_dir):
    """The client learns why at once, instead of waiting out its timeout."""
    seen = []
    with tiga_cffi.Channel("big.resp.c", ipc_directory=ipc_dir, capacity=65536):
        pass  # the response channel exists with a small capacity
    with tiga_cffi.start_tiga_server("big", ipc_dir, lambda m, d, ctx: "x" * 200_000,
                                     errors_into(seen), discovery_interval=0.1), \
            tiga_cffi.Client("big", ipc_directory=ipc_dir, client_id="c", timeout=30) as c:
        for _ in range(2):  # and again: the server goes on
            t0 = time.monotonic()
            with pytest.raises(tiga_cffi.RemoteError) as ei:
                c.invoke("huge")
            assert "could not write its response" in str(ei.value)
            assert "too large" in str(ei.value)
            assert time.monotonic() - t0 < 10  # not the 30 s timeout
    assert [stage for stage, _, _ in seen] == ["write", "write"]


def test_server_not_ready_is_a_timeout_error():
    assert issubclass(tiga_cffi.ServerNotReady, TimeoutError)
