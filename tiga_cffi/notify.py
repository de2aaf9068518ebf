"""Listener slots and wake-ups: NotificationListener, has_live_listener, and the
asyncio bridge."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional

from . import _waiter
from ._errors import ChannelClosed, InvalidArgument, InvalidType, ServerNotReady, check
from ._handle import OwnedHandle
from ._tiga import ffi, lib
from .channel import PathLike, fs_directory, make_options, name_bytes

DEFAULT_SPIN = 50e-6  # seconds of spinning before sleeping on the futex


def _timeout_ms(deadline: Optional[float]) -> int:
    if deadline is None:
        return -1
    return max(0, int((deadline - time.monotonic()) * 1000 + 0.999))


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidType("timeout must be a number of seconds or None")
    if timeout < 0:
        raise InvalidArgument("timeout must not be negative")
    return time.monotonic() + timeout


# Longest single C wait. A signal that arrives while the C code is not yet asleep
# (appending, spinning) does not interrupt the sleep that follows, and Python runs its
# handler (Ctrl-C's KeyboardInterrupt) only when the C call returns: so no C call
# sleeps longer than this before Python looks again.
SIGNAL_SLICE_MS = 200


def blocking_call(call: Callable[[int], int], timeout: Optional[float], *,
                  slice_ms: int = SIGNAL_SLICE_MS,
                  between: Optional[Callable[[], None]] = None) -> bool:
    """Run a C call that blocks for at most the given ms, in slices of at most
    slice_ms; TIGA_EINTR or a slice's end lets Python run its signal handlers
    (which may raise) and ``between`` (which may raise too), and call again with
    the time left.
    Returns True on TIGA_OK, False on TIGA_ETIMEDOUT at the deadline; raises for
    anything else."""
    deadline = _deadline(timeout)
    while True:
        ms = _timeout_ms(deadline)
        rc = call(ms if 0 <= ms <= slice_ms else slice_ms)
        if rc == 0:
            return True
        if rc == lib.TIGA_ETIMEDOUT:
            if deadline is not None and ms <= slice_ms:
                return False
            if between is not None:
                between()
            continue  # only a slice ended
        if rc != lib.TIGA_EINTR:
            check(rc)
        # PEP 475: handlers ran when the call returned; go on with the time left


class NotificationListener:
    """A listener slot on a channel: ``wait()`` returns when a writer signals the
    channel or its version word changes (also for writers that do not signal).

    Not for concurrent use of one listener from several threads. The slot is held
    until close(); peers see this process as listening while it is held.
    """

    def __init__(self, name: str, *, ipc_directory: PathLike, spin: float = DEFAULT_SPIN,
                 mode: Optional[int] = None) -> None:
        nb = name_bytes(name)
        self.name = name
        self.ipc_directory = fs_directory(ipc_directory)
        if spin < 0:
            raise InvalidArgument("spin must not be negative")
        self.spin_us = int(spin * 1e6)
        directory = self.ipc_directory.encode()
        opt = make_options(mode=mode)

        def open_listener() -> Any:
            out = ffi.new("tiga_listener **")
            check(lib.tiga_listener_open(directory, nb, opt, out))
            return out[0]

        self._handle = OwnedHandle(open_listener, lib.tiga_listener_close,
                                   f"listener on {name!r}")
        self._undelivered = False  # news an async wait took but could not deliver
        self._async_wait: Optional[asyncio.Future[bool]] = None
        self._slot = int(self._handle.call(lib.tiga_listener_slot))

    @property
    def slot(self) -> int:
        """The listener's slot in the notify file (a forked child gets its own; after
        close, the slot it had)."""
        try:
            self._slot = int(self._handle.call(lib.tiga_listener_slot))
        except ChannelClosed:
            pass
        return self._slot

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block (GIL released) until signalled or new data; False on timeout.
        ``timeout`` in seconds, None waits forever. Like threading.Event.wait."""
        if self._undelivered:
            self._undelivered = False
            return True
        spin = self.spin_us
        return bool(self._handle.call(
            lambda h: blocking_call(lambda ms: lib.tiga_listener_wait(h, ms, spin), timeout)))

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """``wait`` for asyncio, without a thread: the process's waiter thread
        watches the slot (with every other async wait of the process) and completes
        the wait on this loop. False on timeout. Cancelling it ends the watch at
        once; news that came meanwhile are kept for the next wait."""
        _deadline(timeout)  # checks it
        if self._undelivered:
            self._undelivered = False
            return True
        loop = asyncio.get_running_loop()
        fut = self._async_wait = loop.create_future()

        def deliver() -> None:  # on the loop
            # to the wait that runs now: the one that took the news may be over
            # (timed out, cancelled), and a later one is waiting for them
            current = self._async_wait
            if current is not None and not current.done():
                current.set_result(True)
            else:
                self._undelivered = True

        def on_news(err: Optional[BaseException]) -> None:  # the waiter thread
            if err is None:
                _waiter.call_on(loop, deliver)
            else:
                _waiter.complete(loop, fut, err)

        w = _waiter.get()
        key = w.watch(self._handle, on_news, consume=True, once=True)
        timer = None if timeout is None else loop.call_later(timeout, _waiter.settle, fut, False)
        try:
            return bool(await fut)
        finally:
            if timer is not None:
                timer.cancel()
            if self._async_wait is fut:
                self._async_wait = None
            w.unwatch(key)

    def _raw(self) -> OwnedHandle:
        return self._handle

    def linked(self) -> bool:
        """Whether the channel's files still have their names (see Channel.linked)."""
        out = ffi.new("int32_t *")
        check(self._handle.call(
            lambda h: lib.tiga_channel_linked(lib.tiga_listener_channel(h), out)))
        return bool(out[0])

    def close(self) -> None:
        """Give the slot back and close the files."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called (the slot is given back then)."""
        return self._handle.closed

    def __enter__(self) -> NotificationListener:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"slot={self.slot}"
        return f"<NotificationListener {self.name!r} in {self.ipc_directory!r} {state}>"


def create_tiga_notification_listener(
    name: str, *, ipc_directory: PathLike, spin: float = DEFAULT_SPIN
) -> NotificationListener:
    """Register a listener on channel ``name`` (created if missing)."""
    return NotificationListener(name, ipc_directory=ipc_directory, spin=spin)


def has_live_listener(name: str, *, ipc_directory: PathLike) -> bool:
    """Whether a live process listens on channel ``name`` (frees dead owners' slots)."""
    from .channel import cached_channel

    return cached_channel(name, ipc_directory).live_listeners() > 0


def wait_for_listener(channel: Any, timeout: Optional[float], *, required: bool = True) -> bool:
    """Wait until ``channel`` (a Channel) has a live listener. Returns True; when
    none appears within ``timeout``, raises ServerNotReady, or returns False when
    not ``required``."""
    handle = channel._raw()
    h = handle.acquire()
    try:
        # in slices so that signal handlers run (the C wait sleeps, it does not see EINTR)
        deadline = _deadline(timeout)
        while True:
            ms = _timeout_ms(deadline)
            rc = lib.tiga_channel_wait_listener(h, min(ms, 100) if ms >= 0 else 100)
            if rc == 0:
                return True
            if rc != lib.TIGA_ENOTREADY:
                check(rc)
            if deadline is not None and time.monotonic() >= deadline:
                if not required:
                    return False
                raise ServerNotReady(
                    f"server not ready: no live listener on {channel.name!r} within "
                    f"{timeout} s", lib.TIGA_ENOTREADY)
    finally:
        handle.release()


class DirectoryWatch:
    """Files created in a directory (inotify on Linux); waits time out elsewhere."""

    def __init__(self, directory: str) -> None:
        def open_watch() -> Any:
            out = ffi.new("tiga_dirwatch **")
            check(lib.tiga_dirwatch_open(directory.encode(), out))
            return out[0]

        self._handle = OwnedHandle(open_watch, lib.tiga_dirwatch_close, "directory watch")

    def wait(self, timeout: Optional[float]) -> bool:
        return bool(self._handle.call(
            lambda h: blocking_call(lambda ms: lib.tiga_dirwatch_wait(h, ms), timeout)))

    def close(self) -> None:
        self._handle.close()
