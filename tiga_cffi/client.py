"""Invoking a server: Client, tiga_invoke, tiga_invoke_async.

A client of logical channel ``C`` with id ``K`` writes invokes to ``C.req.K`` and
reads responses from ``C.resp.K`` (PROTOCOL section 7): it registers its listener on
the response channel first and keeps it while it lives, waits for the server's
listener on the request channel before writing, and waits for the response by
wake-ups.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Dict, Optional, Set, Tuple

import msgpack

from . import _handle, protocol
from ._errors import (
    InvalidArgument,
    InvalidType,
    RemoteError,
    ServerNotReady,
    TigaError,
    Timeout,
    check,
)
from ._tiga import ffi, lib
from .channel import Channel, PathLike, fs_directory, state_lock, validate_name
from .notify import (
    DEFAULT_SPIN,
    SIGNAL_SLICE_MS,
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

    def _open(self, d: str, spin: float, min_age: Optional[float], mode: Optional[int]) -> None:
        resp = Channel(self.response_name, ipc_directory=d, mode=mode)
        try:
            req = Channel(self.request_name, ipc_directory=d, min_age=min_age, mode=mode)
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
                           self._ack_pending, start, min(ms, SIGNAL_SLICE_MS), spin, idbuf,
                           eid, out)
        try:
            if rc:
                if idbuf[0] == b"\0":
                    check(rc)  # the append failed: nothing was written
                if rc == lib.TIGA_ETIMEDOUT and ms > SIGNAL_SLICE_MS:
                    rc = lib.TIGA_EINTR  # only the first slice ended: wait on below
                if rc == lib.TIGA_ETIMEDOUT:
                    raise self._timeout(timeout)
                if rc == lib.TIGA_EINTR:  # signal handlers ran; wait for the rest of the time
                    if not lst.call(lambda lh: blocking_call(
                            lambda ms: lib.tiga_response_wait(lh, start, idbuf, ms, spin, out),
                            max(0.0, deadline - time.monotonic()))):
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
        if went_back:
            self._last = seen
        if self._waiting:
            self._drain()  # responses for invokes that started meanwhile
        elif seen > self._last:
            self._last = seen
        return code, text

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
            self._listener.wait(left)

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
        r = self._resp.read(self._last)
        self._last = r.last_id
        self.missed += r.missed
        found = False
        for e in r.entries:
            env = protocol.try_envelope(e.message, e.media_type)
            if isinstance(env, protocol.Response):
                eid = None
                with self._cond:
                    if env.id in self._waiting:
                        self._done[env.id] = env
                        found = True
                        eid = self._eids.get(env.id)
                if eid is not None:
                    self._ack(eid)
        if found:
            with self._cond:
                self._cond.notify_all()


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

    async def invoke_async(self, method: str, data: Any = "", *,
                           timeout: Optional[float] = None) -> str:
        """``invoke`` for asyncio: runs in the loop's executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, functools.partial(self.invoke, method, data, timeout=timeout))

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
    """``tiga_invoke`` for asyncio (runs in the loop's executor)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(
        tiga_invoke, request_name, response_name, method, data,
        ipc_directory=ipc_directory, timeout=timeout))


__all__ = ["Client", "Endpoint", "tiga_invoke", "tiga_invoke_async"]
