"""The Tiga server: discovery of clients, one worker per client, handlers,
responses, scavenging of dead clients (PROTOCOL section 6)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import inspect
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Set, Tuple

import msgpack

from . import _waiter, protocol
from ._errors import InvalidArgument, InvalidType, TigaError, check
from ._tiga import ffi, lib
from .channel import (
    Channel,
    PathLike,
    check_mode,
    fs_directory,
    make_directory,
    state_lock,
    validate_name,
)
from .client import request_name, response_name
from .notify import DEFAULT_SPIN, DirectoryWatch, NotificationListener

log = logging.getLogger("tiga_cffi.server")

SUFFIXES = ("_state", "_data_0", "_data_1", "_notify")
DEFAULT_MIN_AGE = 1.0  # seconds, the peers' default and ours
ACK_WINDOW_NS = 250_000_000  # a request trimmed younger than this was acknowledged
DEFAULT_MAX_CONCURRENCY = 4  # invokes of one client handled at once
HANDOFF_AFTER = 0.010  # a sync handler running longer lets its client's next invokes start
WATCHDOG_SLOTS = 1024  # clients of one server that get the hand-off (the others: inline)


class InvokeContext(NamedTuple):
    """What a handler learns about the call it serves."""

    channel_name: str
    client_id: Optional[str]  # None for the single channel
    request_name: str
    response_name: str
    ipc_directory: str
    request_id: str
    entry_id: int
    media_type: Optional[str]


class ErrorContext(NamedTuple):
    """Where an error reported to ``on_error`` happened."""

    stage: str  # discover, read, invoke, write, listener, scavenge, scavenge-initial
    channel_name: str
    client_id: Optional[str] = None
    request_name: Optional[str] = None
    response_name: Optional[str] = None
    request_id: Optional[str] = None
    method: Optional[str] = None


Handler = Callable[[str, Any, InvokeContext], Any]
ErrorHandler = Callable[[BaseException, ErrorContext], None]


def error_text(err: BaseException) -> str:
    """A handler's failure as the response's message: str(err), as the peers send
    theirs; the type's name when that is empty; and "KeyError: 'b'" for a KeyError,
    whose str() is only the key's repr."""
    text = str(err)
    if isinstance(err, KeyError) or not text:
        return f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _is_async_callable(fn: Any) -> bool:
    """Whether calling fn gives a coroutine (an async def function, a partial of
    one, or an object whose __call__ is one)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = type(fn).__dict__.get("__call__") if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _interval(value: Any, what: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds")
    if value <= 0:
        raise InvalidArgument(f"{what} must be positive")
    return max(minimum, float(value))


class _WorkerBase:
    """One client's channels and bookkeeping, shared by the two ways of serving it:
    a thread per client (TigaServer.start) and the caller's event loop
    (TigaServer.serve)."""

    def __init__(self, server: TigaServer, client_id: Optional[str], req: str, resp: str) -> None:
        self.server = server
        self.client_id = client_id
        self.req_name, self.resp_name = req, resp
        self.stop = threading.Event()
        self.req: Optional[Channel] = None
        self.resp: Optional[Channel] = None
        self.listener: Optional[NotificationListener] = None
        self.last = 0
        self.ready = threading.Event()
        self.ended = threading.Event()  # closed: nothing of this client is served any more
        # answered requests whose responses may still be unread, in the order of their
        # responses: (request entry id, response entry id, request ts, response ts)
        self.answered: Deque[Tuple[int, int, int, int]] = collections.deque()
        self._respond_lock = threading.Lock()  # a response and its place in `answered`
        self._eid = ffi.new("int64_t *")
        ma = server.min_age if server.min_age is not None else DEFAULT_MIN_AGE
        self.min_age_ns = int(ma * 1e9)
        self._ctx_head = (server.channel_name, client_id, req, resp, server.ipc_directory)

    def error(self, stage: str, exc: BaseException, **kw: Any) -> None:
        self.server._report(exc, ErrorContext(stage, self.server.channel_name, self.client_id,
                                              self.req_name, self.resp_name, **kw))

    def _open(self) -> bool:
        d = self.server.ipc_directory
        try:
            srv = self.server
            self.req = Channel(self.req_name, ipc_directory=d, min_age=srv.min_age, mode=srv.mode,
                               write_timeout=srv.write_timeout)
            self.resp = self.req if self.resp_name == self.req_name else Channel(
                self.resp_name, ipc_directory=d, write_timeout=srv.write_timeout,
                min_age=srv.min_age, mode=srv.mode)
            self.listener = NotificationListener(self.req_name, ipc_directory=d, mode=srv.mode,
                                                 spin=self.server.spin)
            with srv._lock:
                srv._retry.pop(self.client_id, None)
            return True
        except Exception as e:  # noqa: BLE001 - NoListenerSlot, EMFILE, MemoryError, ...
            self.error("listener", e)
            return False

    def _attach(self) -> List[Any]:
        """The invokes still to answer when we attach: skip those whose response is
        in the response log (a restarted server never executes an invoke twice)."""
        assert self.req is not None and self.resp is not None
        reqs = self.req.read(0)
        invokes = []
        for e in reqs.entries:
            env = self._invoke_of(e)
            if env is not None:
                invokes.append((e, env))
        answered: Set[str] = set()
        newest = None
        for e in self.resp.read(0).entries:
            resp = protocol.try_envelope(e.message, e.media_type)
            if isinstance(resp, protocol.Response):
                answered.add(resp.id)
                newest = resp.id
        # Requests are read in id order: everything up to the one whose response is
        # the newest was taken (it stays retained until a later response write).
        start = 0
        for e, env in invokes:
            if env.id == newest:
                start = e.id
        self.last = reqs.last_id
        return [(e, env) for e, env in invokes if e.id > start and env.id not in answered]

    def _attach_or_report(self) -> List[Any]:
        try:
            return self._attach()
        except Exception as err:  # noqa: BLE001 - reported; serving goes on from the log's end
            self.error("read", err)
            return []

    def _invoke_of(self, e: Any) -> Optional[protocol.Invoke]:
        if not protocol.is_envelope_media(e.media_type):
            return None
        try:
            env = protocol.decode_envelope(e.message, e.media_type)
        except protocol.ProtocolError as err:
            self.error("read", err)
            return None
        return env if isinstance(env, protocol.Invoke) else None

    def _went_back(self) -> None:
        """The request log's last id fell below our position: the client (or a peer
        that lost its data; the Node addon restarts ids at 1 after a log it could not
        read) began a new log. Its entries are new requests, read from its start; the
        answered requests we kept for ack-trim are gone with the old log."""
        self.last = 0
        self.answered.clear()

    def _read_invokes(self) -> List[Any]:
        """The invokes after our position (the Python decoder: any entry), with the
        position moved past them."""
        assert self.req is not None
        try:
            r = self.req.read(self.last)
        except TigaError as err:
            self.error("read", err)
            return []
        if r.reset:
            self._went_back()
        self.last = r.last_id
        self._ack_responses(r.first_id)
        out = []
        for e in r.entries:
            env = self._invoke_of(e)
            if env is not None:
                out.append((e, env))
        return out

    def _ack_responses(self, first_request: int) -> None:
        """Let the response log drop responses its client has certainly read.

        A request gone from the request log was trimmed by its client. Our clients
        trim a request (ack-trim) only after reading its response, at their next
        write, usually within milliseconds, and keep an unanswered one at least
        0.5 s; a peer trims requests older than its minimum age, read or not. So a
        request that vanished while younger than ACK_WINDOW proves its response was
        read, and that response may go at our next write whatever its age, which
        keeps the response log short under load. Any other response stays until it
        reaches the minimum age like every entry, and no later one is dropped before
        it (trimming only takes a leading run, and `answered` is in the order of
        the responses)."""
        q = self.answered
        if not q or self.resp is self.req:
            return
        now = time.monotonic_ns()  # CLOCK_MONOTONIC, the entries' clock
        acked = 0
        while q and (first_request == 0 or q[0][0] < first_request):
            _, resp_id, req_ts, resp_ts = q[0]
            if now - req_ts > ACK_WINDOW_NS:  # maybe trimmed by age, maybe unread
                if now - resp_ts < self.min_age_ns:
                    break  # wait until it may go by age anyway
            acked = resp_id
            q.popleft()
        if acked:
            assert self.resp is not None
            self.resp._raw().call(lib.tiga_channel_set_ack, acked)

    def _context(self, rid: str, entry_id: int, media_type: Optional[str]) -> InvokeContext:
        return tuple.__new__(InvokeContext, self._ctx_head + (rid, entry_id, media_type))

    def _failed(self, err: BaseException, rid: str, method: str) -> Tuple[str, int]:
        """A handler's failure: reported, and its response (code -1 and the text)."""
        self.error("invoke", err, request_id=rid, method=method)
        return error_text(err), protocol.CODE_ERROR

    def _write_answer(self, result: str, code: int, rid: str, method: str, entry_id: int,
                      timestamp: int) -> None:
        """Write the response to request ``entry_id``; one the channel cannot take
        becomes a code -1 response that says why (the client would otherwise wait
        out its whole timeout)."""
        resp = self.resp
        assert resp is not None
        try:
            self._respond(resp, rid, result.encode("utf-8", "surrogatepass"), code, entry_id,
                          timestamp)
        except TigaError as err:
            self.error("write", err, request_id=rid, method=method)
            why = f"the server could not write its response: {err}"[:1000]
            try:
                self._respond(resp, rid, why.encode("utf-8", "replace"), protocol.CODE_ERROR,
                              entry_id, timestamp)
            except TigaError as err2:
                self.error("write", err2, request_id=rid, method=method)

    def _respond(self, resp: Channel, rid: str, payload: bytes, code: int, entry_id: int,
                 timestamp: int) -> None:
        with self._respond_lock:  # (the response's id buffer is the lock's too)
            out = self._eid
            check(resp._handle.call(lib.tiga_response_append, rid.encode("utf-8"), payload,
                                    len(payload), code, out))
            if resp is not self.req:
                self.answered.append((entry_id, out[0], timestamp, time.monotonic_ns()))

    def _linked(self) -> bool:
        """Whether this worker's files still have their names. A scavenger (ours or a
        peer's) or a person may delete a client's files while a worker has them open;
        the client then makes new ones, which this worker would never see."""
        try:
            return all(ch.linked() for ch in (self.req, self.resp) if ch is not None)
        except TigaError:
            return False

    def _close_channels(self) -> None:
        for obj in (self.listener, self.req, self.resp):
            if obj is not None:
                obj.close()


_HANDING_OVER = -1  # `_Worker.leader` while the monitor starts a new leader thread


class _Worker(_WorkerBase):
    """Serves one client in threads: the *leader* thread waits on its request
    channel and answers invokes in order, a sync handler inline. When that handler
    has run HANDOFF_AFTER (the server's watchdog notices, see tiga_watchdog) and
    the client may have another invoke under way (max_concurrency), a new thread
    takes over as the leader and goes on reading, while the old one finishes its
    handler, answers and ends. So a fast handler costs no hand-off between threads,
    and a slow one does not hold back the client's next invokes. Async handlers run
    on the server's event loop thread; the leader only starts them."""

    def __init__(self, server: TigaServer, client_id: Optional[str], req: str, resp: str,
                 wd_slot: int = -1) -> None:
        super().__init__(server, client_id, req, resp)
        self._rq = ffi.new("tiga_request *")  # storage reused by every tiga_request_wait
        self.cond = threading.Condition()
        self.leader = 0  # ident of the thread that reads requests now
        self.inline = False  # the leader is in a sync handler
        self.offloaded = 0  # handlers under way apart from the leader's own
        self.wd_slot = wd_slot  # the server's watchdog slot, or -1 (no hand-off)
        self.threads: List[threading.Thread] = []
        self.ok = False
        self.thread = self._new_thread(self._run)

    def _new_thread(self, target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, name=f"tiga-worker-{self.client_id or '-'}",
                             daemon=True)
        self.threads.append(t)
        return t

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until every thread of this client has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.cond:
                alive = [t for t in self.threads if t.is_alive()
                         and t is not threading.current_thread()]
            if not alive:
                return
            for t in alive:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return

    def stop_soon(self) -> None:
        self.stop.set()
        self.wake()

    def _run(self) -> None:
        """The first thread: whatever fails is reported to on_error, never lost with
        the thread. A worker that cannot attach ends, and the server tries that
        client again later, with a growing pause (see TigaServer._worker_ended)."""
        try:
            self.ok = self._open()
            if not self.ok:
                self._end()
                return
            pending = self._attach_or_report()
            self.ready.set()
            with self.cond:
                self.leader = threading.get_ident()
            for entry, invoke in pending:
                self._handle(entry, invoke)
            self._lead()
        except BaseException as e:  # noqa: BLE001 - reported, then the thread ends
            self.error("read", e)
            self.ok = False
            self._end()

    def _promoted(self) -> None:
        """A thread the monitor started: the new leader."""
        try:
            with self.cond:
                self.leader = threading.get_ident()
                self.cond.notify_all()
            self._lead()
        except BaseException as e:  # noqa: BLE001
            self.error("read", e)
            self._end()

    def _still_leading(self, me: int) -> bool:
        """(Rare path.) The monitor is handing over, or did: wait for its decision."""
        with self.cond:
            while self.leader == _HANDING_OVER:
                self.cond.wait()
            return self.leader == me

    def _lead(self) -> None:
        """Wait and read in one C call (it decodes the common entry, an invoke
        envelope, and hands anything else to the Python decoder) while this thread
        is the leader. A leader that was handed over ends (its handler answered);
        one that stops because the worker ends (stop, files deleted) closes it once
        every handler has answered."""
        me = threading.get_ident()
        assert self.listener is not None
        wait = self.server.wait_timeout
        wait_ms = int(wait * 1000)
        spin = self.listener.spin_us
        lh = self.listener._raw()
        rq = self._rq
        stop = self.stop
        while True:
            if self.leader != me and not self._still_leading(me):
                with self.cond:  # handed over: our handler is no longer offloaded
                    self.offloaded -= 1
                    self.cond.notify_all()
                return
            if stop.is_set():
                break
            try:
                try:
                    rc = lh.call(lib.tiga_request_wait, self.last, wait_ms, spin, rq)
                except TigaError as e:  # the listener was closed under us
                    self.error("listener", e)
                    stop.wait(wait)
                    continue
                if rq.reset:
                    self._went_back()
                if rc == 0:
                    status = rq.status
                    if status == lib.TIGA_REQUEST_INVOKE:
                        self._serve_decoded(rq)
                    elif status == lib.TIGA_REQUEST_OTHER:
                        self._drain()
                    else:
                        self.last = max(self.last, rq.last_id)
                elif rc == lib.TIGA_ETIMEDOUT:
                    self.last = max(self.last, rq.last_id)
                    if not self._linked():
                        break  # deleted under us: discovery serves the new files
                elif rc != lib.TIGA_EINTR:  # EINTR: signal handlers ran, wait again
                    try:
                        check(rc)
                    except TigaError as e:
                        self.error("read", e)
                        stop.wait(wait)
            except Exception as e:  # noqa: BLE001 - MemoryError and the like: go on
                self.error("read", e)
                stop.wait(min(wait, 0.1))
        with self.cond:
            self.leader = 0
        self._end()

    def _end(self) -> None:
        """The worker ends: its handlers answer first (close() promises that
        requests already read are answered), then its files close."""
        if self.ended.is_set():
            return
        with self.cond:
            while self.offloaded > 0:
                self.cond.wait(0.1)
        self.ready.set()
        try:
            self._close_channels()
            lib.tiga_request_clear(self._rq)
        finally:
            self.ended.set()
            self.server._worker_ended(self, self.ok)

    def _serve_decoded(self, rq: Any) -> None:
        """Answer the invoke C found and decoded (the data element still MessagePack).
        Kept short: an idle server runs it with cold caches (PROTOCOL-NOTES, "cold
        calls")."""
        try:
            rid = ffi.unpack(rq.id, rq.id_len).decode("utf-8")
            method = ffi.unpack(rq.method, rq.method_len).decode("utf-8")
            data = msgpack.unpackb(ffi.buffer(rq.data, rq.data_len), raw=False,
                                   strict_map_key=False)
        except Exception:  # noqa: BLE001 - the Python decoder reports what is wrong
            self._drain()
            return
        eid = rq.entry_id
        self.last = eid
        self._ack_responses(rq.first_id)
        self._answer(eid, rq.timestamp, protocol.MEDIA_MSGPACK, rid, method, data)

    def _drain(self) -> None:
        """Answer what the Python decoder finds after our position (any entry)."""
        for entry, invoke in self._read_invokes():
            self._handle(entry, invoke)

    def _handle(self, e: Any, env: protocol.Invoke) -> None:
        self._answer(e.id, e.timestamp, e.media_type, env.id, env.method, env.data)

    def _answer(self, entry_id: int, timestamp: int, media_type: Optional[str], rid: str,
                method: str, data: Any) -> None:
        srv = self.server
        ctx = tuple.__new__(InvokeContext, self._ctx_head + (rid, entry_id, media_type))
        if self.offloaded >= srv.max_concurrency:
            self._wait_room()
        slot, wd = self.wd_slot, srv._watchdog
        if slot >= 0:
            lib.tiga_watchdog_begin(wd, slot)
        self.inline = True
        try:
            try:
                result = srv.on_invoke(method, data, ctx)
                code = protocol.CODE_OK
                if result.__class__ is not str:
                    if asyncio.iscoroutine(result):
                        self._start_async(result, rid, method, entry_id, timestamp)
                        return
                    result = protocol.result_to_data(result)
            except Exception as err:  # the handler's failure becomes the response
                result, code = self._failed(err, rid, method)
        finally:
            self.inline = False
            if slot >= 0:
                lib.tiga_watchdog_end(wd, slot)
        self._write_answer(result, code, rid, method, entry_id, timestamp)

    def _wait_room(self) -> None:
        """max_concurrency of this client's handlers are under way elsewhere: wait
        until one answers before starting the next (the stop does not cut in:
        an invoke read is an invoke answered)."""
        with self.cond:
            while self.offloaded >= self.server.max_concurrency:
                self.cond.wait(0.1)

    def _start_async(self, coro: Any, rid: str, method: str, entry_id: int,
                     timestamp: int) -> None:
        """An async handler's coroutine runs on the server's loop thread and is
        answered from there; the leader goes on reading."""
        with self.cond:
            self.offloaded += 1
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self.server._event_loop())
        except BaseException:
            coro.close()
            self._offload_done()
            raise
        fut.add_done_callback(lambda f: self._async_done(f, rid, method, entry_id, timestamp))

    def _async_done(self, fut: Any, rid: str, method: str, entry_id: int,
                    timestamp: int) -> None:
        try:
            try:
                result, code = protocol.result_to_data(fut.result()), protocol.CODE_OK
            except Exception as err:  # noqa: BLE001 - the handler's failure
                result, code = self._failed(err, rid, method)
            self._write_answer(result, code, rid, method, entry_id, timestamp)
        finally:
            self._offload_done()

    def _offload_done(self) -> None:
        with self.cond:
            self.offloaded -= 1
            self.cond.notify_all()

    def hand_over(self) -> None:
        """The monitor (the watchdog found the leader's sync handler running
        long): a new leader thread goes on reading, unless the client has as many
        invokes under way as it may, or the handler ended meanwhile."""
        with self.cond:
            owner = self.leader
            if (owner <= 0 or self.stop.is_set()
                    or self.offloaded + 1 >= self.server.max_concurrency):
                return
            self.leader = _HANDING_OVER
            if not self.inline:  # it answered meanwhile: the leader goes on
                self.leader = owner
                self.cond.notify_all()
                return
            self.offloaded += 1  # the old leader's handler
            t = self._new_thread(self._promoted)
            try:
                t.start()  # (it takes the lead once we let go of the condition)
            except RuntimeError as e:  # no thread to be had: the old leader goes on
                self.threads.remove(t)
                self.offloaded -= 1
                self.leader = owner
                self.cond.notify_all()
                self.error("invoke", e)

    def wake(self) -> None:
        if self.req is not None and not self.req.closed:
            try:
                self.req.signal()
            except TigaError:
                pass


class _LoopWorker(_WorkerBase):
    """Serves one client on the event loop that runs TigaServer.serve(): the
    process's waiter watches its request channel and the loop reads and answers.
    Async handlers run as tasks of that loop, sync ones in the server's thread
    pool; at most max_concurrency of this client's invokes at once."""

    def __init__(self, server: TigaServer, client_id: Optional[str], req: str, resp: str,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(server, client_id, req, resp)
        self.loop = loop
        self._key: Optional[int] = None
        # made on the loop (_start): before 3.10 a Semaphore binds the current
        # thread's loop when it is made, and this one is made by discovery's thread
        self._sem: Optional[asyncio.Semaphore] = None
        self._tasks: Set[asyncio.Task[None]] = set()
        self._draining = False

    # -- any thread
    def start(self) -> None:
        _waiter.call_on(self.loop, self._start)

    def stop_soon(self) -> None:
        self.stop.set()
        _waiter.call_on(self.loop, self._stop)

    def join(self, timeout: Optional[float] = None) -> None:
        self.ended.wait(timeout)

    # -- the loop
    def _start(self) -> None:
        ok = False
        try:
            if self.stop.is_set():
                return
            self._sem = asyncio.Semaphore(self.server.max_concurrency)
            ok = self._open()
            if not ok:
                return
            pending = self._attach_or_report()
            assert self.listener is not None
            self._key = _waiter.get().watch(self.listener._raw(), self._on_news, consume=True)
            for entry, invoke in pending:
                self._dispatch(entry, invoke)
        except BaseException as e:  # noqa: BLE001 - reported; the worker ends
            self.error("read", e)
            ok = False
        finally:
            self.ready.set()
            if not ok:
                self._finish(ok)

    def _on_news(self, err: Optional[BaseException]) -> None:  # the waiter thread
        if err is not None:
            _waiter.call_on(self.loop, self.error, "listener", err)
        elif not self._draining:
            self._draining = True
            _waiter.call_on(self.loop, self._drain)

    def _drain(self) -> None:
        self._draining = False
        if self.stop.is_set():
            return
        try:
            invokes = self._read_invokes()
            if not invokes and not self._linked():
                self._stop()  # deleted under us: discovery serves the new files
                return
            for entry, invoke in invokes:
                self._dispatch(entry, invoke)
        except Exception as e:  # noqa: BLE001 - MemoryError and the like: go on
            self.error("read", e)

    def _dispatch(self, e: Any, env: protocol.Invoke) -> None:
        task = self.loop.create_task(self._serve_one(e.id, e.timestamp, e.media_type, env))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, entry_id: int, timestamp: int, media_type: Optional[str],
                         env: protocol.Invoke) -> None:
        srv = self.server
        rid, method = env.id, env.method
        ctx = self._context(rid, entry_id, media_type)
        assert self._sem is not None
        async with self._sem:
            try:
                if srv._handler_is_async:
                    result = await srv.on_invoke(method, env.data, ctx)
                else:
                    result = await self.loop.run_in_executor(
                        srv._pool(), srv.on_invoke, method, env.data, ctx)
                    if asyncio.iscoroutine(result):
                        result = await result
                result, code = protocol.result_to_data(result), protocol.CODE_OK
            except Exception as err:  # noqa: BLE001 - the handler's failure
                result, code = self._failed(err, rid, method)
            self._write_answer(result, code, rid, method, entry_id, timestamp)

    def _stop(self) -> None:
        """Stop reading; close once the invokes under way have answered."""
        self.stop.set()
        if self._key is not None:
            _waiter.get().unwatch(self._key)
            self._key = None
        if self.ended.is_set():
            return
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            gathered = asyncio.gather(*tasks, return_exceptions=True)
            gathered.add_done_callback(lambda _f: self._finish(True))
        else:
            self._finish(True)

    def _finish(self, ok: bool) -> None:
        if self.ended.is_set():
            return
        try:
            self._close_channels()
        finally:
            self.ended.set()
            self.server._worker_ended(self, ok)

    async def wait_ended(self) -> None:
        while not self.ended.is_set():
            tasks = [t for t in self._tasks if not t.done()]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0.01)


class TigaServer:
    """Serves logical channel ``channel_name``: every client ``K`` that has
    ``C.req.K`` files, and the single channel ``C`` when ``tiga_C_state`` exists.

    ``on_invoke(method, data, context)`` returns the result (str as is, bytes as
    UTF-8, None as "", anything else as JSON) or raises (a code -1 response with the
    message); it may be a coroutine function. ``on_error(error, context)`` hears of
    every failure with its stage; the server stays up.

    Two ways to run it: ``start()`` serves in background threads (a worker per
    client, so a slow handler delays only its own client; async handlers on a
    private event loop thread), and ``await serve()`` / ``async with`` serves on
    the caller's event loop (async handlers share the application's loop and
    objects; sync handlers run in a thread pool).

    ``max_concurrency`` (default 4): how many invokes of one client are handled at
    once. Async handlers of one client run concurrently; in threads, a sync handler
    runs inline and, once it has run HANDOFF_AFTER (2 ms), the client's next invokes
    start in another thread. Responses carry their request id, so they may come in
    any order. 1 answers a client's invokes one after another, as the peers do.
    """

    def __init__(self, channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                 on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                 wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                 stale_after: float = 300.0, write_timeout: float = 5.0,
                 spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                 mode: Optional[int] = None,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> None:
        validate_name(channel_name)
        if not callable(on_invoke):
            raise InvalidType("on_invoke must be callable")
        if on_error is not None and not callable(on_error):
            raise InvalidType("on_error must be callable or None")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise InvalidType("max_concurrency must be an int")
        if not 1 <= max_concurrency <= 1024:
            raise InvalidArgument("max_concurrency must be between 1 and 1024")
        self.channel_name = channel_name
        self.ipc_directory = fs_directory(ipc_directory)
        self.on_invoke = on_invoke
        self.on_error = on_error
        self.discovery_interval = _interval(discovery_interval, "discovery_interval", 0.1)
        self.wait_timeout = _interval(wait_timeout, "wait_timeout", 0.1)
        self.scavenge_interval = _interval(scavenge_interval, "scavenge_interval", 0.05)
        self.stale_after = _interval(stale_after, "stale_after", 0.0)
        self.write_timeout = write_timeout
        self.spin = spin
        self.min_age = min_age
        self.mode = check_mode(mode)
        self.max_concurrency = max_concurrency
        self._handler_is_async = _is_async_callable(on_invoke)
        self._workers: Dict[Optional[str], Any] = {}  # _Worker or _LoopWorker
        # clients whose worker could not attach: (when to try again, failures so far)
        self._retry: Dict[Optional[str], Tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # async handlers (threads)
        self._loop_thread: Optional[threading.Thread] = None
        self._serving_on: Optional[asyncio.AbstractEventLoop] = None  # serve()'s loop
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._closed = False
        self._ended: List[Any] = []  # loop workers that ended while serve() ran
        self._req_prefix = f"tiga_{channel_name}.req."
        self._resp_prefix = f"tiga_{channel_name}.resp."
        # the hand-off watchdog and its monitor thread (threads only; see _Worker)
        self._watchdog: Any = ffi.NULL
        self._wd_free: List[int] = []
        self._wd_workers: Dict[int, _Worker] = {}
        self._mon_thread: Optional[threading.Thread] = None

    # -- lifetime
    def start(self) -> TigaServer:
        """Discover clients now and serve them in background threads."""
        if self._closed:
            raise TigaError("the server is closed")
        if self._serving_on is not None:
            raise TigaError("the server is serving on an event loop already (serve())")
        if self._thread is not None:
            return self
        if self.max_concurrency > 1:
            out = ffi.new("tiga_watchdog **")
            check(lib.tiga_watchdog_open(WATCHDOG_SLOTS, out))
            self._watchdog = ffi.gc(out[0], lib.tiga_watchdog_close)
            self._wd_free = list(range(WATCHDOG_SLOTS - 1, -1, -1))
            self._mon_thread = threading.Thread(target=self._monitor, daemon=True,
                                                name=f"tiga-monitor-{self.channel_name}")
            self._mon_thread.start()
        self._begin()
        return self

    def _begin(self) -> None:
        make_directory(self.ipc_directory, self.mode)
        # The watch goes in before the first scan: a client that appears between
        # the scan and a later watch would wait for the next periodic discovery.
        watch = None
        try:
            watch = DirectoryWatch(self.ipc_directory)
        except TigaError as e:
            self._report(e, ErrorContext("discover", self.channel_name))
        self._scavenge("scavenge-initial")
        self._discover()
        self._thread = threading.Thread(target=self._discovery_loop, args=(watch,), daemon=True,
                                        name=f"tiga-server-{self.channel_name}")
        self._thread.start()

    async def serve(self) -> None:
        """Serve on the running event loop until close() (or until the task running
        it is cancelled, which closes the server). Async handlers run as tasks of
        this loop, sync ones in a thread pool; the process's waiter thread watches
        the request channels, and one thread finds new clients (no thread per
        client)."""
        loop = asyncio.get_running_loop()
        if self._closed:
            raise TigaError("the server is closed")
        if self._thread is not None:
            raise TigaError("the server is serving already")
        self._serving_on = loop
        done = self._serve_done = loop.create_future()
        self._begin()
        try:
            await asyncio.shield(done)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """close() for the event loop serve() runs on: stops serving and waits,
        without blocking the loop, until the invokes under way have answered."""
        loop = self._serving_on
        if loop is None or asyncio.get_running_loop() is not loop:
            await asyncio.get_running_loop().run_in_executor(None, self.close)
            return
        self.close()
        for w in self._ended + list(self._workers.values()):
            await w.wait_ended()
        self._ended.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> TigaServer:
        """Serve on this loop in a background task until the block ends."""
        self._serve_task = asyncio.ensure_future(self.serve())
        await asyncio.sleep(0)  # serve() has begun: clients can be served
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
        await self._serve_task

    def serve_forever(self) -> None:
        """start() and block until close() is called from another thread."""
        self.start()
        while not self._stop.wait(0.2):
            pass

    def close(self) -> None:
        """Stop serving. Requests already read are answered before it returns
        (called on the loop that serve() runs on, it cannot wait there: serve() and
        aclose() return once they are). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._mon_thread is not None:
            lib.tiga_watchdog_kick(self._watchdog)
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.stop_soon()
        loop = self._serving_on
        on_loop = loop is not None and _running_loop() is loop
        if not on_loop:
            for w in workers:
                w.join()
        if self._mon_thread is not None:
            self._mon_thread.join()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join()
            self._loop.close()
        if loop is not None:
            _waiter.call_on(loop, _waiter.settle, self._serve_done, None)
            if not on_loop and self._executor is not None:
                self._executor.shutdown(wait=True)

    shutdown = close

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def __enter__(self) -> TigaServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<TigaServer {self.channel_name!r} in {self.ipc_directory!r} "
                f"clients={len(self._workers)}{' closed' if self._closed else ''}>")

    @property
    def clients(self) -> List[Optional[str]]:
        """The client ids being served (None stands for the single channel)."""
        with self._lock:
            return list(self._workers)

    # -- handlers
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The private loop thread that async handlers run on (threads mode)."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, daemon=True,
                                     name="tiga-server-asyncio")
                t.start()
                self._loop, self._loop_thread = loop, t
            return self._loop

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads sync handlers run in when serving on a loop."""
        if self._executor is None:
            workers = max(self.max_concurrency, min(32, (os.cpu_count() or 1) + 4))
            self._executor = concurrent.futures.ThreadPoolExecutor(
                workers, thread_name_prefix=f"tiga-handler-{self.channel_name}")
        return self._executor

    def _monitor(self) -> None:
        """Waits in the watchdog (in C, without the GIL) for a sync handler that
        runs long, and hands its client's reading to a new thread (_Worker)."""
        wd = self._watchdog
        slot = ffi.new("int32_t *")
        stale_us = int(HANDOFF_AFTER * 1e6)
        while not self._stop.is_set():
            rc = lib.tiga_watchdog_wait(wd, stale_us, 1000, slot)
            if rc != 0 or slot[0] < 0:
                continue
            with self._lock:
                w = self._wd_workers.get(slot[0])
            if w is not None:
                try:
                    w.hand_over()
                except Exception as e:  # noqa: BLE001 - never lose the monitor
                    self._report(e, ErrorContext("invoke", self.channel_name, w.client_id))

    def _report(self, exc: BaseException, ctx: ErrorContext) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc, ctx)
                return
            except Exception:
                log.exception("on_error raised")
        # nobody listens: the log gets it, with the traceback (the package's logger
        # has a NullHandler, so this is silent until the application configures one)
        log.error("%s error (%s, client %s): %s", ctx.stage, self.channel_name, ctx.client_id,
                  exc, exc_info=(type(exc), exc, exc.__traceback__))

    # -- discovery
    def _discovery_loop(self, watch: Optional[DirectoryWatch]) -> None:
        next_scavenge = time.monotonic() + self.scavenge_interval
        next_discovery = time.monotonic() + self.discovery_interval
        while not self._stop.is_set():
            slice_ = min(0.1, max(0.0, next_discovery - time.monotonic()))
            changed = False
            try:
                if watch is not None:
                    changed = watch.wait(slice_)
                else:
                    self._stop.wait(slice_)
            except TigaError as e:
                self._report(e, ErrorContext("discover", self.channel_name))
            if self._stop.is_set():
                break
            now = time.monotonic()
            try:
                if changed or now >= next_discovery:
                    self._discover()
                    next_discovery = now + self.discovery_interval
                if now >= next_scavenge:
                    self._scavenge("scavenge")
                    next_scavenge = now + self.scavenge_interval
            except Exception as e:  # noqa: BLE001 - the loop must live on
                self._report(e, ErrorContext("discover", self.channel_name))
                next_discovery = now + self.discovery_interval
        if watch is not None:
            watch.close()

    def _client_ids(self, stage: str) -> Set[str]:
        """Ids of the clients that have any of their eight files in the directory."""
        ids: Set[str] = set()
        try:
            names = os.listdir(self.ipc_directory)
        except OSError as e:
            self._report(e, ErrorContext(stage, self.channel_name))
            return ids
        for fn in names:
            for prefix in (self._req_prefix, self._resp_prefix):
                if not fn.startswith(prefix):
                    continue
                for suffix in SUFFIXES:
                    if fn.endswith(suffix) and len(fn) > len(prefix) + len(suffix):
                        ids.add(fn[len(prefix):-len(suffix)])
        return ids

    RETRY_FIRST, RETRY_MAX = 0.1, 30.0  # seconds before a failed attach is tried again

    def _worker_ended(self, w: _WorkerBase, ok: bool) -> None:
        """A worker thread ends: stopped on purpose, or it could not attach or serve
        (a full listener table, no file descriptors, no memory). The latter client is
        tried again at a discovery after a pause that doubles with each failure."""
        with self._lock:
            slot = getattr(w, "wd_slot", -1)
            if slot >= 0 and self._wd_workers.get(slot) is w:
                del self._wd_workers[slot]
                self._wd_free.append(slot)
            if self._workers.get(w.client_id) is w:
                del self._workers[w.client_id]
                if self._serving_on is not None:
                    self._ended.append(w)  # aclose() waits for it
            if ok or w.stop.is_set() or self._stop.is_set():
                return
            fails = self._retry.get(w.client_id, (0.0, 0))[1] + 1
            pause = min(self.RETRY_MAX, self.RETRY_FIRST * 2 ** min(fails - 1, 16))
            self._retry[w.client_id] = (time.monotonic() + pause, fails)

    def _discover(self) -> None:
        found: List[Optional[str]] = []
        try:
            names = os.listdir(self.ipc_directory)
        except OSError as e:
            self._report(e, ErrorContext("discover", self.channel_name))
            return
        for fn in names:
            if fn.startswith(self._req_prefix) and fn.endswith("_state"):
                cid = fn[len(self._req_prefix):-len("_state")]
                try:
                    validate_name(cid, "client id")
                    validate_name(request_name(self.channel_name, cid))
                except TigaError:
                    continue
                found.append(cid)
        if f"tiga_{self.channel_name}_state" in names:
            found.append(None)
        now = time.monotonic()
        with self._lock:
            if self._stop.is_set():
                return
            for client in found:
                if client in self._workers:
                    continue
                retry = self._retry.get(client)
                if retry is not None and now < retry[0]:
                    continue
                if client is None:
                    req = resp = self.channel_name
                else:
                    req = request_name(self.channel_name, client)
                    resp = response_name(self.channel_name, client)
                w = self._new_worker(client, req, resp)
                self._workers[client] = w
                w.start()

    def _new_worker(self, client: Optional[str], req: str, resp: str) -> Any:
        """(Under _lock.) A worker for the way this server runs."""
        loop = self._serving_on
        if loop is not None:
            return _LoopWorker(self, client, req, resp, loop)
        slot = self._wd_free.pop() if self._wd_free else -1  # none: no hand-off
        w = _Worker(self, client, req, resp, slot)
        if slot >= 0:
            self._wd_workers[slot] = w
        return w

    # -- scavenging
    def _files(self, cid: str) -> List[str]:
        base = os.path.join(self.ipc_directory, "tiga_")
        return [f"{base}{name}{s}" for name in (request_name(self.channel_name, cid),
                                                response_name(self.channel_name, cid))
                for s in SUFFIXES]

    def _has_listener(self, name: str) -> bool:
        if not os.path.exists(os.path.join(self.ipc_directory, f"tiga_{name}_notify")):
            return False
        with Channel(name, ipc_directory=self.ipc_directory) as ch:
            return ch.live_listeners() > 0

    def _scavenge(self, stage: str) -> None:
        ids = self._client_ids(stage)
        with self._lock:
            tracked = {c for c in self._workers if c is not None}
        for cid in ids | tracked:
            try:
                validate_name(cid, "client id")
                files = self._files(cid)
                if not any(os.path.exists(f) for f in files):
                    if cid in tracked:
                        self._stop_worker(cid)
                    continue
                if self._idle(cid, files, cid in tracked):
                    self._remove_if_idle(cid, files, cid in tracked)
            except Exception as e:  # noqa: BLE001 - reported; the next client is looked at
                self._report(e, ErrorContext(stage, self.channel_name, cid))

    def _idle(self, cid: str, files: List[str], tracked: bool, stale: bool = True) -> bool:
        """Stale files and no live listener where the client keeps one (PROTOCOL
        section 6): the request channel counts too for a client we do not serve."""
        mtimes = [os.stat(f).st_mtime for f in files if os.path.exists(f)]
        if stale and mtimes and time.time() - max(mtimes) < self.stale_after:
            return False
        if self._has_listener(response_name(self.channel_name, cid)):
            return False
        return tracked or not self._has_listener(request_name(self.channel_name, cid))

    def _remove_if_idle(self, cid: str, files: List[str], tracked: bool) -> None:
        """Delete an idle client's files without racing a client that opens the same
        id again: the check and the unlink run under the lock of its request state
        file, which a client holds while it makes sure that the files it opened (with
        its listener registered) still have their names. So either the client's
        listener is seen here and nothing is deleted, or the client finds its files
        deleted and opens new ones."""
        w = self._stop_worker(cid)  # our own listener must not count as the client's
        with state_lock(self.ipc_directory, request_name(self.channel_name, cid),
                        wait=0.5) as held:
            if not held:
                if os.path.exists(files[0]):
                    return  # someone holds the lock (appending): not idle after all
            # only the listeners again: stopping our worker touched the notify file
            elif not self._idle(cid, files, tracked, stale=False):
                return  # the client came back; discovery serves it again
            # the request state file (the lock's) goes last: until it is gone, a client
            # that opens meanwhile waits for this lock and then finds its files deleted;
            # were it first, a client could make a new one and go on while the others
            # were still being deleted under it
            for f in files[1:] + files[:1]:
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass
        if w is not None:
            w.join()
        log.info("scavenged client %s of %s", cid, self.channel_name)

    def _stop_worker(self, cid: str) -> Any:
        with self._lock:
            w = self._workers.pop(cid, None)
            self._retry.pop(cid, None)
        if w is not None:
            w.stop_soon()
        return w


def create_tiga_server(channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                       on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                       wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                       stale_after: float = 300.0, write_timeout: float = 5.0,
                       spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                       mode: Optional[int] = None,
                       max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> TigaServer:
    """A server, not started yet: call start(), use it as a context manager, or
    ``await server.serve()`` / ``async with server`` on an event loop. The options
    are TigaServer's (a misspelt one is a TypeError)."""
    return TigaServer(channel_name, ipc_directory, on_invoke, on_error, discovery_interval,
                      wait_timeout, scavenge_interval=scavenge_interval,
                      stale_after=stale_after, write_timeout=write_timeout, spin=spin,
                      min_age=min_age, mode=mode, max_concurrency=max_concurrency)


def start_tiga_server(channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                      on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                      wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                      stale_after: float = 300.0, write_timeout: float = 5.0,
                      spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                      mode: Optional[int] = None,
                      max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> TigaServer:
    """A server, started in background threads: it serves until close(). The
    options are TigaServer's."""
    return create_tiga_server(channel_name, ipc_directory, on_invoke, on_error,
                              discovery_interval, wait_timeout,
                              scavenge_interval=scavenge_interval, stale_after=stale_after,
                              write_timeout=write_timeout, spin=spin, min_age=min_age,
                              mode=mode, max_concurrency=max_concurrency).start()
