"""A server that handles several invokes of one client at once (max_concurrency),
in threads and on the caller's event loop (serve())."""

import asyncio
import threading
import time

import pytest
from peers import CTX
from test_async import run

import tiga_cffi


def sync_sleeper(method, data, ctx):
    time.sleep(float(data))
    return f"slept {data}"


async def async_sleeper(method, data, ctx):
    await asyncio.sleep(float(data))
    return f"slept {data}"


def four_from_threads(c, seconds):
    out = []
    threads = [threading.Thread(target=lambda: out.append(c.invoke("sleep", seconds)))
               for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return time.monotonic() - t0, out


@pytest.mark.parametrize("handler", [sync_sleeper, async_sleeper], ids=["sync", "async"])
def test_four_invokes_of_one_client_run_at_once(ipc_dir, handler):
    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler, discovery_interval=0.1):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            c.invoke("sleep", "0")
            took, out = four_from_threads(c, "0.5")
            assert out == ["slept 0.5"] * 4
            assert took <= 0.7, f"4 x 0.5 s took {took:.2f} s"

            async def gathered():
                t0 = time.monotonic()
                got = await asyncio.gather(*[c.invoke_async("sleep", "0.5") for _ in range(4)])
                return time.monotonic() - t0, got

            took, got = run(gathered)
            assert got == ["slept 0.5"] * 4
            assert took <= 0.7, f"4 x 0.5 s (async) took {took:.2f} s"


def test_max_concurrency_bounds_a_client(ipc_dir):
    running, peak = [0], [0]
    lock = threading.Lock()

    def handler(method, data, ctx):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return data

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler, max_concurrency=2):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            c.invoke("x", "warm")
            took, out = four_from_threads(c, "v")
    assert out == ["v"] * 4 and peak[0] == 2
    assert took >= 0.38  # two waves of two


def test_max_concurrency_one_answers_in_order(ipc_dir):
    order = []

    def handler(method, data, ctx):
        order.append(data)
        time.sleep(0.05 if data == "0" else 0)
        return data

    with tiga_cffi.start_tiga_server("svc", ipc_dir, handler, max_concurrency=1):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            # (the first invokes of a client wait for the server's listener, each on
            # its own, and may go out in any order: not these, the server is known)
            assert c.invoke("m", "warm") == "warm"

            async def main():
                return await asyncio.gather(*[c.invoke_async("m", str(i)) for i in range(10)])

            assert run(main) == [str(i) for i in range(10)]
    assert order == ["warm"] + [str(i) for i in range(10)]
    with pytest.raises(tiga_cffi.InvalidArgument):
        tiga_cffi.create_tiga_server("svc", ipc_dir, handler, max_concurrency=0)
    with pytest.raises(tiga_cffi.InvalidType):
        tiga_cffi.create_tiga_server("svc", ipc_dir, handler, max_concurrency=2.5)


def test_answers_come_in_any_order_and_each_reaches_its_invoke(ipc_dir):
    with tiga_cffi.start_tiga_server("svc", ipc_dir, sync_sleeper):
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            async def main():
                slow = asyncio.ensure_future(c.invoke_async("sleep", "0.4"))
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                quick = await c.invoke_async("sleep", "0")
                quick_took = time.monotonic() - t0
                return quick, quick_took, await slow

            quick, quick_took, slow = run(main)
            assert (quick, slow) == ("slept 0", "slept 0.4")
            assert quick_took < 0.3  # not behind the slow one
            # in the response log, the second invoke's answer came first
            answers = [e.envelope().data for e in
                       tiga_cffi.tiga_read(c.response_name, ipc_directory=ipc_dir).entries]
            assert answers.index("slept 0") < answers.index("slept 0.4")


def test_close_waits_for_handlers_under_way(ipc_dir):
    srv = tiga_cffi.start_tiga_server("svc", ipc_dir, sync_sleeper)
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
        c.invoke("sleep", "0")
        out = []
        threads = [threading.Thread(target=lambda: out.append(c.invoke("sleep", "0.3")))
                   for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.15)
        srv.close()
        for t in threads:
            t.join(10)
    assert out == ["slept 0.3"] * 3


# ---------------------------------------------------------------- serve() on a loop

def test_serve_runs_async_handlers_on_the_callers_loop(ipc_dir):
    async def main():
        app_loop = asyncio.get_running_loop()
        seen = asyncio.Queue()  # an object of the application's loop

        async def handler(method, data, ctx):
            assert asyncio.get_running_loop() is app_loop
            await seen.put(data)
            if method == "sleep":
                await asyncio.sleep(float(data))
            return f"{method} {data}"

        threads_before = threading.active_count()
        srv = tiga_cffi.create_tiga_server("svc", ipc_dir, handler, discovery_interval=0.1)
        async with srv:
            with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
                assert await c.invoke_async("echo", "x") == "echo x"
                assert await seen.get() == "x"
                t0 = time.monotonic()
                got = await asyncio.gather(*[c.invoke_async("sleep", "0.5") for _ in range(4)])
                took = time.monotonic() - t0
                assert got == ["sleep 0.5"] * 4 and took <= 0.7, took
                # sync clients in threads, served by the same loop
                out = await app_loop.run_in_executor(None, c.invoke, "echo", "sync")
                assert out == "echo sync"
                # no thread per client: the discovery thread and the waiter
                assert threading.active_count() <= threads_before + 3
        assert srv.closed
        return True

    async def with_default_executor():
        return await main()

    assert asyncio.run(with_default_executor())


def test_serve_with_sync_handlers_in_a_pool_and_cancel_closes(ipc_dir):
    async def main():
        srv = tiga_cffi.create_tiga_server("svc", ipc_dir, sync_sleeper, discovery_interval=0.1)
        task = asyncio.ensure_future(srv.serve())
        await asyncio.sleep(0.05)
        with tiga_cffi.Client("svc", ipc_directory=ipc_dir, timeout=20) as c:
            t0 = time.monotonic()
            got = await asyncio.gather(*[c.invoke_async("sleep", "0.3") for _ in range(4)])
            assert got == ["slept 0.3"] * 4 and time.monotonic() - t0 < 0.6
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert srv.closed
            with pytest.raises(tiga_cffi.TigaError):
                await srv.serve()
        return True

    assert asyncio.run(main())


def test_serve_across_processes_and_close_from_another_thread(ipc_dir):
    from peers import run_client

    async def handler(method, data, ctx):
        return ctx.client_id if method == "whoami" else data

    async def main():
        srv = tiga_cffi.create_tiga_server("svc", ipc_dir, handler, discovery_interval=0.1)
        task = asyncio.ensure_future(srv.serve())
        results = CTX.Queue()
        procs = [CTX.Process(target=run_client,
                             args=(str(ipc_dir), "svc", f"c{i}", 100, results))
                 for i in range(3)]
        try:
            for p in procs:
                p.start()
            loop = asyncio.get_running_loop()
            got = [await loop.run_in_executor(None, results.get, True, 120) for _ in procs]
            await loop.run_in_executor(None, srv.close)  # from another thread
            await asyncio.wait_for(task, 10)
            return got
        finally:
            for p in procs:
                p.kill()
                p.join(10)

    got = asyncio.run(main())
    assert sorted(g[0] for g in got) == ["c0", "c1", "c2"]
    assert [g for g in got if g[1] or g[2]] == []
