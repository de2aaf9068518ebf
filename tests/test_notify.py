"""Listener slots and wake-ups across processes."""

import asyncio
import os
import struct
import time

import pytest
from peers import CTX, hold_listener, write_later

import tiga_cffi
from tiga_cffi._tiga import lib


def test_wakes_on_a_write_from_another_process(ipc_dir):
    with tiga_cffi.create_tiga_notification_listener("wake", ipc_directory=ipc_dir) as lst:
        p = CTX.Process(target=write_later, args=(str(ipc_dir), "wake", 0.3))
        p.start()
        t0 = time.monotonic()
        assert lst.wait(20) is True
        waited = time.monotonic() - t0
        p.join(20)
        assert waited < 10  # woken by the write, long before the timeout
        assert lst.wait(0.05) is False


def test_wait_times_out_and_sees_local_writes(ipc_dir):
    with tiga_cffi.create_tiga_notification_listener("local", ipc_directory=ipc_dir) as lst:
        t0 = time.monotonic()
        assert lst.wait(0.2) is False
        assert 0.15 < time.monotonic() - t0 < 2
        tiga_cffi.tiga_write("local", b"x", ipc_directory=ipc_dir)
        assert lst.wait(0) is True
        assert lst.wait(0) is False


def test_writer_that_does_not_signal_is_noticed(ipc_dir):
    """A peer without wake-ups (the peers' Linux builds): the version word is polled."""
    with tiga_cffi.create_tiga_notification_listener("quiet", ipc_directory=ipc_dir) as lst:
        state = ipc_dir / "tiga_quiet_state"
        with open(state, "r+b") as f:  # change the version word without signalling
            f.write(struct.pack("<Q", 12345 << 1))
        t0 = time.monotonic()
        assert lst.wait(5) is True
        assert time.monotonic() - t0 < 1


def test_async_wait(ipc_dir):
    async def main():
        with tiga_cffi.create_tiga_notification_listener("aw", ipc_directory=ipc_dir) as lst:
            waiter = asyncio.ensure_future(lst.wait_async(10))
            await asyncio.sleep(0.1)
            assert not waiter.done()  # the loop is free meanwhile
            tiga_cffi.tiga_write("aw", b"x", ipc_directory=ipc_dir)
            assert await asyncio.wait_for(waiter, 10) is True
            assert await lst.wait_async(0.1) is False

    asyncio.run(main())


def test_has_live_listener_and_registration(ipc_dir):
    assert not tiga_cffi.has_live_listener("reg", ipc_directory=ipc_dir)
    lst = tiga_cffi.create_tiga_notification_listener("reg", ipc_directory=ipc_dir)
    assert tiga_cffi.has_live_listener("reg", ipc_directory=ipc_dir)
    raw = (ipc_dir / "tiga_reg_notify").read_bytes()
    token, start, pid = struct.unpack_from("<qqi", raw, lst.slot * 24)
    assert pid == os.getpid() and start > 0
    marker = (start ^ (start >> 32)) & 0xFFFFFFFF
    assert token == (os.getpid() << 32) | marker
    lst.close()
    raw = (ipc_dir / "tiga_reg_notify").read_bytes()
    assert struct.unpack_from("<qqi", raw, lst.slot * 24) == (0, 0, 0)
    assert not tiga_cffi.has_live_listener("reg", ipc_directory=ipc_dir)


def test_full_slot_table_is_a_clear_error(ipc_dir):
    held = [tiga_cffi.create_tiga_notification_listener("full", ipc_directory=ipc_dir)
            for _ in range(128)]
    with pytest.raises(tiga_cffi.NoListenerSlot) as ei:
        tiga_cffi.create_tiga_notification_listener("full", ipc_directory=ipc_dir)
    assert "128" in str(ei.value)
    held.pop().close()
    held.append(tiga_cffi.create_tiga_notification_listener("full", ipc_directory=ipc_dir))
    for h in held:
        h.close()


def test_dead_owner_slot_is_taken_over(ipc_dir):
    held = [tiga_cffi.create_tiga_notification_listener("take", ipc_directory=ipc_dir)
            for _ in range(127)]
    ready = CTX.Event()
    p = CTX.Process(target=hold_listener, args=(str(ipc_dir), "take", ready))
    p.start()
    assert ready.wait(30)
    with pytest.raises(tiga_cffi.NoListenerSlot):
        tiga_cffi.create_tiga_notification_listener("take", ipc_directory=ipc_dir)
    p.kill()  # SIGKILL; TerminateProcess on Windows
    p.join(10)
    lst = tiga_cffi.create_tiga_notification_listener("take", ipc_directory=ipc_dir)
    assert lst.slot not in {h.slot for h in held}
    for h in held + [lst]:
        h.close()


def test_reused_pid_with_another_start_time_is_dead(ipc_dir):
    me = os.getpid()
    start = lib.tiga_process_start_ticks(me)
    assert lib.tiga_process_alive(me, start) == 1
    assert lib.tiga_process_alive(me, start - 3600 * 10**7) == 0
    # a slot claiming to be this pid, started an hour earlier: not a live listener
    tiga_cffi.Channel("reuse", ipc_directory=ipc_dir).close()
    fake_start = start - 3600 * 10**7
    marker = (fake_start ^ (fake_start >> 32)) & 0xFFFFFFFF
    with open(ipc_dir / "tiga_reuse_notify", "r+b") as f:
        f.write(struct.pack("<qqii", (me << 32) | marker, fake_start, me, 0))
    assert not tiga_cffi.has_live_listener("reuse", ipc_directory=ipc_dir)
    assert (ipc_dir / "tiga_reuse_notify").read_bytes()[:24] == bytes(24)  # cleared
