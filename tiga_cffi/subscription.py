"""Subscriptions: the entries of a channel as they arrive, by iteration (sync and
async), with entries that were trimmed before they were read reported, not
hidden."""

from __future__ import annotations

import collections
import time
from typing import Any, Deque, List, Optional

from ._errors import EntriesMissed, InvalidArgument, check
from ._handle import OwnedHandle
from ._tiga import ffi, lib
from .channel import Channel, Entry, _check_last_id
from .notify import DEFAULT_SPIN, NotificationListener, _deadline

MISSED_POLICIES = ("raise", "count")


class Subscription:
    """Follow a channel: ``for entry in sub`` blocks for each next entry, ``async for
    entry in sub`` awaits it (through the process's waiter thread, no thread per
    subscription); ``get(timeout)`` / ``await get_async(timeout)`` return None when
    nothing came in time, and ``poll()`` takes what is there now.

    ``last_id``: start after this id; None (the default) starts after the entries
    written so far, 0 with the oldest one retained. The subscription holds a
    listener slot on the channel (one of 128) until close().

    Entries trimmed before the subscription read them (it was slower than the
    writers' ``min_age``): with ``missed="raise"`` (the default) the next step
    raises EntriesMissed, saying how many and where, and the one after goes on with
    the entries after the gap; with ``missed="count"`` they are only counted in
    ``missed``. ``resets`` counts logs that went back (a peer reset the channel):
    the subscription then goes on from the new log's start.

    ``durable=True`` declares the subscriber: it publishes the last id it has read
    in the channel's subscribers file (``tiga_<name>_subs``, ours; the peers never
    open it), and our writers keep every entry it has not read yet, whatever its
    age, up to the channel's capacity (a writer then waits within its
    ``write_timeout``, or raises ChannelFull), so it misses nothing while the
    capacity holds. Entries all declared subscribers have read go after the
    writer's ``read_min_age`` (min_age by default; 0 when every reader declares
    itself). A subscriber whose process dies is let go of within 0.25 s, or at
    once when a write would not fit. 128 declared subscribers per channel at most.
    Positions are published as entries are read into this object (one store per
    read), so an entry the process took in is never kept back for it.
    """

    def __init__(self, channel: Channel, last_id: Optional[int] = None, *,
                 missed: str = "raise", durable: bool = False,
                 spin: float = DEFAULT_SPIN) -> None:
        if missed not in MISSED_POLICIES:
            raise InvalidArgument(f"missed must be one of {MISSED_POLICIES}, not {missed!r}")
        if last_id is not None:
            _check_last_id(last_id)
        self.channel = channel
        self.policy = missed
        self.durable = bool(durable)
        self.last_id: int = channel.info().last_id if last_id is None else last_id
        self.missed = 0
        self.resets = 0
        self._pending: Deque[Entry] = collections.deque()
        self._sub: Optional[OwnedHandle] = None
        self._published = -1
        if self.durable:
            # the declaration first: writers notice it when the listener (below)
            # takes its slot, and keep from our position on
            self._sub = OwnedHandle(self._declare, lib.tiga_subscriber_close,
                                    f"subscriber of {channel.name!r}")
            self._published = self.last_id
        try:
            self._listener = NotificationListener(channel.name,
                                                  ipc_directory=channel.ipc_directory, spin=spin)
        except BaseException:
            if self._sub is not None:
                self._sub.close()
            raise

    def _publish(self, last_id: int) -> None:
        """The entries up to last_id are in this process: writers may let them go."""
        if last_id != self._published:
            check(self._sub.call(lib.tiga_subscriber_set, last_id))  # type: ignore[union-attr]
            self._published = last_id

    def _declare(self) -> Any:
        out = ffi.new("tiga_subscriber **")
        pos = self.last_id
        check(self.channel._raw().call(lambda h: lib.tiga_subscriber_open(h, pos, out)))
        return out[0]

    @property
    def slot(self) -> int:
        """The declared subscriber's slot in the subscribers file (-1: not durable)."""
        return -1 if self._sub is None else int(self._sub.call(lib.tiga_subscriber_slot))

    # -- taking entries
    def _fill(self) -> None:
        """Read what came after last_id into the pending entries; raise EntriesMissed
        first when ids were trimmed before we read them (policy "raise")."""
        r = self.channel._read(self.last_id, None if self._sub is None else self._publish)
        before = self.last_id
        self.last_id = r.last_id
        self._pending.extend(r.entries)
        if r.reset:
            self.resets += 1
        if r.missed:
            self.missed += r.missed
            if self.policy == "raise":
                first = r.entries[0].id if r.entries else r.last_id + 1
                raise EntriesMissed(r.missed, before if not r.reset else 0, first,
                                    self.channel.name)

    def poll(self) -> List[Entry]:
        """The entries that are there now (maybe none), without waiting."""
        if not self._pending:
            self._fill()
        out = list(self._pending)
        self._pending.clear()
        return out

    def _take(self) -> Optional[Entry]:
        """The next entry there is now, or None."""
        if not self._pending:
            self._fill()
        return self._pending.popleft() if self._pending else None

    def get(self, timeout: Optional[float] = None) -> Optional[Entry]:
        """The next entry, waiting (GIL released) up to ``timeout`` seconds (None:
        for ever); None when nothing came in time."""
        deadline = _deadline(timeout)
        while True:
            entry = self._take()
            if entry is not None:
                return entry
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._listener.wait(left)

    async def get_async(self, timeout: Optional[float] = None) -> Optional[Entry]:
        """``get`` for asyncio: awaits the next entry without blocking the loop."""
        deadline = _deadline(timeout)
        while True:
            entry = self._take()
            if entry is not None:
                return entry
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            await self._listener.wait_async(left)

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Entry:
        entry = self.get()
        assert entry is not None  # (no timeout)
        return entry

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Entry:
        entry = await self.get_async()
        assert entry is not None
        return entry

    # -- lifetime
    def close(self) -> None:
        """Give the listener slot back, and the subscriber slot of a durable one (the
        channel stays open: it is the caller's)."""
        self._listener.close()
        if self._sub is not None:
            self._sub.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._listener.closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Subscription {self.channel.name!r} last_id={self.last_id} "
                f"missed={self.missed}{' closed' if self.closed else ''}>")
