"""Windows only: the peers' named events (PROTOCOL section 5) seen from Python, as a
C# or Node peer sees them. Runs under wine in CI and on real Windows in the hosted
workflow."""

import time

import pytest
from conftest import install_payload
from peers import CTX, hold_listener, write_later
from platforms import WINDOWS

import tiga_cffi
from tiga_cffi._tiga import ffi, lib

pytestmark = pytest.mark.skipif(not WINDOWS, reason="Windows only: named events")

if WINDOWS:
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.OpenEventW.restype = wintypes.HANDLE
    k32.OpenEventW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
    k32.CreateEventW.restype = wintypes.HANDLE
    k32.CreateEventW.argtypes = [wintypes.LPVOID, wintypes.BOOL, wintypes.BOOL, wintypes.LPCWSTR]
    k32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    k32.SetEvent.argtypes = [wintypes.HANDLE]
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    SYNCHRONIZE, EVENT_MODIFY_STATE, WAIT_OBJECT_0, WAIT_TIMEOUT = 0x100000, 0x2, 0, 0x102


def event_name(ipc_dir, name, slot):
    out = ffi.new("char[96]")
    path = str(ipc_dir / f"tiga_{name}_notify").encode()
    assert lib.tiga_event_name(path, slot, out, 96) == 0
    return ffi.string(out).decode()


def set_event_later(name, delay):
    """What a C# or Node writer does after its write: set the slot's event by name."""
    time.sleep(delay)
    h = k32.CreateEventW(None, False, False, name)
    k32.SetEvent(h)
    k32.CloseHandle(h)


def test_a_write_in_another_process_sets_the_slot_event(ipc_dir):
    with tiga_cffi.create_tiga_notification_listener("ev", ipc_directory=ipc_dir) as lst:
        name = event_name(ipc_dir, "ev", lst.slot)
        assert name.startswith("tiga_wait_handle_file_") and name.endswith(f"_slot_{lst.slot}")
        h = k32.OpenEventW(SYNCHRONIZE | EVENT_MODIFY_STATE, False, name)
        assert h, f"no event {name}"
        try:
            assert k32.WaitForSingleObject(h, 200) == WAIT_TIMEOUT  # nothing written
            p = CTX.Process(target=write_later, args=(str(ipc_dir), "ev", 0.2))
            p.start()
            try:
                assert k32.WaitForSingleObject(h, 20000) == WAIT_OBJECT_0
            finally:
                p.join(20)
                if p.is_alive():
                    p.kill()
        finally:
            k32.CloseHandle(h)


def test_a_peer_style_write_and_event_wakes_our_listener(ipc_dir):
    """A peer writes the files and sets the event; it knows nothing of our counter
    in `reserved`. The listener wakes and the entry reads."""
    tiga_cffi.Channel("peer", ipc_directory=ipc_dir).close()
    with tiga_cffi.create_tiga_notification_listener("peer", ipc_directory=ipc_dir) as lst:
        with tiga_cffi.Channel("other", ipc_directory=ipc_dir) as src:
            src.write(b"from a peer")  # a valid payload, copied in by hand below
            v = src.version
            size = (v >> 1) & ((1 << 39) - 1)
            payload = (ipc_dir / f"tiga_other_data_{v & 1}").read_bytes()[:size]
        install_payload(ipc_dir, "peer", payload)
        p = CTX.Process(target=set_event_later, args=(event_name(ipc_dir, "peer", lst.slot), 0.1))
        p.start()
        try:
            assert lst.wait(20) is True
        finally:
            p.join(20)
            if p.is_alive():
                p.kill()
        assert [e.message for e in tiga_cffi.tiga_read("peer", ipc_directory=ipc_dir).entries] \
            == [b"from a peer"]


def test_listener_ready_follows_the_listeners(ipc_dir):
    """Set while a listener (in another process) is registered, reset when none is
    left: what the Node addon's wait-for-listener waits on."""
    tiga_cffi.Channel("rdy", ipc_directory=ipc_dir).close()
    ready = k32.CreateEventW(None, True, False, event_name(ipc_dir, "rdy", -1))
    assert ready
    try:
        started = CTX.Event()
        p = CTX.Process(target=hold_listener, args=(str(ipc_dir), "rdy", started))
        p.start()
        try:
            assert started.wait(30)
            assert k32.WaitForSingleObject(ready, 0) == WAIT_OBJECT_0
        finally:
            p.kill()
            p.join(20)
        # the killed process unregistered nothing; our own last listener resets it
        with tiga_cffi.create_tiga_notification_listener("rdy", ipc_directory=ipc_dir):
            assert k32.WaitForSingleObject(ready, 0) == WAIT_OBJECT_0
        assert k32.WaitForSingleObject(ready, 0) == WAIT_TIMEOUT
    finally:
        k32.CloseHandle(ready)
