"""Subscriptions: entries as they arrive, sync and async, misses reported."""

import asyncio
import time

import pytest
from peers import CTX
from test_async import run

import tiga_cffi


def write_paced(ipc_dir, name, count, pause):
    with tiga_cffi.Channel(name, ipc_directory=ipc_dir, min_age=60) as ch:
        for i in range(count):
            ch.write(f"m{i}".encode())
            time.sleep(pause)


def start_writer(ipc_dir, name, count, pause=0.002):
    p = CTX.Process(target=write_paced, args=(str(ipc_dir), name, count, pause), daemon=True)
    p.start()
    return p


def test_iterating_follows_a_writer_in_another_process(ipc_dir):
    with tiga_cffi.Channel("s", ipc_directory=ipc_dir) as ch, ch.subscribe() as sub:
        p = start_writer(ipc_dir, "s", 200)
        try:
            got = []
            for entry in sub:
                got.append(entry.message)
                if len(got) == 200:
                    break
        finally:
            p.kill()
            p.join(10)
    assert got == [f"m{i}".encode() for i in range(200)]
    assert sub.missed == 0 and sub.closed


def test_async_for_follows_a_writer_without_threads(ipc_dir):
    async def main():
        with tiga_cffi.Channel("s", ipc_directory=ipc_dir) as ch:
            async with ch.subscribe() as sub:
                p = start_writer(ipc_dir, "s", 200)
                try:
                    got = []
                    async for entry in sub:
                        got.append(entry.message)
                        if len(got) == 200:
                            return got
                finally:
                    p.kill()
                    p.join(10)

    assert run(main) == [f"m{i}".encode() for i in range(200)]


def test_start_positions(ipc_dir):
    with tiga_cffi.Channel("s", ipc_directory=ipc_dir, min_age=60) as ch:
        ch.write(b"old")
        with ch.subscribe() as now, ch.subscribe(last_id=0) as everything:
            assert now.poll() == []
            assert [e.message for e in everything.poll()] == [b"old"]
            ch.write(b"new")
            assert [e.message for e in now.poll()] == [b"new"]
            assert [e.message for e in everything.poll()] == [b"new"]
            assert now.get(0.05) is None
    with pytest.raises(tiga_cffi.InvalidArgument):
        tiga_cffi.Subscription(ch, -1)


def test_get_times_out_and_wakes_on_a_write(ipc_dir):
    with tiga_cffi.Channel("s", ipc_directory=ipc_dir) as ch, ch.subscribe() as sub:
        t0 = time.monotonic()
        assert sub.get(0.1) is None
        assert 0.09 <= time.monotonic() - t0 < 2
        p = CTX.Process(target=write_paced, args=(str(ipc_dir), "s", 1, 0), daemon=True)
        p.start()
        try:
            e = sub.get(10)
        finally:
            p.join(10)
        assert e is not None and e.message == b"m0"


def test_entries_trimmed_before_reading_raise_and_the_subscription_goes_on(ipc_dir):
    with tiga_cffi.Channel("s", ipc_directory=ipc_dir, min_age=0) as ch, \
            ch.subscribe(last_id=0) as sub:
        for i in range(5):
            ch.write(f"m{i}".encode())  # min_age 0: each write trims the ones before
        with pytest.raises(tiga_cffi.EntriesMissed) as ei:
            sub.get(1)
        assert (ei.value.count, ei.value.last_id, ei.value.first_id) == (4, 0, 5)
        assert isinstance(ei.value, tiga_cffi.TigaError)
        assert sub.get(1).message == b"m4"  # after the gap
        assert sub.missed == 4


def test_entries_trimmed_before_reading_counted(ipc_dir):
    async def main():
        with tiga_cffi.Channel("s", ipc_directory=ipc_dir, min_age=0) as ch, \
                ch.subscribe(missed="count") as sub:
            for i in range(5):
                ch.write(f"m{i}".encode())
            e = await sub.get_async(1)
            return e.message, sub.missed

    assert run(main) == (b"m4", 4)
    with pytest.raises(tiga_cffi.InvalidArgument):
        tiga_cffi.Subscription(tiga_cffi.Channel("t", ipc_directory=ipc_dir), missed="drop")


def test_a_subscription_holds_a_listener_slot_until_closed(ipc_dir):
    with tiga_cffi.Channel("s", ipc_directory=ipc_dir) as ch:
        sub = ch.subscribe()
        assert ch.live_listeners() == 1
        sub.close()
        assert ch.live_listeners() == 0 and "closed" in repr(sub)


def test_many_idle_async_subscriptions_and_one_busy(ipc_dir):
    async def main():
        chans = [tiga_cffi.Channel(f"idle{i}", ipc_directory=ipc_dir) for i in range(100)]
        subs = [c.subscribe() for c in chans]
        idle = [asyncio.ensure_future(s.get_async()) for s in subs]
        try:
            with tiga_cffi.Channel("busy", ipc_directory=ipc_dir) as ch, ch.subscribe() as sub:
                got = []
                for i in range(50):
                    ch.write(str(i).encode())
                    got.append((await sub.get_async(5)).message)
                chans[42].write(b"late")
                done, _ = await asyncio.wait(idle, timeout=5, return_when="FIRST_COMPLETED")
                assert [t.result().message for t in done] == [b"late"]
                return got
        finally:
            for t in idle:
                t.cancel()
            for s in subs:
                s.close()
            for c in chans:
                c.close()

    assert run(main) == [str(i).encode() for i in range(50)]
