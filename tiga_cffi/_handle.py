"""Ownership of one C handle shared by several threads: close() waits for no one,
it only makes sure the handle is freed once the last call using it returns.

A handle also follows fork(): in a child its first use opens a fresh C handle (the
parent's may be locked by a thread that does not exist in the child) and frees the
child's copy of the old one, which touches nothing of the parent's (the C library
unregisters a listener slot only in the process that registered it)."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from ._errors import ChannelClosed
from ._tiga import ffi

_generation = 0  # bumped in every forked child
_reopen_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _generation, _reopen_lock
    _generation += 1
    _reopen_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class OwnedHandle:
    __slots__ = ("_h", "_guard", "_users", "_closing", "_what", "_open", "_destructor", "_gen")

    def __init__(self, open_fn: Callable[[], Any], destructor: Callable[[Any], None],
                 what: str) -> None:
        """open_fn() opens the C handle (raising TigaError); it is called again to
        reopen it in a forked child."""
        self._open = open_fn
        self._destructor = destructor
        self._h = ffi.gc(open_fn(), destructor)
        self._guard = threading.Lock()
        self._users = 0
        self._closing = False
        self._what = what
        self._gen = _generation

    def _after_fork(self, closing: bool = False) -> None:
        with _reopen_lock:
            if self._gen == _generation:
                return
            self._closing = self._closing or closing
            new = None if self._closing else ffi.gc(self._open(), self._destructor)
            old, self._h = self._h, new
            self._guard = threading.Lock()
            self._users = 0
            self._gen = _generation
        if old is not None:
            ffi.release(old)

    @property
    def closed(self) -> bool:
        return self._closing

    # acquire/release take the lock with plain calls, not `with`: they are on every
    # hot path (two `with` blocks cost as much again as the C call they guard). The
    # try/finally costs nothing (3.11+) or one opcode, and keeps the lock from staying
    # held when a signal handler raises (Ctrl-C's KeyboardInterrupt) inside the
    # section: the next close() would wait for it forever.
    def acquire(self) -> Any:
        if self._gen != _generation:
            self._after_fork()
        guard = self._guard
        guard.acquire()
        try:
            if self._closing:
                raise ChannelClosed(f"{self._what} is closed")
            self._users += 1
            return self._h
        finally:
            guard.release()

    def release(self) -> None:
        guard = self._guard
        guard.acquire()
        try:
            self._users -= 1
            if self._closing and self._users == 0:
                self._free()  # ffi.release: does not raise
        finally:
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
        if self._gen != _generation:
            self._after_fork(closing=True)  # nothing to reopen just to close it
            return
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
