"""The Tiga server: discovery of clients, one worker per client, handlers,
responses, scavenging of dead clients (PROTOCOL section 6)."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Set, Tuple

import msgpack

from . import protocol
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


def _interval(value: Any, what: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds")
    if value <= 0:
        raise InvalidArgument(f"{what} must be positive")
    return max(minimum, float(value))


class _Worker:
    """Serves one client: waits on its request channel, answers invokes in order."""

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
        # answered requests whose responses may still be unread:
        # (request entry id, response entry id, request timestamp, response timestamp)
        self.answered: Deque[Tuple[int, int, int, int]] = collections.deque()
        ma = server.min_age if server.min_age is not None else DEFAULT_MIN_AGE
        self.min_age_ns = int(ma * 1e9)
        self._eid = ffi.new("int64_t *")
        self._rq = ffi.new("tiga_request *")  # storage reused by every tiga_request_wait
        self._ctx_head = (server.channel_name, client_id, req, resp, server.ipc_directory)
        self.thread = threading.Thread(target=self._run, name=f"tiga-worker-{client_id or '-'}",
                                       daemon=True)

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
        # Requests are answered in id order: everything up to the newest answered
        # request was handled (it stays retained until a later response write).
        start = 0
        for e, env in invokes:
            if env.id == newest:
                start = e.id
        self.last = reqs.last_id
        return [(e, env) for e, env in invokes if e.id > start and env.id not in answered]

    def _invoke_of(self, e: Any) -> Optional[protocol.Invoke]:
        if not protocol.is_envelope_media(e.media_type):
            return None
        try:
            env = protocol.decode_envelope(e.message, e.media_type)
        except protocol.ProtocolError as err:
            self.error("read", err)
            return None
        return env if isinstance(env, protocol.Invoke) else None

    def _run(self) -> None:
        """The worker thread: whatever fails is reported to on_error, never lost with
        the thread. A worker that cannot attach ends, and the server tries that client
        again later, with a growing pause (see TigaServer._worker_ended)."""
        ok = False
        try:
            ok = self._open()
            if ok:
                self._serve()
        except BaseException as e:  # noqa: BLE001 - reported, then the thread ends
            self.error("read", e)
            ok = False
        finally:
            self.ready.set()
            try:
                self.close()
            finally:
                self.server._worker_ended(self, ok)

    def _serve(self) -> None:
        try:
            pending = self._attach()
        except Exception as err:  # noqa: BLE001 - reported; serving goes on from the log's end
            self.error("read", err)
            pending = []
        self.ready.set()
        for entry, invoke in pending:
            self._handle(entry, invoke)
        assert self.listener is not None
        wait = self.server.wait_timeout
        wait_ms = int(wait * 1000)
        spin = self.listener.spin_us
        lh = self.listener._raw()
        rq = self._rq
        while not self.stop.is_set():
            # Wait and read in one C call; it decodes the common entry (an invoke
            # envelope) and hands anything else to drain(), the Python decoder.
            try:
                try:
                    rc = lh.call(lib.tiga_request_wait, self.last, wait_ms, spin, rq)
                except TigaError as e:  # the listener was closed under us
                    self.error("listener", e)
                    self.stop.wait(wait)
                    continue
                if rq.reset:
                    self._went_back()
                if rc == 0:
                    status = rq.status
                    if status == lib.TIGA_REQUEST_INVOKE:
                        self._serve_decoded(rq)
                    elif status == lib.TIGA_REQUEST_OTHER:
                        self.drain()
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
                        self.stop.wait(wait)
            except Exception as e:  # noqa: BLE001 - MemoryError and the like: go on
                self.error("read", e)
                self.stop.wait(min(wait, 0.1))

    def _linked(self) -> bool:
        """Whether this worker's files still have their names. A scavenger (ours or a
        peer's) or a person may delete a client's files while a worker has them open;
        the client then makes new ones, which this worker would never see."""
        try:
            return all(ch.linked() for ch in (self.req, self.resp) if ch is not None)
        except TigaError:
            return False

    def _serve_decoded(self, rq: Any) -> None:
        """Answer the invoke C found and decoded (the data element still MessagePack).
        Kept short: an idle server runs it with cold caches (PROTOCOL-NOTES, "cold
        calls")."""
        try:
            rid = ffi.unpack(rq.id, rq.id_len).decode("utf-8")
            method = ffi.unpack(rq.method, rq.method_len).decode("utf-8")
            data = msgpack.unpackb(ffi.buffer(rq.data, rq.data_len), raw=False,
                                   strict_map_key=False)
        except Exception:  # noqa: BLE001 - drain()'s full decoder reports what is wrong
            self.drain()
            return
        eid = rq.entry_id
        self.last = eid
        self._ack_responses(rq.first_id)
        self._answer(eid, rq.timestamp, protocol.MEDIA_MSGPACK, rid, method, data)

    def _went_back(self) -> None:
        """The request log's last id fell below our position: the client (or a peer
        that lost its data; the Node addon restarts ids at 1 after a log it could not
        read) began a new log. Its entries are new requests, read from its start; the
        answered requests we kept for ack-trim are gone with the old log."""
        self.last = 0
        self.answered.clear()

    def drain(self) -> None:
        assert self.req is not None
        try:
            r = self.req.read(self.last)
        except TigaError as err:
            self.error("read", err)
            return
        if r.reset:
            self._went_back()
        self.last = r.last_id
        self._ack_responses(r.first_id)
        for e in r.entries:
            env = self._invoke_of(e)
            if env is not None:
                self._handle(e, env)

    def _ack_responses(self, first_request: int) -> None:
        """Let the response log drop responses its client has certainly read.

        A request gone from the request log was trimmed by its client. Our clients
        trim a request (ack-trim) only after reading its response, at their next
        write, usually within milliseconds; a peer trims requests older than its
        minimum age, read or not. So a request that vanished while younger than
        ACK_WINDOW proves its response was read, and that response may go at our
        next write whatever its age, which keeps the response log short under load.
        Any other response stays until it reaches the minimum age like every entry,
        and no later one is dropped before it (trimming only takes a leading run)."""
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

    def _handle(self, e: Any, env: protocol.Invoke) -> None:
        self._answer(e.id, e.timestamp, e.media_type, env.id, env.method, env.data)

    def _answer(self, entry_id: int, timestamp: int, media_type: Optional[str], rid: str,
                method: str, data: Any) -> None:
        ctx = tuple.__new__(InvokeContext, self._ctx_head + (rid, entry_id, media_type))
        try:
            result = self.server.on_invoke(method, data, ctx)
            if result.__class__ is not str:
                if asyncio.iscoroutine(result):
                    result = self.server._await(result)
                result = protocol.result_to_data(result)
            code = protocol.CODE_OK
        except Exception as err:  # the handler's failure becomes the response
            result, code = error_text(err), protocol.CODE_ERROR
            self.error("invoke", err, request_id=rid, method=method)
        resp = self.resp
        assert resp is not None
        try:
            self._respond(resp, rid, result.encode("utf-8", "surrogatepass"), code, entry_id,
                          timestamp)
        except TigaError as err:
            self.error("write", err, request_id=rid, method=method)
            # The client would wait out its whole timeout for an answer that never
            # comes: tell it why instead, in a response that fits (code -1).
            why = f"the server could not write its response: {err}"[:1000]
            try:
                self._respond(resp, rid, why.encode("utf-8", "replace"), protocol.CODE_ERROR,
                              entry_id, timestamp)
            except TigaError as err2:
                self.error("write", err2, request_id=rid, method=method)

    def _respond(self, resp: Channel, rid: str, payload: bytes, code: int, entry_id: int,
                 timestamp: int) -> None:
        out = self._eid
        check(resp._handle.call(lib.tiga_response_append, rid.encode("utf-8"), payload,
                                len(payload), code, out))
        if resp is not self.req:
            self.answered.append((entry_id, out[0], timestamp, time.monotonic_ns()))

    def wake(self) -> None:
        if self.req is not None and not self.req.closed:
            try:
                self.req.signal()
            except TigaError:
                pass

    def close(self) -> None:
        for obj in (self.listener, self.req, self.resp):
            if obj is not None:
                obj.close()
        lib.tiga_request_clear(self._rq)


class TigaServer:
    """Serves logical channel ``channel_name``: every client ``K`` that has
    ``C.req.K`` files, and the single channel ``C`` when ``tiga_C_state`` exists.

    ``on_invoke(method, data, context)`` returns the result (str as is, bytes as
    UTF-8, None as "", anything else as JSON) or raises (a code -1 response with the
    message); it may be a coroutine function. ``on_error(error, context)`` hears of
    every failure with its stage; the server stays up. Each client has its own
    worker thread, so a slow handler delays only its own client.
    """

    def __init__(self, channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                 on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                 wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                 stale_after: float = 300.0, write_timeout: float = 5.0,
                 spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                 mode: Optional[int] = None) -> None:
        validate_name(channel_name)
        if not callable(on_invoke):
            raise InvalidType("on_invoke must be callable")
        if on_error is not None and not callable(on_error):
            raise InvalidType("on_error must be callable or None")
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
        self._workers: Dict[Optional[str], _Worker] = {}
        # clients whose worker could not attach: (when to try again, failures so far)
        self._retry: Dict[Optional[str], Tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._closed = False
        self._req_prefix = f"tiga_{channel_name}.req."
        self._resp_prefix = f"tiga_{channel_name}.resp."

    # -- lifetime
    def start(self) -> TigaServer:
        """Discover clients now and serve them in background threads."""
        if self._closed:
            raise TigaError("the server is closed")
        if self._thread is not None:
            return self
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
        return self

    def serve_forever(self) -> None:
        """start() and block until close() is called from another thread."""
        self.start()
        while not self._stop.wait(0.2):
            pass

    def close(self) -> None:
        """Stop serving. Requests already read are answered before it returns.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.stop.set()
            w.wake()
        for w in workers:
            w.thread.join()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join()
            self._loop.close()

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
    def _await(self, coro: Any) -> Any:
        """Run a coroutine handler's result on the server's event loop thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop()).result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, daemon=True,
                                     name="tiga-server-asyncio")
                t.start()
                self._loop, self._loop_thread = loop, t
            return self._loop

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

    def _worker_ended(self, w: _Worker, ok: bool) -> None:
        """A worker thread ends: stopped on purpose, or it could not attach or serve
        (a full listener table, no file descriptors, no memory). The latter client is
        tried again at a discovery after a pause that doubles with each failure."""
        with self._lock:
            if self._workers.get(w.client_id) is w:
                del self._workers[w.client_id]
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
                w = _Worker(self, client, req, resp)
                self._workers[client] = w
                w.thread.start()

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
            w.thread.join()
        log.info("scavenged client %s of %s", cid, self.channel_name)

    def _stop_worker(self, cid: str) -> Optional[_Worker]:
        with self._lock:
            w = self._workers.pop(cid, None)
            self._retry.pop(cid, None)
        if w is not None:
            w.stop.set()
            w.wake()
        return w


def create_tiga_server(channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                       on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                       wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                       stale_after: float = 300.0, write_timeout: float = 5.0,
                       spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                       mode: Optional[int] = None) -> TigaServer:
    """A server, not started yet: call start() or use it as a context manager.
    The options are TigaServer's (a misspelt one is a TypeError)."""
    return TigaServer(channel_name, ipc_directory, on_invoke, on_error, discovery_interval,
                      wait_timeout, scavenge_interval=scavenge_interval,
                      stale_after=stale_after, write_timeout=write_timeout, spin=spin,
                      min_age=min_age, mode=mode)


def start_tiga_server(channel_name: str, ipc_directory: PathLike, on_invoke: Handler,
                      on_error: Optional[ErrorHandler] = None, discovery_interval: float = 1.0,
                      wait_timeout: float = 1.0, *, scavenge_interval: float = 30.0,
                      stale_after: float = 300.0, write_timeout: float = 5.0,
                      spin: float = DEFAULT_SPIN, min_age: Optional[float] = None,
                      mode: Optional[int] = None) -> TigaServer:
    """A server, started: it serves until close(). The options are TigaServer's."""
    return create_tiga_server(channel_name, ipc_directory, on_invoke, on_error,
                              discovery_interval, wait_timeout,
                              scavenge_interval=scavenge_interval, stale_after=stale_after,
                              write_timeout=write_timeout, spin=spin, min_age=min_age,
                              mode=mode).start()
