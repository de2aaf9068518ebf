"""tiga_invoke and the server across processes."""

import asyncio
import gzip
import threading
import time

import msgpack
import pytest
from peers import CTX, hold_client, run_client, start_server
from platforms import needs_fork

import tiga_cffi
from tiga_cffi import protocol


@needs_fork()
def test_request_ids_differ_in_a_forked_child():
    """Ids come from a generator seeded from the OS, seeded again in a child: a child
    must not repeat its parent's ids."""
    import os

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, protocol.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 36).decode()
    os.close(r)
    os.close(w)
    assert child != protocol.new_id()
    import uuid

    assert uuid.UUID(child).version == 4 and len(child) == 36


def test_echo_across_two_processes(ipc_dir):
    p = start_server(ipc_dir)
    try:
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            assert c.invoke("echo", "hello") == "hello"
            assert c.invoke("pid") == str(p.pid)
            assert c.invoke("echo", {"k": [1, 2]}) == '{"k": [1, 2]}'  # JSON of non-str
        r = tiga_cffi.tiga_invoke("svc.req.fn", "svc.resp.fn", "echo", "via function",
                                  ipc_directory=ipc_dir, timeout=20)
        assert r == "via function"
    finally:
        p.kill()
        p.join(10)


def test_sixteen_client_processes(ipc_dir):
    p = start_server(ipc_dir)
    results = CTX.Queue()
    clients = [CTX.Process(target=run_client, args=(str(ipc_dir), "svc", f"c{i}", 300, results))
               for i in range(16)]
    try:
        for c in clients:
            c.start()
        got = [results.get(timeout=240) for _ in clients]
        for c in clients:
            c.join(60)
    finally:
        p.kill()
        p.join(10)
    assert sorted(g[0] for g in got) == sorted(f"c{i}" for i in range(16))
    assert [g for g in got if g[1] or g[2]] == []


def test_handler_error_is_a_remote_error_and_the_server_stays_up(ipc_dir):
    errors = []

    def handler(method, data, ctx):
        if method == "fail":
            raise RuntimeError(f"no good: {data}")
        return data

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler,
                                     on_error=lambda e, ctx: errors.append((e, ctx))):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=10) as c:
            with pytest.raises(tiga_cffi.RemoteError) as ei:
                c.invoke("fail", "x")
            assert str(ei.value) == "no good: x"
            assert c.invoke("echo", "next") == "next"
    (err, ctx), = errors
    assert isinstance(err, RuntimeError) and ctx.stage == "invoke" and ctx.method == "fail"
    assert ctx.client_id == c.client_id and ctx.request_name == c.request_name


def test_async_handler_and_async_invoke(ipc_dir):
    seen = []

    async def handler(method, data, ctx):
        await asyncio.sleep(0.01)
        seen.append(ctx)
        return f"async {data}"

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler):
        async def main():
            with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=10) as c:
                a, b = await asyncio.gather(c.invoke_async("m", "1"), c.invoke_async("m", "2"))
                fn = await tiga_cffi.tiga_invoke_async("svc.req.z", "svc.resp.z", "m", "3",
                                                       ipc_directory=ipc_dir, timeout=10)
                return a, b, fn

        assert asyncio.run(main()) == ("async 1", "async 2", "async 3")
    ctx = seen[0]
    assert ctx.channel_name == "svc" and ctx.ipc_directory == str(ipc_dir)
    assert ctx.media_type == protocol.MEDIA_MSGPACK and ctx.entry_id >= 1
    assert len(ctx.request_id) == 36


def test_no_server_is_not_ready_within_the_timeout(ipc_dir):
    t0 = time.monotonic()
    with pytest.raises(tiga_cffi.ServerNotReady) as ei:
        tiga_cffi.tiga_invoke("none.req.a", "none.resp.a", "echo", "x",
                              ipc_directory=ipc_dir, timeout=0.5)
    assert 0.4 < time.monotonic() - t0 < 3
    assert "server not ready" in str(ei.value) and "no live listener" in str(ei.value)
    assert "nothing answered" in str(ei.value)
    # the invoke was written after the listener grace (a server that polls without a
    # listener slot would have answered it)
    assert tiga_cffi.tiga_read("none.req.a", ipc_directory=ipc_dir).last_id == 1


def test_server_killed_then_restarted(ipc_dir):
    p = start_server(ipc_dir)
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="survivor", timeout=20) as c:
        assert c.invoke("echo", "before") == "before"
        done = threading.Event()
        outcome = []

        def slow_call():
            try:
                outcome.append(c.invoke("sleep", "3", timeout=1.5))
            except Exception as e:
                outcome.append(e)
            done.set()

        t = threading.Thread(target=slow_call)
        t.start()
        time.sleep(0.5)
        p.kill()  # SIGKILL; TerminateProcess on Windows
        p.join(10)
        assert done.wait(10), "the waiting client hung"
        t.join()
        # the server's listener went with its process: ServerGone before the timeout
        assert isinstance(outcome[0], tiga_cffi.ServerGone)
        p2 = start_server(ipc_dir)
        try:
            assert c.invoke("echo", "after") == "after"
            assert c.invoke("pid") == str(p2.pid)
        finally:
            p2.kill()
            p2.join(10)


def test_restarted_server_never_runs_an_invoke_twice(ipc_dir):
    calls = []

    def handler(method, data, ctx):
        calls.append(data)
        return data

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="k", timeout=10) as c:
            assert c.invoke("echo", "a") == "a"
            assert c.invoke("echo", "b") == "b"
    # while no server runs, an invoke lands in the request log
    pending_id = protocol.new_id()
    tiga_cffi.tiga_write("svc.req.k", protocol.encode_invoke("echo", "c", pending_id),
                         ipc_directory=ipc_dir, media_type=protocol.MEDIA_MSGPACK)
    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler):
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    assert calls == ["a", "b", "c"]
    resp = [e.envelope() for e in tiga_cffi.tiga_read("svc.resp.k", ipc_directory=ipc_dir).entries]
    # answered responses the client consumed may be trimmed (ack-trim); c is there
    assert [r.data for r in resp][-1] == "c" and resp[-1].id == pending_id


def test_close_answers_requests_already_read(ipc_dir):
    started = threading.Event()

    def handler(method, data, ctx):
        started.set()
        time.sleep(0.5)
        return "finished"

    srv = tiga_cffi.start_tiga_server("svc", ipc_dir, handler)
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=10) as c:
        out = []
        t = threading.Thread(target=lambda: out.append(c.invoke("slow")))
        t.start()
        assert started.wait(10)
        srv.close()
        srv.close()  # idempotent
        t.join(10)
        assert out == ["finished"]


def test_slow_client_does_not_block_others(ipc_dir):
    def handler(method, data, ctx):
        if method == "sleep":
            time.sleep(float(data))
        return data

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler):
        slow = tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="slow", timeout=10)
        fast = tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="fast", timeout=10)
        t = threading.Thread(target=slow.invoke, args=("sleep", "2"))
        t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        assert fast.invoke("echo", "quick") == "quick"
        assert time.monotonic() - t0 < 1.5
        t.join()
        slow.close()
        fast.close()


def test_single_channel_and_compressed_invoke(ipc_dir):
    with tiga_cffi.start_tiga_server("one", ipc_dir, lambda m, d, ctx: f"{m}:{d}:{ctx.client_id}",
                                     discovery_interval=0.1):
        tiga_cffi.Channel("one", ipc_directory=ipc_dir).close()  # tiga_one_state now exists
        assert tiga_cffi.tiga_invoke("one", "one", "m", "d", ipc_directory=ipc_dir,
                                     timeout=10) == "m:d:None"
        # a C#-style compressed invoke on a per-client channel
        with tiga_cffi.Client("one", ipc_directory=ipc_dir, client_id="gz", timeout=10) as c:
            c.invoke("warm", "up")
            rid = protocol.new_id()
            body = gzip.compress(protocol.encode_invoke("zip", "ped", rid))
            tiga_cffi.tiga_write(c.request_name, body, ipc_directory=ipc_dir,
                                 media_type=protocol.MEDIA_MSGPACK_GZIP)
            deadline = time.monotonic() + 10
            found = None
            while found is None and time.monotonic() < deadline:
                for e in tiga_cffi.tiga_read(c.response_name, ipc_directory=ipc_dir).entries:
                    env = e.envelope()
                    if env.id == rid:
                        found = (env, e.media_type)
                time.sleep(0.02)
            assert found is not None
            assert found[0].data == "zip:ped:gz" and found[1] == protocol.MEDIA_MSGPACK


def test_client_killed_is_scavenged(ipc_dir):
    with tiga_cffi.start_tiga_server("svc", ipc_dir, lambda m, d, c: d, stale_after=0.5,
                                     scavenge_interval=0.2, discovery_interval=0.1) as srv:
        ready = CTX.Event()
        p = CTX.Process(target=hold_client, args=(str(ipc_dir), "svc", "doomed", ready))
        p.start()
        assert ready.wait(30)
        assert "doomed" in srv.clients
        assert tiga_cffi.has_live_listener("svc.resp.doomed", ipc_directory=ipc_dir)
        # that call keeps a handle in this process's channel cache; on Windows a file
        # goes only when its last handle closes, so let go of it
        tiga_cffi.clear_cache()
        p.kill()  # SIGKILL; TerminateProcess on Windows
        p.join(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
                "doomed" in srv.clients or list(ipc_dir.glob("tiga_svc.*.doomed_*"))):
            time.sleep(0.1)
        assert "doomed" not in srv.clients
        assert list(ipc_dir.glob("tiga_svc.*.doomed_*")) == []
        # a live client is left alone
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="alive", timeout=10) as c:
            c.invoke("echo", "x")
            time.sleep(1.2)
            assert "alive" in srv.clients and c.invoke("echo", "still") == "still"


def test_invoke_argument_errors(ipc_dir):
    with pytest.raises(tiga_cffi.InvalidName):
        tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="bad/id")
    with pytest.raises(tiga_cffi.InvalidName):
        tiga_cffi.tiga_invoke("../x", "y", "m", "d", ipc_directory=ipc_dir, timeout=1)
    with tiga_cffi.start_tiga_server("svc", ipc_dir, lambda m, d, c: d):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=10) as c:
            with pytest.raises(tiga_cffi.InvalidType):
                c.invoke(42, "x")
            with pytest.raises(tiga_cffi.InvalidType):
                c.invoke("m", object())
            with pytest.raises(tiga_cffi.InvalidArgument):
                c.invoke("m", "x", timeout=-1)


def test_many_threads_share_one_client(ipc_dir):
    def handler(method, data, ctx):
        time.sleep(0.001 * (hash(data) % 3))  # answers of different speeds
        return f"re:{data}"

    errors = []
    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=30) as c:
            def work(k):
                try:
                    for i in range(50):
                        data = f"{k}-{i}"
                        got = c.invoke("m", data)
                        if got != f"re:{data}":
                            errors.append((data, got))
                except Exception as e:
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
    assert errors == []


def test_server_skips_reports_and_answers_what_a_peer_wrote(ipc_dir):
    """Whatever lands in a request log: raw messages are skipped, garbage is reported
    (stage "read") and skipped, an invoke with an extra element is answered, and
    the server keeps serving."""
    errors = []
    seen = threading.Event()

    def on_error(err, ctx):
        errors.append((ctx.stage, type(err).__name__))
        seen.set()

    with tiga_cffi.start_tiga_server("mixed", ipc_dir, lambda m, d, ctx: f"{m}={d}",
                                     on_error=on_error, discovery_interval=0.1), \
            tiga_cffi.Client("mixed", ipc_directory=ipc_dir, client_id="k", timeout=10) as c:
        assert c.invoke("first", 1) == "first=1"
        req = tiga_cffi.Channel(c.request_name, ipc_directory=ipc_dir)
        extra = protocol.new_id()
        req.write(b"raw bytes, no envelope")
        req.write(b"\xc1\xc1", media_type=protocol.MEDIA_MSGPACK)  # garbage
        trailing = protocol.encode_invoke("m", "d", protocol.new_id()) + b"\xc1"
        req.write(trailing, media_type=protocol.MEDIA_MSGPACK)  # bytes after the envelope
        req.write(msgpack.packb([extra, 1, "five", "x", "more"]),
                  media_type=protocol.MEDIA_MSGPACK)
        assert c.invoke("after", "all") == "after=all"
        found = None
        deadline = time.monotonic() + 10
        while found is None and time.monotonic() < deadline:
            for e in tiga_cffi.tiga_read(c.response_name, ipc_directory=ipc_dir).entries:
                env = e.envelope()
                if env.id == extra:
                    found = env.data
            time.sleep(0.01)
        assert found == "five=x"
        assert seen.wait(10)
        req.close()
    assert errors == [("read", "ProtocolError"), ("read", "ProtocolError")]


def _forked_invokes(client, k, q):
    try:
        answers = [client.invoke("child", f"{k}-{i}") for i in range(20)]
        q.put((client.client_id, answers))  # the id after the first use in this process
    except Exception as e:  # reported to the parent
        q.put((None, repr(e)))


@needs_fork("a Client inherited by forked children")
def test_a_client_used_in_forked_children(ipc_dir):
    """A Client with a generated id, inherited by forked children that invoke while
    the parent does: each child takes an id of its own and every call is answered.
    (Sharing one id would share one response log between readers.) An explicit id
    cannot follow the fork."""
    import multiprocessing
    import warnings

    fork = multiprocessing.get_context("fork")
    with tiga_cffi.start_tiga_server("forked", ipc_dir, lambda m, d, ctx: f"{m}:{d}",
                                     discovery_interval=0.05), \
            tiga_cffi.Client("forked", ipc_directory=ipc_dir, timeout=10) as c, \
            tiga_cffi.Client("forked", ipc_directory=ipc_dir, client_id="mine", timeout=10) as mine:
        assert c.invoke("parent", 0) == "parent:0"
        assert mine.invoke("mine", 0) == "mine:0"
        q = fork.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            kids = [fork.Process(target=_forked_invokes, args=(c, k, q)) for k in range(3)]
            kids.append(fork.Process(target=_forked_invokes, args=(mine, 9, q)))
            for p in kids:
                p.start()
        parent = [c.invoke("parent", i) for i in range(20)]
        results = [q.get(timeout=60) for _ in kids]
        for p in kids:
            p.join(30)
        assert parent == [f"parent:{i}" for i in range(20)]
        ids = set()
        for cid, answers in results:
            if cid is None:
                assert "InvalidArgument" in answers and "mine" in answers
                continue
            assert cid != c.client_id
            ids.add(cid)
            k = answers[0].split(":")[1].split("-")[0]
            assert answers == [f"child:{k}-{i}" for i in range(20)]
        assert len(ids) == 3
        assert sum(cid is None for cid, _ in results) == 1
        assert c.invoke("parent", "after") == "parent:after"  # the parent's slot is intact


def test_every_kind_of_handler_result_becomes_response_text(ipc_dir):
    class Text(str):
        pass

    results = {
        "str": "plain", "sub": Text("subclass"), "bytes": "é".encode(), "none": None,
        "dict": {"a": [1, 2]}, "int": 7, "surrogate": "\udc80",
    }
    with tiga_cffi.start_tiga_server("svc", ipc_dir, lambda m, d, c: results[m]):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=10) as c:
            got = {m: c.invoke(m) for m in results}
            # int and float timeouts, and a timeout of the wrong type
            assert c.invoke("str", timeout=5) == "plain"
            with pytest.raises(tiga_cffi.InvalidType):
                c.invoke("str", timeout="5")
            with pytest.raises(tiga_cffi.InvalidArgument):
                c.invoke("str", timeout=0.0)
    assert got["str"] == "plain" and got["sub"] == "subclass" and got["bytes"] == "é"
    assert got["none"] == "" and got["dict"] == '{"a": [1, 2]}' and got["int"] == "7"
    assert got["surrogate"] == "\ufffd" * 3  # written as surrogatepass bytes, read as U+FFFD
