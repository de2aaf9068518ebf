"""A stand-in for the Node addon's Linux build, from the facts PROTOCOL.md records.

Written from the contract and the addon's observable behaviour, not from its code:
- opening a channel creates missing files and grows data files smaller than 1 MiB to
  1 MiB (never shrinks); the capacity is the size of data_0;
- a read that fails (checksum, a logbook it cannot parse) is "no data", and the next
  write starts from an empty logbook, so ids restart at 1;
- it tells the enveloped form without the integer check: a plain logbook of exactly
  two entries is taken for an envelope and fails to parse;
- it writes back the form and schema version it read, never trims by age and drops
  the oldest entries until the logbook fits;
- its timestamps are nanoseconds since its own start, not CLOCK_MONOTONIC;
- on Linux it registers no listener slot and signals nobody: its server polls, its
  invoke writes at once and polls for the answer.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import msgpack

import tiga_cffi

MIB = 1 << 20
MEDIA = "application/x-msgpack"


class NodePeer:
    def __init__(self, directory: Any) -> None:
        self.dir = Path(directory)
        self.instance = str(uuid.uuid4())
        self._t0 = time.monotonic_ns()

    def clock(self) -> int:
        return time.monotonic_ns() - self._t0 + 1  # ns since this peer started

    # -- files
    def _files(self, name: str) -> Tuple[Path, Path, Path, Path]:
        base = self.dir / f"tiga_{name}"
        return tuple(Path(f"{base}{s}") for s in ("_state", "_data_0", "_data_1", "_notify"))

    def open(self, name: str) -> int:
        """Open-or-create the four files as the addon does; returns the capacity."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state, d0, d1, notify = self._files(name)
        for path, size in ((state, 16), (notify, 3072)):
            with open(path, "ab"):
                pass
            if path.stat().st_size != size:
                os.truncate(path, size)
        for path in (d0, d1):
            with open(path, "ab"):
                pass
            if path.stat().st_size < MIB:
                os.truncate(path, MIB)
        return d0.stat().st_size

    def _version(self, name: str) -> int:
        return struct.unpack("<Q", self._files(name)[0].read_bytes()[:8])[0]

    def read_logbook(self, name: str) -> Tuple[Optional[Tuple[int, list]], Optional[int]]:
        """((last_id, entries), schema), or (None, None) for "no data"."""
        capacity = self.open(name)
        v = self._version(name)
        if v == 0:
            return (0, []), None
        idx, size = v & 1, (v >> 1) & ((1 << 39) - 1)
        if size > capacity:
            return None, None
        payload = self._files(name)[1 + idx].read_bytes()[:size]
        if tiga_cffi.wyhash(payload) & 0xFFFFFF != v >> 40:
            return None, None
        return parse_logbook(payload)

    def read(self, name: str, after: int = 0) -> List[list]:
        """The entries with id > after (what tigaRead hands out), or [] on no data."""
        book, _ = self.read_logbook(name)
        if book is None:
            return []
        return [e for e in book[1] if e[0] > after]

    def write(self, name: str, message: bytes, media_type: Optional[str] = None) -> int:
        book, schema = self.read_logbook(name)
        if book is None:
            book, schema = (0, []), None  # the failed read: start again from id 1
        last_id, entries = book
        last_id += 1
        entries = entries + [[last_id, self.instance, self.clock(), message, media_type]]
        capacity = self._files(name)[1].stat().st_size
        payload = serialize(last_id, entries, schema)
        while len(payload) > capacity and entries:
            entries = entries[1:]  # the oldest go, read or not
            payload = serialize(last_id, entries, schema)
        self._publish(name, payload)
        return last_id

    def reset(self, name: str) -> None:
        """What the addon does after a read it could not use: an empty logbook."""
        self._publish(name, serialize(0, [], None))

    def _publish(self, name: str, payload: bytes) -> None:
        """The double buffer's write: the other buffer, then the version word. No lock
        (the addon takes none across processes); this stand-in also skips the reader
        counters, since its tests never have it write while someone reads."""
        v = self._version(name)
        nxt = 0 if v == 0 else 1 - (v & 1)
        with open(self._files(name)[1 + nxt], "r+b") as f:
            f.write(payload)
        word = nxt | (len(payload) << 1) | ((tiga_cffi.wyhash(payload) & 0xFFFFFF) << 40)
        with open(self._files(name)[0], "r+b") as f:
            f.write(struct.pack("<Q", word))

    # -- invoke and server
    def invoke(self, channel: str, client_id: str, method: str, data: str,
               timeout: float = 5.0) -> str:
        """tigaInvoke on Linux: no listener slot, no wait for the server, polls."""
        req, resp = f"{channel}.req.{client_id}", f"{channel}.resp.{client_id}"
        self.open(req)
        self.open(resp)
        book, _ = self.read_logbook(resp)
        start = book[0] if book is not None else 0
        rid = str(uuid.uuid4())
        self.write(req, msgpack.packb([rid, 1, method, data]), MEDIA)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.read(resp, start):
                if e[4] != MEDIA:
                    continue
                env = msgpack.unpackb(e[3], raw=False)
                if env[1] == 2 and env[0] == rid and isinstance(env[2], str):
                    if env[3] < 0:
                        raise RuntimeError(env[2])
                    return env[2]
            time.sleep(0.002)
        raise TimeoutError(f"no response to {method} on {resp}")


class PollingServer:
    """The addon's server on Linux: discovers C.req.K by listing, registers no
    listener, polls each request log from id 0 and answers invokes uncompressed."""

    def __init__(self, peer: NodePeer, channel: str,
                 handler: Callable[[str, Any], str], interval: float = 0.005) -> None:
        self.peer, self.channel, self.handler, self.interval = peer, channel, handler, interval
        self.last: Dict[str, int] = {}
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="node-server")

    def __enter__(self) -> PollingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        prefix, suffix = f"tiga_{self.channel}.req.", "_state"
        while not self._stop.wait(self.interval):
            for f in list(self.peer.dir.iterdir()):
                if not (f.name.startswith(prefix) and f.name.endswith(suffix)):
                    continue
                cid = f.name[len(prefix):-len(suffix)]
                req, resp = f"{self.channel}.req.{cid}", f"{self.channel}.resp.{cid}"
                for e in self.peer.read(req, self.last.get(cid, 0)):
                    self.last[cid] = e[0]
                    if e[4] != MEDIA:
                        continue
                    env = msgpack.unpackb(e[3], raw=False)
                    if env[1] != 1:
                        continue
                    out = self.handler(env[2], env[3])
                    self.answered += 1  # before the answer: a client that has it sees the count
                    self.peer.write(resp, msgpack.packb([env[0], 2, out, 0]), MEDIA)


def parse_logbook(payload: bytes) -> Tuple[Optional[Tuple[int, list]], Optional[int]]:
    """The addon's parse: envelope if the second element is an array of two whose
    second element is an array (no integer check); None on any failure."""
    try:
        value = msgpack.unpackb(payload, raw=False)
    except Exception:  # noqa: BLE001 - any failure is "no data" to the addon
        return None, None
    if not isinstance(value, list) or len(value) != 2:
        return None, None
    schema = None
    if isinstance(value[1], list) and len(value[1]) == 2 and isinstance(value[1][1], list):
        if not isinstance(value[0], int):
            return None, None
        schema, value = value[0], value[1]
    last_id, raw = value
    if not isinstance(last_id, int) or not isinstance(raw, list):
        return None, None
    entries = []
    for e in raw:
        if not isinstance(e, list) or len(e) < 4 or not isinstance(e[0], int):
            return None, None
        if not isinstance(e[1], str) or not isinstance(e[2], int):
            return None, None
        try:
            uuid.UUID(e[1])
        except ValueError:
            return None, None
        if not isinstance(e[3], bytes):
            return None, None
        entries.append([e[0], e[1], e[2], e[3], e[4] if len(e) > 4 else None])
    return (last_id, entries), schema


def serialize(last_id: int, entries: list, schema: Optional[int]) -> bytes:
    book = [last_id, entries]
    return msgpack.packb(book if schema is None else [schema, book], use_bin_type=True)
