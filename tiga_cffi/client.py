"""Invoking a server: Client, tiga_invoke, tiga_invoke_async.

A client of logical channel ``C`` with id ``K`` writes invokes to ``C.req.K`` and
reads responses from ``C.resp.K`` (PROTOCOL section 7): it registers its listener on
the response channel first and keeps it while it lives, waits for the server's
listener on the request channel before writing, and waits for the response by
wake-ups.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import functools
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Coroutine, Dict, Generator, List, Optional, Set, Tuple, cast

import msgpack

from . import _handle, _waiter, protocol
from ._errors import (
    ChannelClosed,
    InvalidArgument,
    InvalidType,
    RemoteError,
    ServerGone,
    ServerNotReady,
    TigaError,
    Timeout,
    check,
)
from ._tiga import ffi, lib
from .channel import Channel, PathLike, fs_directory, state_lock, validate_name
from .notify import (
    DEFAULT_SPIN,
    NotificationListener,
    _timeout_ms,
    blocking_call,
    wait_for_listener,
)

DEFAULT_TIMEOUT = 30.0
READY_CACHE = 1.0  # seconds a seen server listener is trusted without re-checking
# How long an invoke waits for the server's listener before it writes anyway: the
# Node addon's Linux build registers no listener slot and polls instead.
LISTENER_GRACE = 0.075
# How often a pending invoke looks whether the server's listener is still there
# (ServerGone): the liveness test reads the slot owners' /proc entries.
LIVENESS_SLICE = 0.1
LIVENESS_SLICE_MS = 100
# The shortest time a request stays in the request log unless the server answered
# it: a server takes a request that vanished younger than its ACK_WINDOW (250 ms) for
# acknowledged, and drops its response early (PROTOCOL-NOTES, "Ack-trim"), so a
# client's min_age below this could lose responses it has not read yet.
REQUEST_MIN_AGE_FLOOR = 0.5
WRITE_BATCH = 64  # async invokes written by one write_many
MATCH_SLICE = 64  # answers handed out per turn of an event loop
ASYNC_SPIN_US = 100  # the longest an async invoke blocks its loop looking for the answer


def request_name(channel_name: str, client_id: str) -> str:
    return f"{channel_name}.req.{client_id}"


def response_name(channel_name: str, client_id: str) -> str:
    return f"{channel_name}.resp.{client_id}"


def new_client_id() -> str:
    """``<pid>-<32 hex digits>``, the C# sample programs' shape."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidType("timeout must be a number of seconds")
    if timeout <= 0:
        raise InvalidArgument("timeout must be positive")
    return float(timeout)


class Endpoint:
    """The pair of channels one client uses, with its response listener."""

    def __init__(self, request: str, response: str, ipc_directory: PathLike,
                 spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                 ack_trim: bool = True, mode: Optional[int] = None) -> None:
        validate_name(request, "request channel name")
        validate_name(response, "response channel name")
        d = fs_directory(ipc_directory)
        self.ipc_directory = d
        self.request_name, self.response_name = request, response
        for _attempt in range(8):
            self._open(d, spin, min_age, mode)
            # A server's scavenger checks a client's liveness and unlinks its files
            # under this same lock: holding it, files that still have their names
            # with our listener registered cannot be deleted any more, and files
            # deleted while we opened them are opened anew.
            try:
                with state_lock(d, request) as held:
                    if held and self._resp.linked() and self._req.linked() and \
                            self._listener.linked():
                        break
            except BaseException:
                self.close()
                raise
            self.close()
        else:
            raise TigaError(f"the files of {request!r} were deleted again and again while "
                            "they were opened")
        try:
            self._last = self._resp.read().last_id
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()  # plain lock for the fast path's checks
        self._cond = threading.Condition(self._lock)
        self._waiting: Set[str] = set()
        self._done: Dict[str, protocol.Response] = {}
        self._eids: Dict[str, int] = {}  # request id -> entry id of the invoke
        self.ack_trim = ack_trim
        self._draining = False
        self._scratch = (ffi.new("char[37]"), ffi.new("int64_t *"), ffi.new("tiga_response *"))
        self._ready_until = 0.0
        self._no_listener = False  # the last look found no listener on the request channel
        self._slotless = False  # a server answered while it had no listener: it polls
        self._ack_pending = 0  # the fast path's last answered request, acked at the next write
        self.missed = 0  # responses trimmed before this client read them
        # _drain and _last: the waiter thread drains for async invokes while a
        # thread may drain for its own
        self._drain_lock = threading.Lock()
        # asyncio: request id -> (loop, future) of invokes waited for by the waiter
        self._futures: Dict[str, InvokeFuture] = {}
        self._outbox: List[InvokeFuture] = []  # async invokes not written yet
        self._flush_handle: Optional[asyncio.Handle] = None  # the flush on its way
        self._watch_key: Optional[int] = None
        self._drain_posted = False  # a _drain_on is on its way to a loop
        self._spin_misses = 0  # async quick looks in a row that found nothing
        self._spin_skip = 0  # async invokes still to go without the quick look

    def _open(self, d: str, spin: float, min_age: Optional[float], mode: Optional[int]) -> None:
        resp = Channel(self.response_name, ipc_directory=d, mode=mode)
        try:
            floor = REQUEST_MIN_AGE_FLOOR
            req = Channel(self.request_name, ipc_directory=d, mode=mode,
                          min_age=min_age if min_age is None or min_age >= floor else floor)
            try:
                listener = NotificationListener(self.response_name, ipc_directory=d, spin=spin,
                                                mode=mode)
            except BaseException:
                req.close()
                raise
        except BaseException:
            resp.close()
            raise
        self._resp, self._req, self._listener = resp, req, listener

    def close(self) -> None:
        futures = getattr(self, "_futures", None)
        if futures is not None:
            with self._cond:
                key, self._watch_key = self._watch_key, None
                pending = list(futures.values())
                futures.clear()
            if key is not None:
                _waiter.get().unwatch(key)
            for fut in pending:
                _waiter.complete(fut.loop, fut,
                                 ChannelClosed(f"client of {self.request_name!r} closed"))
        for name in ("_listener", "_req", "_resp"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()

    @property
    def closed(self) -> bool:
        return self._resp.closed

    def invoke(self, method: str, data: Any, timeout: float) -> str:
        # The common path is kept short on purpose: a process that invokes now and
        # then runs it with cold caches, where every extra Python step costs
        # microseconds (see docs/PROTOCOL-NOTES.md, "cold calls").
        if method.__class__ is not str and not isinstance(method, str):
            raise InvalidType(f"method must be str, not {type(method).__name__}")
        if timeout.__class__ is not float or not timeout > 0.0:
            timeout = _check_timeout(timeout)
        now = time.monotonic()
        deadline = now + timeout
        try:
            packed: bytes = msgpack.packb(data)  # pyright: ignore[reportAssignmentType]
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidType(f"invoke data cannot be encoded as MessagePack: {e}") from None
        if now >= self._ready_until:
            self._await_server(timeout)
        lock = self._lock
        lock.acquire()
        try:  # (a KeyboardInterrupt here must not leave the lock held)
            fast = not self._draining and not self._waiting
            if fast:
                self._draining = True
        finally:
            lock.release()
        if not fast:
            resp = self._invoke_shared(method, data, deadline, timeout)
            if self._no_listener:
                self._slotless = True  # answered without a listener: a polling server
            if resp.code < 0:
                raise RemoteError(resp.data or "remote error", resp.code)
            return resp.data
        try:
            code, text = self._invoke_alone(method, packed, deadline, timeout)
        finally:
            lock.acquire()
            try:
                self._draining = False
                if self._waiting:
                    self._cond.notify_all()
            finally:
                lock.release()
        if self._no_listener:
            self._slotless = True  # answered without a listener: a polling server
        if code < 0:
            raise RemoteError(text or "remote error", code)
        return text

    def _await_server(self, timeout: float) -> None:
        """Wait for the server's listener (PROTOCOL section 7: a C# server does not
        answer invokes written before it attached), for a short grace only: a
        server that registers no listener slot (the Node addon's Linux build polls
        the request channel) still answers an invoke written without it."""
        grace = 0.0 if self._slotless else min(timeout, LISTENER_GRACE)
        if wait_for_listener(self._req, grace, required=False):
            self._no_listener = self._slotless = False
            self._ready_until = time.monotonic() + READY_CACHE
        else:
            self._no_listener = True
            if self._slotless:  # a polling server: look again a second from now
                self._ready_until = time.monotonic() + READY_CACHE

    def _invoke_alone(self, method: str, packed: bytes, deadline: float,
                      timeout: float) -> Tuple[int, str]:
        """The common case, no other invoke in flight on this endpoint: acknowledge
        the previous answer, append and wait in one C call. Returns (code, data)."""
        req, lst = self._req._handle, self._listener._handle
        idbuf, eid, out = self._scratch  # only one invoke at a time takes this path
        mb = method.encode("utf-8")
        start = self._last
        spin = self._listener.spin_us
        ms = _timeout_ms(deadline)
        rc = req.call_with(lst, lib.tiga_invoke_call, mb, len(mb), packed, len(packed),
                           self._ack_pending, start, min(ms, LIVENESS_SLICE_MS), spin, idbuf,
                           eid, out)
        try:
            if rc:
                if idbuf[0] == b"\0":
                    check(rc)  # the append failed: nothing was written
                if rc == lib.TIGA_ETIMEDOUT and ms > LIVENESS_SLICE_MS:
                    rc = lib.TIGA_EINTR  # only the first slice ended: wait on below
                if rc == lib.TIGA_ETIMEDOUT:
                    raise self._timeout(timeout)
                if rc == lib.TIGA_EINTR:  # signal handlers ran, or a slice ended
                    self._check_server()
                    if not lst.call(lambda lh: blocking_call(
                            lambda ms: lib.tiga_response_wait(lh, start, idbuf, ms, spin, out),
                            max(0.0, deadline - time.monotonic()),
                            slice_ms=LIVENESS_SLICE_MS, between=self._check_server)):
                        raise self._timeout(timeout)
                else:
                    check(rc)
            if not out.found:
                # an entry C cannot read (compressed): decode in Python from here on
                rid = ffi.string(idbuf).decode("ascii")
                with self._cond:
                    self._waiting.add(rid)
                    self._eids[rid] = eid[0]
                try:
                    resp = self._drain_until(rid, deadline, timeout)
                finally:
                    with self._cond:
                        self._waiting.discard(rid)
                        self._eids.pop(rid, None)
                return resp.code, resp.data  # (_drain acknowledged it)
            code = out.code
            text = ffi.buffer(out.data, out.data_len)[:].decode("utf-8", "replace")
            seen = out.last_id
            went_back = out.reset  # the response log restarted below our position
        finally:
            lib.tiga_response_clear(out)
        if self.ack_trim:
            self._ack_pending = eid[0]  # given to the next invoke's call
        # An invoke that went the shared way while we were here waits for this one to
        # finish (_draining): read what arrived for it. Its request was written after
        # it joined _waiting, so when _waiting is empty here nothing newer is owed.
        if went_back or self._waiting or self._futures:
            # others read this log too (threads' invokes, the waiter for async ones)
            with self._drain_lock:
                if went_back:
                    self._last = seen
                if not self._waiting and seen > self._last:
                    self._last = seen
            if self._waiting:
                self._drain()  # responses for invokes that started meanwhile
        elif seen > self._last:
            self._last = seen
        return code, text

    def _check_server(self) -> None:
        """Raise ServerGone when the server that was listening on the request
        channel is not any more (closed, or its process died). Not for a server
        that never had a listener there (a polling server, PROTOCOL-NOTES)."""
        if self._no_listener or self._slotless:
            return
        if self._req.live_listeners() == 0:
            self._ready_until = 0.0
            raise ServerGone(
                f"the server went away: no live listener on {self.request_name!r} while "
                "an invoke waited for its response", lib.TIGA_ENOTREADY)

    def _ack(self, entry_id: int) -> None:
        """The server answered request ``entry_id``, so it read every request up to
        it (servers drain in order): they may go at our next write (ack-trim)."""
        if not self.ack_trim:
            return
        self._req._raw().call(lib.tiga_channel_set_ack, entry_id)

    def _invoke_shared(self, method: str, data: Any, deadline: float,
                       timeout: float) -> protocol.Response:
        rid = protocol.new_id()
        body = protocol.encode_invoke(method, data, rid)
        with self._cond:
            self._waiting.add(rid)
        try:
            if self._ack_pending:
                self._ack(self._ack_pending)  # (acks only rise: a stale one is harmless)
            eid = self._req.write(body, media_type=protocol.MEDIA_MSGPACK).id
            with self._cond:
                self._eids[rid] = eid
            return self._await(rid, deadline, timeout)
        finally:
            with self._cond:
                self._waiting.discard(rid)
                self._done.pop(rid, None)
                self._eids.pop(rid, None)

    def _await(self, rid: str, deadline: float, timeout: float) -> protocol.Response:
        with self._cond:
            while True:
                if rid in self._done:
                    return self._done.pop(rid)
                if not self._draining:
                    self._draining = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout(timeout)
                self._cond.wait(left)
        try:
            return self._drain_until(rid, deadline, timeout)
        finally:
            with self._cond:
                self._draining = False
                self._cond.notify_all()

    def _drain_until(self, rid: str, deadline: float, timeout: float) -> protocol.Response:
        while True:
            self._drain()
            with self._cond:
                if rid in self._done:
                    return self._done.pop(rid)
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(timeout)
            if not self._listener.wait(min(left, LIVENESS_SLICE)):
                self._check_server()

    def _timeout(self, timeout: float) -> TigaError:
        self._ready_until = 0.0  # check the server again next time
        if self._no_listener and self._req.live_listeners() == 0:
            self._slotless = False
            return ServerNotReady(
                f"server not ready: no live listener on {self.request_name!r}, and nothing "
                f"answered within {timeout} s (the invoke was written after "
                f"{LISTENER_GRACE} s without one, for servers that poll without a listener "
                "slot; none answered it)", lib.TIGA_ENOTREADY)
        return Timeout(f"no response on {self.response_name!r} within {timeout} s")

    def _drain(self) -> None:
        """Read the responses that came since _last: those of waiting invokes go to
        _done (a thread's) or complete their future (an async invoke's); others
        (answers to invokes given up on, the fast path's own) are passed over.
        Responses trimmed before we read them (``missed``) cannot be matched to
        their invokes (a server may answer out of order): those invokes end at
        their timeout, or with ServerGone."""
        self._match(self._read_new(), 0)

    def _read_new(self) -> List[Any]:
        with self._drain_lock:
            r = self._resp.read(self._last)
            self._last = r.last_id
            self.missed += r.missed
        return r.entries

    def _match(self, entries: List[Any], start: int,
               loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Hand each response in entries[start:] to its invoke. On an event loop
        (loop given) MATCH_SLICE at a time, the rest in a later turn, so that a
        thousand answers at once do not stall it. One lock and one ack per slice."""
        end = len(entries) if loop is None else min(len(entries), start + MATCH_SLICE)
        envs = []
        for i in range(start, end):
            e = entries[i]
            env = protocol.try_envelope(e.message, e.media_type)
            if isinstance(env, protocol.Response):
                envs.append(env)
        hits: List[Tuple[InvokeFuture, protocol.Response]] = []
        found = False
        top = 0
        key = None
        if envs:
            with self._cond:
                waiting, eids, futures = self._waiting, self._eids, self._futures
                for env in envs:
                    rid = env.id
                    if rid not in waiting:
                        continue
                    fut = futures.pop(rid, None)
                    if fut is None:  # a thread waits for it
                        eid = eids.get(rid)
                        self._done[rid] = env
                        found = True
                    else:  # forgotten here, under the one lock
                        eid = eids.pop(rid, None)
                        waiting.discard(rid)
                        fut.rid = None
                        hits.append((fut, env))
                    if eid is not None and eid > top:
                        top = eid
                if found:
                    self._cond.notify_all()
                if hits and not futures and not self._outbox:
                    key, self._watch_key = self._watch_key, None
        if key is not None:
            _waiter.get().unwatch(key)
        for fut, env in hits:
            if fut.loop is loop:
                _waiter.settle(fut, env)
            else:
                _waiter.complete(fut.loop, fut, env)
        if top:
            self._ack(top)  # acks only rise: the slice's highest covers the others
        if loop is not None and end < len(entries):
            loop.call_soon(self._match, entries, end, loop)

    # -- asyncio: no thread per call. The request is written from the loop (the
    # invokes of one turn of the loop in one write_many); the response is looked for
    # in a short spin when the invoke is alone, and otherwise by the process's waiter
    # thread, which watches this endpoint's response listener and completes the
    # future (_waiter).
    def invoke_async(self, method: str, data: Any,
                     timeout: float) -> Coroutine[Any, Any, str]:
        """The async invoke (Client.invoke_async). Called on a running loop, it queues
        the request at once and returns an InvokeFuture: the invokes queued in one
        turn of the loop go out in one write_many, and gathering them makes no Task
        per call. Called elsewhere, or before the server is known to listen, it
        returns a coroutine that does the same once it runs."""
        if not isinstance(method, str):
            raise InvalidType(f"method must be str, not {type(method).__name__}")
        if timeout.__class__ is not float or not timeout > 0.0:
            timeout = _check_timeout(timeout)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or time.monotonic() >= self._ready_until:
            return self._invoke_when_ready(method, data, timeout)
        fut = InvokeFuture(loop=loop)
        fut._ep, fut.method, fut.data, fut.timeout, fut.loop = self, method, data, timeout, loop
        fut.rid = fut.timer = None
        fut.gone = False
        lock = self._lock
        lock.acquire()
        try:
            self._outbox.append(fut)
            if len(self._outbox) == 1:
                self._flush_handle = loop.call_soon(self._flush_outbox)
        finally:
            lock.release()
        return fut

    async def _invoke_when_ready(self, method: str, data: Any, timeout: float) -> str:
        if time.monotonic() >= self._ready_until:
            await self._await_server_async(timeout)
        return await self.invoke_async(method, data, timeout)

    def _alone(self, call: InvokeFuture) -> None:
        """call is awaited (or run as a Task) right away: when nothing else is in
        flight here and nothing else is ready on its loop, write it now and spin a
        little for the answer (the sync fast path), instead of at the flush."""
        loop = call.loop
        lock = self._lock
        lock.acquire()
        try:
            if self._futures or self._waiting or self._draining or \
                    len(self._outbox) != 1 or self._outbox[0] is not call:
                return
            # anything else ready on the loop (asyncio's own loops; others: queue
            # it)? Our flush handle, and one cancelled by the alone invoke before
            # (answered within this same step), do not count.
            ready = getattr(loop, "_ready", None)
            if not isinstance(ready, collections.deque) or len(ready) > 4:
                return
            fh = self._flush_handle
            for h in ready:
                if h is not fh and not h.cancelled():
                    return
            self._outbox.clear()
            if fh is not None:
                self._flush_handle = None
                if ready and ready[-1] is fh:
                    # made in this step: taken back, so that a task awaiting
                    # invokes one after another (each answered at once, no
                    # yield between) does not pile up cancelled handles
                    ready.pop()
                else:
                    fh.cancel()
            self._draining = True  # as the sync fast path: nobody reads past us
        finally:
            lock.release()
        try:
            resp = self._write_and_look(call)
        except BaseException as e:  # noqa: BLE001 - it is the invoke's outcome
            _waiter.settle(call, e if isinstance(e, Exception) else TigaError(str(e)))
            if not isinstance(e, Exception):
                raise
            return
        if resp is not None:
            _waiter.settle(call, resp)

    def _result(self, resp: protocol.Response) -> str:
        if self._no_listener:
            self._slotless = True  # answered without a listener: a polling server
        if resp.code < 0:
            raise RemoteError(resp.data or "remote error", resp.code)
        return resp.data

    def _forget(self, call: InvokeFuture) -> None:
        """An async invoke ended (answered, failed, timed out or cancelled): nothing
        waits for its response any more (one that comes later is passed over), and
        the watch goes when nothing else is awaited."""
        call.gone = True  # (not written yet: it never will be)
        d = call.timer
        if d is not None:
            call.timer = None
            d.left -= 1
            if d.left == 0:  # the last of its group: nothing to expire any more
                d.handle.cancel()
        rid = call.rid
        if rid is None:
            return
        key = None
        lock = self._lock
        lock.acquire()
        try:
            self._waiting.discard(rid)
            self._futures.pop(rid, None)
            self._eids.pop(rid, None)
            if not self._futures and not self._outbox:
                # no watch while nothing is awaited: a watched listener wakes the
                # waiter thread at every response, sync ones too
                key, self._watch_key = self._watch_key, None
        finally:
            lock.release()
        if key is not None:
            _waiter.get().unwatch(key)

    def _register(self, calls: List[InvokeFuture], entry_id: int = 0) -> None:
        """Wait for the calls' responses (their rid set) from now on: the waiter
        completes their futures. One timer for the calls of one loop and timeout."""
        first = calls[0]
        groups: Dict[Tuple[asyncio.AbstractEventLoop, float], List[InvokeFuture]]
        if all(c.loop is first.loop and c.timeout == first.timeout for c in calls):
            groups = {(first.loop, first.timeout): calls}
        else:
            groups = {}
            for c in calls:
                groups.setdefault((c.loop, c.timeout), []).append(c)
        for (loop, timeout), group in groups.items():
            d = _Deadline(len(group), loop.call_later(timeout, _expire, group, self))
            for c in group:
                c.timer = d
        with self._cond:
            for c in calls:
                rid = cast(str, c.rid)
                self._waiting.add(rid)
                self._futures[rid] = c
            if entry_id:
                self._eids[cast(str, first.rid)] = entry_id

    async def _await_server_async(self, timeout: float) -> None:
        """_await_server without blocking the loop: looks, with pauses that grow."""
        grace = 0.0 if self._slotless else min(timeout, LISTENER_GRACE)
        end = time.monotonic() + grace
        pause = 0.0002
        while True:
            if self._req.live_listeners() > 0:
                self._no_listener = self._slotless = False
                self._ready_until = time.monotonic() + READY_CACHE
                return
            left = end - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.02)
        self._no_listener = True
        if self._slotless:
            self._ready_until = time.monotonic() + READY_CACHE

    def _write_and_look(self, call: InvokeFuture) -> Optional[protocol.Response]:
        """An invoke with nothing else in flight on this endpoint (we hold
        _draining): write it and spin a little (the GIL released) in one C call, in
        case the answer comes at once, as it does from a server that is waiting.
        Returns the Response, or None when the call is registered for the waiter
        to complete. After two spins in a row that found nothing, the spin is left
        out for 2, 4, 8, then 16 invokes, so a slow server costs the loop about
        one spin (ASYNC_SPIN_US) in 16 invokes, and a fast one that was late
        once (descheduled) costs nothing more."""
        method, data = call.method, call.data
        try:
            try:
                packed: bytes = msgpack.packb(data)  # pyright: ignore[reportAssignmentType]
            except (TypeError, ValueError, OverflowError) as e:
                raise InvalidType(f"invoke data cannot be encoded as MessagePack: {e}") \
                    from None
            idbuf, eid, out = self._scratch  # ours while we hold _draining
            start = self._last
            mb = method.encode("utf-8")
            spin = 0
            if self._spin_skip > 0:
                self._spin_skip -= 1
            elif self._listener.spin_us > 0:
                spin = max(self._listener.spin_us, ASYNC_SPIN_US)
            rc = self._req._handle.call_with(
                self._listener._handle, lib.tiga_invoke_call, mb, len(mb), packed,
                len(packed), self._ack_pending, start, 0, spin, idbuf, eid, out)
            try:
                if rc and idbuf[0] == b"\0":
                    check(rc)  # the append failed: nothing was written
                if rc == 0 and out.found:
                    self._spin_misses = 0
                    resp = protocol.Response("", ffi.buffer(out.data, out.data_len)[:].decode(
                        "utf-8", "replace"), out.code)
                    if self.ack_trim:
                        self._ack_pending = eid[0]
                    with self._drain_lock:
                        if out.reset or (out.last_id > self._last and not self._waiting):
                            self._last = out.last_id
                    return resp
                if rc not in (0, lib.TIGA_ETIMEDOUT):
                    check(rc)
            finally:
                lib.tiga_response_clear(out)
            if spin:  # two misses in a row: leave it out for the next 2, 4, 8, 16 invokes
                self._spin_misses = min(self._spin_misses + 1, 5)
                if self._spin_misses >= 2:
                    self._spin_skip = 1 << (self._spin_misses - 1)
            call.rid = ffi.string(idbuf).decode("ascii")
            self._register([call], eid[0])
            self._ensure_watch()
            return None
        finally:
            with self._cond:
                self._draining = False
                if self._waiting:
                    self._cond.notify_all()

    def _flush_outbox(self) -> None:
        """Write the queued async invokes, WRITE_BATCH per write_many (and per turn
        of the loop, so that writing a thousand does not stall it)."""
        with self._cond:
            calls = self._outbox[:WRITE_BATCH]
            del self._outbox[:WRITE_BATCH]
            more = bool(self._outbox)
            self._flush_handle = None
            if more:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_outbox)
        batch = []
        for call in calls:
            if call.gone:
                continue
            rid = protocol.new_id()
            try:
                body = protocol.encode_invoke(call.method, call.data, rid)
            except (TypeError, ValueError, OverflowError) as e:
                _waiter.settle(call, InvalidType(
                    f"invoke data cannot be encoded as MessagePack: {e}"))
                continue
            call.rid = rid
            batch.append((call, body))
        if not batch:
            return
        # waited for before they are written: no response is passed over
        self._register([c for c, _ in batch])
        self._ensure_watch()
        try:
            if self._ack_pending:
                self._ack(self._ack_pending)
            ids = self._req.write_many([b for _, b in batch], media_type=protocol.MEDIA_MSGPACK)
        except TigaError as e:
            if len(batch) == 1:
                _waiter.settle(batch[0][0], e)
                return
            ids = []
            for call, b in batch:  # find the one(s) at fault: each alone
                try:
                    ids.append(self._req.write(b, media_type=protocol.MEDIA_MSGPACK).id)
                except TigaError as e1:
                    ids.append(0)
                    _waiter.settle(call, e1)
        with self._cond:
            for (call, _), eid in zip(batch, ids):
                if eid and call.rid in self._futures:
                    self._eids[call.rid] = eid

    def _fail_all(self, exc: TigaError) -> None:
        with self._cond:
            pending = list(self._futures.values())
            self._futures.clear()
        for fut in pending:
            _waiter.complete(fut.loop, fut, type(exc)(str(exc), exc.code))

    def _ensure_watch(self) -> None:
        if self._watch_key is not None:
            return
        with self._cond:
            if self._watch_key is not None:
                return
            w = _waiter.get()
            key = self._watch_key = w.watch(self._listener._raw(), self._on_news)
        w.call_later(LIVENESS_SLICE, functools.partial(self._tick, key))

    def _on_news(self, err: Optional[BaseException]) -> None:
        """The waiter thread: the response listener has news (or could not be
        watched)."""
        if err is not None:
            self._fail_all(err if isinstance(err, TigaError) else TigaError(str(err)))
            return
        # The reading and matching go to the loop whose invokes wait (in slices
        # there): this thread then holds the GIL only for a moment, instead of
        # for the decoding of every answer while the loop waits for it.
        if self._drain_posted:
            return
        try:
            loop = next(iter(self._futures.values())).loop
        except (StopIteration, RuntimeError):  # none waits (or one ended just now)
            return
        self._drain_posted = True
        _waiter.call_on(loop, self._drain_on, loop)

    def _drain_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop of the waiting invokes: read what came and hand it out."""
        self._drain_posted = False
        try:
            entries = self._read_new()
        except TigaError as e:
            self._fail_all(e)
            return
        self._match(entries, 0, loop)

    def _tick(self, key: int) -> None:
        """The waiter thread, every LIVENESS_SLICE while watch ``key`` lasts:
        ServerGone for the pending invokes when the server's listener went away."""
        with self._cond:
            if self._watch_key != key:
                return
            pending = bool(self._futures)
        if pending:
            try:
                self._check_server()
            except TigaError as e:  # ServerGone, or the channel closed under us
                self._fail_all(e)
        _waiter.get().call_later(LIVENESS_SLICE, functools.partial(self._tick, key))


class InvokeFuture(asyncio.Future, collections.abc.Coroutine):  # type: ignore[type-arg]
    """What ``invoke_async`` returns on a running loop: an asyncio Future of the
    response data that is also a coroutine.

    The request is queued when the call is made (the invokes of one turn of the loop
    go out in one write), so ``asyncio.gather`` of many makes no Task per call; as a
    coroutine it goes wherever one goes (``asyncio.create_task``,
    ``TaskGroup.create_task``, ``asyncio.run`` from outside a loop is the plain
    coroutine's case). Awaited at once with nothing else going on, it writes the
    request right away and spins a little for the answer. Cancelling it forgets the
    request at once; a late answer is passed over."""

    # made and queued by Endpoint.invoke_async; written, then registered (rid)
    __slots__ = ("_ep", "method", "data", "timeout", "loop", "rid", "timer", "gone")
    _ep: Endpoint
    method: str
    data: Any
    timeout: float
    loop: asyncio.AbstractEventLoop
    rid: Optional[str]
    timer: Optional[_Deadline]
    gone: bool  # ended: not to be written, its answer passed over

    # -- awaited
    def __await__(self) -> Generator[Any, None, str]:
        if not self.done():
            self._ep._alone(self)
        return super().__await__()

    __iter__ = __await__

    # -- run as a coroutine by a Task (create_task, TaskGroup): it waits for us
    def send(self, value: Any) -> Any:
        """The coroutine's step, for a Task running it: wait for this Future."""
        if not self.done():
            self._ep._alone(self)
            if not self.done():
                self._asyncio_future_blocking = True
                return self
        raise StopIteration(self.result())

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """The Task running it was cancelled (or failed): cancel, then raise."""
        if isinstance(typ, BaseException):
            exc = typ
        else:
            exc = typ() if val is None else val
        self.cancel()  # whoever ran it gave up (no-op when done)
        raise exc

    def close(self) -> None:
        """As a coroutine's close(): cancel it (nothing when it has ended)."""
        self.cancel()

    # -- completed by the endpoint (a Response) or cancelled
    # (the endpoint forgets it as it ends: nothing waits for its response any more)
    def set_result(self, result: Any) -> None:
        """(The endpoint's.) Its answer: the data, or RemoteError for an error code."""
        self._ep._forget(self)
        if result.__class__ is protocol.Response:
            try:
                result = self._ep._result(result)
            except RemoteError as e:
                super().set_exception(e)
                return
        super().set_result(result)

    def set_exception(self, exception: Any) -> None:
        """(The endpoint's.) It failed: Timeout, ServerGone, a write error."""
        self._ep._forget(self)
        super().set_exception(exception)

    def cancel(self, msg: Any = None) -> bool:
        """Give up: the invoke is forgotten at once, and a late answer passed over."""
        done = super().cancel() if msg is None else super().cancel(msg)
        if done:
            self._ep._forget(self)
        return done


class _Deadline:
    """The timer of a group of async invokes written together (one per loop and
    timeout), and how many of them have not ended: the last to end cancels it."""

    __slots__ = ("handle", "left")

    def __init__(self, left: int, handle: asyncio.TimerHandle) -> None:
        self.left = left
        self.handle = handle


def _expire(calls: List[InvokeFuture], ep: Endpoint) -> None:
    for c in calls:
        if not c.done():
            c.set_exception(ep._timeout(c.timeout))


class Client:
    """A client of a Tiga server's logical channel, kept open across invokes.

    ``client_id`` defaults to ``<pid>-<32 hex>``. Thread-safe: several threads may
    invoke at once. Keep it open while the process lives (the server's scavenger
    deletes a client's files once its response listener is gone).

    A client id belongs to one process: one response log has one reader. In a
    forked child a Client with a generated id takes a new id (and channels) at
    its first use; one with an explicit ``client_id`` raises InvalidArgument there.
    """

    def __init__(self, channel_name: str, *, ipc_directory: PathLike,
                 client_id: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                 mode: Optional[int] = None) -> None:
        validate_name(channel_name)
        self.channel_name = channel_name
        self.client_id = validate_name(client_id, "client id") if client_id is not None \
            else new_client_id()
        self.timeout = _check_timeout(timeout)
        self._explicit_id = client_id is not None
        self._options = (spin, min_age, True, mode)
        self._ep = Endpoint(request_name(channel_name, self.client_id),
                            response_name(channel_name, self.client_id), ipc_directory, spin,
                            min_age, True, mode)
        self._generation = _handle._generation
        self.ipc_directory = self._ep.ipc_directory

    def _endpoint(self) -> Endpoint:
        if self._generation != _handle._generation:
            self._after_fork()
        return self._ep

    def _after_fork(self) -> None:
        """First use in a forked child: the parent's client id is the parent's (its
        responses have one reader, and ack-trim relies on that)."""
        if self._explicit_id:
            raise InvalidArgument(
                f"client id {self.client_id!r} was opened in the parent process; a forked "
                "child needs a Client of its own, with another client id")
        old = self._ep
        self.client_id = new_client_id()
        self._ep = Endpoint(request_name(self.channel_name, self.client_id),
                            response_name(self.channel_name, self.client_id),
                            self.ipc_directory, *self._options)
        self._generation = _handle._generation
        old.close()  # the child's copies only: the parent's listener slot stays registered

    @property
    def request_name(self) -> str:
        """The channel this client writes its invokes to: ``<channel>.req.<client id>``."""
        return self._endpoint().request_name

    @property
    def response_name(self) -> str:
        """The channel it reads responses from: ``<channel>.resp.<client id>``."""
        return self._endpoint().response_name

    def invoke(self, method: str, data: Any = "", *, timeout: Optional[float] = None) -> str:
        """Call ``method`` on the server; returns the response data (a str).

        Raises ServerNotReady (no server listening within the timeout), RemoteError
        (the handler failed; its message is the text), Timeout (no response)."""
        return self._endpoint().invoke(method, data, self.timeout if timeout is None else timeout)

    def invoke_async(self, method: str, data: Any = "", *,
                     timeout: Optional[float] = None) -> Coroutine[Any, Any, str]:
        """``invoke`` for asyncio, without a thread per call: await it, gather it, or
        make it a Task. Called on a running loop it queues the request at once and
        returns an InvokeFuture (a Future that is also a coroutine), so a thousand
        gathered calls cost the loop no Task each; the requests of one turn go out in
        one write, and the process's waiter thread completes the responses (see the
        README's "asyncio"). Cancelling it (``wait_for``, ``cancel()``) gives up at
        once; a response that comes later is dropped, and the client stays usable.
        Raises as ``invoke`` does, ServerGone included."""
        return self._endpoint().invoke_async(
            method, data, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Give back the response listener and close the channels. The files stay (a
        server's scavenger removes an idle client's files after ``stale_after``)."""
        self._ep.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._ep.closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Client {self.channel_name!r} id={self.client_id!r} in "
                f"{self.ipc_directory!r}{' closed' if self.closed else ''}>")


_ENDPOINTS: OrderedDict[Tuple[str, str, str], Endpoint] = OrderedDict()
_ENDPOINTS_MAX = 16
_endpoints_lock = threading.Lock()


def _endpoint(request: str, response: str, ipc_directory: PathLike) -> Endpoint:
    key = (fs_directory(ipc_directory), request, response)
    with _endpoints_lock:
        ep = _ENDPOINTS.get(key)
        if ep is not None and not ep.closed:
            _ENDPOINTS.move_to_end(key)
            return ep
        ep = Endpoint(request, response, key[0])
        _ENDPOINTS[key] = ep
        while len(_ENDPOINTS) > _ENDPOINTS_MAX:
            _, old = _ENDPOINTS.popitem(last=False)
            old.close()
        return ep


def _forget_after_fork() -> None:
    global _endpoints_lock
    _endpoints_lock = threading.Lock()
    _ENDPOINTS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def tiga_invoke(request_name: str, response_name: str, method: str, data: Any = "", *,
                ipc_directory: PathLike, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Invoke ``method`` through the given request/response channels (kept open in a
    small cache, with the response listener, for the next call)."""
    return _endpoint(request_name, response_name, ipc_directory).invoke(method, data, timeout)


async def tiga_invoke_async(request_name: str, response_name: str, method: str,
                            data: Any = "", *, ipc_directory: PathLike,
                            timeout: float = DEFAULT_TIMEOUT) -> str:
    """``tiga_invoke`` for asyncio (see Client.invoke_async)."""
    return await _endpoint(request_name, response_name, ipc_directory).invoke_async(
        method, data, timeout)


__all__ = ["Client", "Endpoint", "InvokeFuture", "tiga_invoke", "tiga_invoke_async"]
