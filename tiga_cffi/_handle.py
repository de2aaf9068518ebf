"""Ownership of one C handle shared by several threads: close() waits for no one,
it only makes sure the handle is freed once the last call using it returns."""

from __future__ import annotations

import threading
from typing import Any, Callable

from ._errors import ChannelClosed
from ._tiga import ffi


class OwnedHandle:
    __slots__ = ("_h", "_guard", "_users", "_closing", "_what")

    def __init__(self, raw: Any, destructor: Callable[[Any], None], what: str) -> None:
        self._h = ffi.gc(raw, destructor)
        self._guard = threading.Lock()
        self._users = 0
        self._closing = False
        self._what = what

    @property
    def closed(self) -> bool:
        return self._closing

    # acquire/release take the lock with plain calls, not `with`: they are on every
    # hot path (two `with` blocks cost as much again as the C call they guard).
    def acquire(self) -> Any:
        guard = self._guard
        guard.acquire()
        if self._closing:
            guard.release()
            raise ChannelClosed(f"{self._what} is closed")
        self._users += 1
        h = self._h
        guard.release()
        return h

    def release(self) -> None:
        guard = self._guard
        guard.acquire()
        self._users -= 1
        if self._closing and self._users == 0:
            self._free()  # ffi.release: does not raise
        guard.release()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(handle, *args) with the handle held open for the duration of the call."""
        h = self.acquire()
        try:
            return fn(h, *args)
        finally:
            self.release()

    def call_with(self, other: OwnedHandle, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(handle, other's handle, *args) with both held open for the call."""
        h = self.acquire()
        try:
            o = other.acquire()
            try:
                return fn(h, o, *args)
            finally:
                other.release()
        finally:
            self.release()

    def close(self) -> None:
        with self._guard:
            if self._closing:
                return
            self._closing = True
            if self._users == 0:
                self._free()

    def _free(self) -> None:
        h, self._h = self._h, None
        if h is not None:
            ffi.release(h)
