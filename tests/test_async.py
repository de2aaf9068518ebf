"""asyncio without a thread per call: the process's waiter, cancellation, exit,
and a client that learns when its server went away."""

import asyncio
import concurrent.futures
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from peers import CTX, hold_listener, start_server

import tiga_cffi
from tiga_cffi import _waiter


class NoThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that fails the test if anything hands it a call."""

    def submit(self, fn, *args, **kwargs):
        raise AssertionError(f"{fn!r} was run in the loop's executor")


def run(coro_fn, timeout=60):
    async def main():
        asyncio.get_running_loop().set_default_executor(NoThreads())
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(main())


@pytest.fixture
def gate_server(ipc_dir):
    """An in-process server whose "hold" handler waits until the test opens the gate."""
    gate = threading.Event()
    calls = []

    def handler(method, data, ctx):
        calls.append((method, data))
        if method == "hold":
            assert gate.wait(30)
            return f"held {data}"
        return data

    srv = tiga_cffi.start_tiga_server("svc", ipc_dir, handler, discovery_interval=0.1)
    try:
        yield srv, gate, calls
    finally:
        gate.set()
        srv.close()


def test_async_invokes_and_waits_use_no_executor_thread(ipc_dir, gate_server):
    async def main():
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            assert await c.invoke_async("echo", "one") == "one"  # alone: written and spun
            got = await asyncio.gather(*[c.invoke_async("echo", i) for i in range(200)])
            assert got == [str(i) for i in range(200)]
            before = threading.active_count()  # the waiter thread among them
            with tiga_cffi.NotificationListener("news", ipc_directory=ipc_dir) as lst:
                waits = [asyncio.ensure_future(lst.wait_async(10)) for _ in range(1)]
                idle = [tiga_cffi.NotificationListener(f"idle{i}", ipc_directory=ipc_dir)
                        for i in range(50)]
                idle_waits = [asyncio.ensure_future(x.wait_async()) for x in idle]
                await asyncio.sleep(0.05)
                # 51 waits in flight, and not one thread more
                assert threading.active_count() == before
                tiga_cffi.tiga_write("news", b"x", ipc_directory=ipc_dir)
                assert await asyncio.gather(*waits) == [True]
                assert await c.invoke_async("echo", "still") == "still"
                for t in idle_waits:
                    t.cancel()
                for x in idle:
                    x.close()
            return True

    assert run(main)


def test_cancelled_invoke_leaves_the_client_usable_and_its_late_answer_is_dropped(
        ipc_dir, gate_server):
    srv, gate, calls = gate_server

    async def main():
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            assert await c.invoke_async("echo", "warm") == "warm"
            t0 = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.invoke_async("hold", "late"), 0.1)
            assert time.monotonic() - t0 < 1.0
            ep = c._ep
            assert not ep._futures and not ep._waiting  # forgotten at once
            gate.set()  # the server now answers the cancelled invoke
            deadline = time.monotonic() + 10
            answers = []
            while "held late" not in answers and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                answers = [e.envelope().data for e in
                           tiga_cffi.tiga_read(c.response_name, ipc_directory=ipc_dir).entries]
            assert "held late" in answers  # the late answer is there...
            t0 = time.monotonic()
            assert await c.invoke_async("echo", "next") == "next"  # ...and passed over
            assert time.monotonic() - t0 < 2.0
            assert await c.invoke_async("echo", "after") == "after"
            assert not ep._futures and not ep._waiting and not ep._outbox
            return True

    assert run(main)
    assert ("hold", "late") in calls


def test_invoke_async_is_a_future_and_a_coroutine(ipc_dir, gate_server):
    """On a running loop invoke_async queues the request and returns a Future
    (gathered, it makes no Task: Python 3.10+ gathers a Future as it is), which is
    also a coroutine: create_task and TaskGroup take it, cancelling it forgets it,
    and outside a loop it is a plain coroutine for asyncio.run."""
    srv, gate, calls = gate_server

    async def main():
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            ep = c._ep
            assert await c.invoke_async("echo", "warm") == "warm"
            before = len(asyncio.all_tasks())
            futs = [c.invoke_async("echo", i) for i in range(100)]
            assert all(isinstance(f, asyncio.Future) for f in futs)
            g = asyncio.gather(*futs)
            if sys.version_info >= (3, 10):
                assert len(asyncio.all_tasks()) == before
            assert await g == [str(i) for i in range(100)]
            assert await asyncio.create_task(c.invoke_async("echo", "task")) == "task"
            if sys.version_info >= (3, 11):
                async with asyncio.TaskGroup() as tg:
                    ts = [tg.create_task(c.invoke_async("echo", i)) for i in range(5)]
                assert [t.result() for t in ts] == [str(i) for i in range(5)]
            # cancelled before it was written: never written
            f = c.invoke_async("hold", "never")
            assert f.cancel()
            # cancelled while a Task waits for it
            t = asyncio.create_task(c.invoke_async("hold", "given up"))
            await asyncio.sleep(0.05)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            await asyncio.sleep(0)
            assert not ep._futures and not ep._waiting and not ep._outbox
            gate.set()
            assert await c.invoke_async("echo", "after") == "after"
            return True

    assert run(main)
    assert ("hold", "never") not in calls
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
        assert asyncio.run(c.invoke_async("echo", "outside")) == "outside"


def test_async_invokes_time_out_each_by_its_own_timeout(ipc_dir, gate_server):
    """Invokes written together with two timeouts (one timer for each): each fails
    with Timeout at its own, none earlier, and the client forgets them."""
    srv, gate, calls = gate_server

    async def main():
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            ep = c._ep
            assert await c.invoke_async("echo", "warm") == "warm"
            t0 = time.monotonic()
            short = [c.invoke_async("hold", i, timeout=0.3) for i in range(3)]
            long = [c.invoke_async("hold", i, timeout=1.0) for i in range(3)]
            got = await asyncio.gather(*short, return_exceptions=True)
            t_short = time.monotonic() - t0
            assert all(isinstance(x, tiga_cffi.Timeout) for x in got), got
            assert not any(f.done() for f in long)
            got = await asyncio.gather(*long, return_exceptions=True)
            t_long = time.monotonic() - t0
            assert all(isinstance(x, tiga_cffi.Timeout) for x in got), got
            assert 0.29 <= t_short < 0.95 <= t_long < 5.0
            assert not ep._futures and not ep._waiting and not ep._outbox
            gate.set()
            assert await c.invoke_async("echo", "after") == "after"
            return True

    assert run(main)


def test_cancelling_one_of_many_keeps_the_others(ipc_dir, gate_server):
    async def main():
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            tasks = [asyncio.ensure_future(c.invoke_async("echo", i)) for i in range(20)]
            tasks[7].cancel()
            got = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(got[7], asyncio.CancelledError)
            assert [g for i, g in enumerate(got) if i != 7] == [
                str(i) for i in range(20) if i != 7]
            return True

    assert run(main)


def test_a_cancelled_wait_keeps_its_news_for_the_next(ipc_dir):
    async def main():
        with tiga_cffi.NotificationListener("n", ipc_directory=ipc_dir) as lst, \
                tiga_cffi.Channel("n", ipc_directory=ipc_dir) as ch:
            assert await lst.wait_async(0.05) is False
            for _ in range(20):
                t = asyncio.ensure_future(lst.wait_async())
                await asyncio.sleep(0)
                ch.write(b"x")  # news, maybe taken by the watch just before the cancel
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
                assert await lst.wait_async(5) is True  # never lost
                # (a write publishes its version, then signals: a wait that came in
                # between may see a second hint; take it)
                await lst.wait_async(0.01)
            assert await lst.wait_async(0.05) is False  # nothing else came
            return True

    assert run(main)


def test_a_wait_whose_news_came_before_it_completes_at_once(ipc_dir):
    """The watch finds news as it is added; nothing else wakes the waiter after
    that, so the completion must go out before the waiter sleeps again."""
    async def main():
        with tiga_cffi.NotificationListener("n", ipc_directory=ipc_dir) as lst, \
                tiga_cffi.Channel("n", ipc_directory=ipc_dir) as ch:
            for _ in range(5):
                ch.write(b"x")
                t0 = time.monotonic()
                assert await asyncio.wait_for(lst.wait_async(), 5) is True
                assert time.monotonic() - t0 < 1.0
            return True

    assert run(main)


EXIT_SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    import tiga_cffi

    async def main(d):
        with tiga_cffi.Client("mute", ipc_directory=d, client_id="k", timeout=60) as c:
            try:
                await asyncio.wait_for(c.invoke_async("m", "x"), 0.2)
            except asyncio.TimeoutError:
                pass
            lst = tiga_cffi.NotificationListener("quiet", ipc_directory=d)
            pending = asyncio.ensure_future(lst.wait_async())
            await asyncio.sleep(0.05)
            pending.cancel()
        print(time.time(), flush=True)

    asyncio.run(main(sys.argv[1]))
""")


def test_nothing_waits_at_interpreter_exit(ipc_dir):
    """A listener holds the request channel (a server that never answers), the
    invoke is given up after 0.2 s: the process ends at once all the same."""
    ready = CTX.Event()
    mute = CTX.Process(target=hold_listener, args=(str(ipc_dir), "mute.req.k", ready),
                       daemon=True)
    mute.start()
    try:
        assert ready.wait(30)
        p = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT, str(ipc_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(ipc_dir))  # (not a source tree that shadows the install)
        try:
            out, err = p.communicate(timeout=60)
            ended = time.time()
        finally:
            p.kill()
        assert p.returncode == 0, err
        assert ended - float(out.strip()) < 0.5, "the interpreter waited at exit"
    finally:
        mute.kill()
        mute.join(10)


def _invoke_while_killed(ipc_dir, use_async):
    p = start_server(ipc_dir)
    try:
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=30) as c:
            assert c.invoke("echo", "up") == "up"
            killed = []

            def kill_soon():
                time.sleep(0.3)
                p.kill()
                killed.append(time.monotonic())

            t = threading.Thread(target=kill_soon)
            t.start()
            try:
                with pytest.raises(tiga_cffi.ServerGone) as ei:
                    if use_async:
                        run(lambda: c.invoke_async("sleep", "20"))
                    else:
                        c.invoke("sleep", "20")
                noticed = time.monotonic()
            finally:
                t.join()
            return ei.value, noticed - killed[0]
    finally:
        p.kill()
        p.join(10)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_server_gone_is_raised_soon_after_the_server_dies(ipc_dir, use_async):
    err, after = _invoke_while_killed(ipc_dir, use_async)
    assert isinstance(err, tiga_cffi.TigaError) and not isinstance(err, TimeoutError)
    assert "went away" in str(err)
    assert after < 1.0, f"ServerGone {after:.2f} s after the kill (timeout 30 s)"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_listener_slot_that_goes_away_is_server_gone(ipc_dir, use_async):
    """A "server" that only holds a listener on the request channel gives it back
    while an invoke waits: ServerGone, not the 30 s timeout."""
    fake = tiga_cffi.NotificationListener("svc.req.k", ipc_directory=ipc_dir)
    closed = []

    def close_soon():
        time.sleep(0.3)
        fake.close()
        closed.append(time.monotonic())

    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="k", timeout=30) as c:
        t = threading.Thread(target=close_soon)
        t.start()
        try:
            with pytest.raises(tiga_cffi.ServerGone):
                if use_async:
                    run(lambda: c.invoke_async("m", "x"))
                else:
                    c.invoke("m", "x")
            after = time.monotonic() - closed[0]
        finally:
            t.join()
    assert after < 1.0


def test_server_not_ready_is_a_timeout_error():
    assert issubclass(tiga_cffi.ServerNotReady, TimeoutError)
    assert issubclass(tiga_cffi.ServerGone, tiga_cffi.TigaError)


def test_waiter_is_one_thread_for_the_process():
    assert _waiter.get() is _waiter.get()
    names = [t.name for t in threading.enumerate() if t.name == "tiga-waiter"]
    assert names == ["tiga-waiter"]
