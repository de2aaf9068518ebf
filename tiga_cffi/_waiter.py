"""The asyncio bridge: one thread per process waits for every async wait.

A ``tiga_waitset`` (futex_waitv on Linux, WaitForMultipleObjects on Windows)
holds the listeners that coroutines wait on: response listeners of clients with
async invokes in flight, listeners in ``wait_async``, subscriptions, the
request listeners of a server on the caller's loop. The waiter thread sleeps in
it with the GIL released and, when a listener has news, runs that watch's
callback, which completes asyncio futures through ``call_soon_threadsafe`` (in
batches, one wake-up of each loop per round).

Watches are added and removed by any thread through a queue that the waiter
applies between waits (a kick ends its wait), so the C set is only ever touched
by the waiter thread. Cancelling a wait removes its watch at once; nothing waits
at interpreter exit (an atexit hook kicks the thread out of its wait and joins
it, which takes microseconds).
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._errors import TigaError, check
from ._handle import OwnedHandle
from ._tiga import ffi, lib

log = logging.getLogger("tiga_cffi.waiter")

# a watch's callback: called in the waiter thread with None when its listener
# has news, or with the exception that kept the watch from being added
NewsCallback = Callable[[Optional[BaseException]], None]
BATCH = 64  # callbacks a loop runs in one go before it lets other callbacks in
Posted = Tuple[Callable[..., Any], Tuple[Any, ...]]  # a call posted to a loop, with its args


class _Watch:
    __slots__ = ("key", "handle", "on_news", "consume", "once")

    def __init__(self, key: int, handle: OwnedHandle, on_news: NewsCallback,
                 consume: bool, once: bool) -> None:
        self.key, self.handle, self.on_news = key, handle, on_news
        self.consume, self.once = consume, once


class Waiter:
    """The process's waiter thread and its wait set (see the module's doc)."""

    KEYS = 256  # ready keys taken per wait

    def __init__(self, poll: bool = False) -> None:
        out = ffi.new("tiga_waitset **")
        rc = lib.tiga_waitset_open(lib.TIGA_WAITSET_POLL if poll else 0, out)
        check(rc)
        self._ws = out[0]
        self._lock = threading.Lock()
        self._ops: List[Tuple[str, Any]] = []
        self._watches: Dict[int, _Watch] = {}
        self._timers: List[Tuple[float, int, Callable[[], None]]] = []  # heap
        self._keys = itertools.count(1)
        self._stop = False
        self._posts: Dict[asyncio.AbstractEventLoop, List[Posted]] = {}
        self._buf = ffi.new("uint64_t[]", self.KEYS)
        self._n = ffi.new("int32_t *")
        self._thread = threading.Thread(target=self._run, name="tiga-waiter", daemon=True)
        self._thread.start()

    # -- any thread
    def watch(self, handle: OwnedHandle, on_news: NewsCallback, *, consume: bool = False,
              once: bool = False) -> int:
        """Watch a listener (its OwnedHandle, held open while watched); returns the
        key for unwatch. ``consume``: the listener's own news are taken (for a
        listener nobody else waits on meanwhile); otherwise the watch keeps its own,
        starting now, and its callback runs once right after it is added, to look at
        what came before. ``once``: the watch ends after its first callback (before
        the waiter waits again, so no later news is taken by it)."""
        key = next(self._keys)
        self._queue(("add", _Watch(key, handle, on_news, consume, once)))
        return key

    def unwatch(self, key: int) -> None:
        self._queue(("remove", key))

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run fn in the waiter thread after ``delay`` seconds (liveness checks)."""
        self._queue(("timer", (time.monotonic() + delay, fn)))

    def _queue(self, op: Tuple[str, Any]) -> None:
        with self._lock:
            if self._stop:
                return
            self._ops.append(op)
        lib.tiga_waitset_kick(self._ws)

    def stop(self) -> None:
        with self._lock:
            self._stop = True
        lib.tiga_waitset_kick(self._ws)
        if threading.current_thread() is not self._thread:
            self._thread.join(1.0)

    # -- the waiter thread
    def post(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
        """From a callback: run fn(*args) on loop (sent with the round's others)."""
        self._posts.setdefault(loop, []).append((fn, args))

    def _flush(self) -> None:
        posts, self._posts = self._posts, {}
        for loop, calls in posts.items():
            try:
                loop.call_soon_threadsafe(_run_batch, loop, calls)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for these any more

    def _apply(self, ops: List[Tuple[str, Any]]) -> None:
        ready = ffi.new("int32_t *")
        for kind, arg in ops:
            if kind == "add":
                w: _Watch = arg
                try:
                    h = w.handle.acquire()
                except BaseException as e:  # noqa: BLE001 - closed: tell the watcher
                    self._call(w, e)
                    continue
                rc = lib.tiga_waitset_add(self._ws, h, w.key,
                                          lib.TIGA_WATCH_CONSUME if w.consume else 0, ready)
                if rc:
                    w.handle.release()
                    try:
                        check(rc)
                    except TigaError as e:
                        self._call(w, e)
                    continue
                self._watches[w.key] = w
                if ready[0] or not w.consume:
                    self._news(w)
            elif kind == "remove":
                self._remove(arg)
            else:
                when, fn = arg
                heapq.heappush(self._timers, (when, next(self._keys), fn))

    def _remove(self, key: int) -> None:
        w = self._watches.pop(key, None)
        if w is not None:
            lib.tiga_waitset_remove(self._ws, key)
            w.handle.release()

    def _news(self, w: _Watch) -> None:
        self._call(w, None)
        if w.once:
            self._remove(w.key)

    def _call(self, w: _Watch, err: Optional[BaseException]) -> None:
        try:
            w.on_news(err)
        except Exception:  # noqa: BLE001 - one bad callback must not stop the others
            log.exception("a waiter callback raised")

    def _run(self) -> None:
        ws, buf, n = self._ws, self._buf, self._n
        while True:
            with self._lock:
                ops, self._ops = self._ops, []
                stop = self._stop
            if stop:
                break
            try:
                if ops:
                    self._apply(ops)  # (a watch with news at once completes here)
                self._flush()  # before sleeping: what this round completed goes out now
                timeout = -1
                if self._timers:
                    left = self._timers[0][0] - time.monotonic()
                    timeout = max(0, int(left * 1000 + 0.999))
                rc = lib.tiga_waitset_wait(ws, timeout, buf, self.KEYS, n)
                if rc == 0:
                    for i in range(n[0]):
                        w = self._watches.get(buf[i])
                        if w is not None:
                            self._news(w)
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    try:
                        fn()
                    except Exception:  # noqa: BLE001
                        log.exception("a waiter timer raised")
            except Exception:  # noqa: BLE001 - MemoryError and the like: go on
                log.exception("the waiter's round failed")
                time.sleep(0.001)
        for w in self._watches.values():
            lib.tiga_waitset_remove(ws, w.key)
            w.handle.release()
        self._watches.clear()


def _run_batch(loop: asyncio.AbstractEventLoop, calls: List[Posted],
               start: int = 0) -> None:
    """Run posted calls on their loop, BATCH at a time: between batches the loop
    runs its other callbacks (timers among them), so a thousand answers arriving
    together do not stall it."""
    end = min(len(calls), start + BATCH)
    for fn, args in calls[start:end]:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            log.exception("a posted call raised")
    if end < len(calls):
        loop.call_soon(_run_batch, loop, calls, end)


def settle(fut: asyncio.Future[Any], result: Any) -> None:
    """On fut's loop: its result, or its exception, unless it is done already
    (cancelled, or timed out)."""
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def complete(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any) -> None:
    """settle(fut, result) on fut's loop, from any thread: from the waiter thread
    with the round's other completions (one wake-up of each loop per round)."""
    call_on(loop, settle, fut, result)


def call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """fn(*args) on loop, from any thread (nothing when the loop is closed:
    nobody waits there any more)."""
    w = _waiter
    if w is not None and threading.current_thread() is w._thread:
        w.post(loop, fn, *args)
        return
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


_waiter: Optional[Waiter] = None
_waiter_lock = threading.Lock()


def get() -> Waiter:
    """The process's waiter, started at first use (again in a forked child)."""
    global _waiter
    w = _waiter
    if w is not None:
        return w
    with _waiter_lock:
        if _waiter is None:
            _waiter = Waiter(poll=os.environ.get("TIGA_WAITSET_POLL") == "1")
        return _waiter


def _shutdown() -> None:
    w = _waiter
    if w is not None:
        w.stop()


def _after_fork_in_child() -> None:
    global _waiter, _waiter_lock
    _waiter = None  # the parent's thread does not exist here
    _waiter_lock = threading.Lock()


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
