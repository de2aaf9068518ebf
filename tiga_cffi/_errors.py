"""One place where C status codes become exceptions."""

from __future__ import annotations

import os
from typing import Dict, NoReturn, Optional, Type

try:
    from ._tiga import ffi, lib
except ImportError as _e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"tiga_cffi's C extension (tiga_cffi._tiga) is not built in "
        f"{os.path.dirname(__file__)}. If that is a source checkout that shadows the "
        "installed package (running from the checkout's root after `pip install .`), run "
        "from another directory, or build it in place with `pip install -e .`."
    ) from _e


class TigaError(Exception):
    """Base of every tiga_cffi error.

    ``code`` is the C status (0 for errors raised by the Python layer itself) and
    ``detail`` the library's explanation of what it found (file, field, expectation).
    """

    def __init__(self, message: str, code: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class Timeout(TigaError, TimeoutError):
    """A deadline passed (lock, invoke, wait). ``except TimeoutError`` works too."""


class InvalidName(TigaError, ValueError):
    """A channel name or client id that the protocol rules out."""


class InvalidArgument(TigaError, ValueError):
    """An argument with a value out of range."""


class InvalidType(TigaError, TypeError):
    """A message, media type, name or directory of the wrong Python type."""


class ChannelCorrupt(TigaError):
    """The channel's bytes fail the checksum or are not a valid logbook."""


class ChannelTruncated(ChannelCorrupt):
    """A channel file is shorter than the protocol needs (truncated by someone)."""


class ChannelFull(TigaError):
    """The new entry does not fit beside the entries still retained."""


class MessageTooLarge(TigaError, ValueError):
    """The entry can never fit in the channel's capacity."""


class NoListenerSlot(TigaError):
    """All 128 listener slots of a channel are held by live processes."""


class ServerNotReady(TigaError, TimeoutError):
    """No server (live listener on the request channel) appeared, and nothing answered,
    within the timeout. A TimeoutError too, so ``except TimeoutError`` catches it."""


class ServerGone(TigaError):
    """The server's listener slot on the request channel went away (the server
    closed, or its process died) while an invoke waited for its response. Raised
    within about 100 ms of that, instead of at the invoke's timeout."""


class EntriesMissed(TigaError):
    """A subscription found entries trimmed before it read them (its reader was
    slower than the writer's ``min_age``). ``count`` ids are gone, the ones after
    ``last_id`` up to before ``first_id``; the subscription goes on with
    ``first_id`` at its next step."""

    def __init__(self, count: int, last_id: int, first_id: int, channel: str) -> None:
        super().__init__(f"{count} entries of {channel!r} after id {last_id} were trimmed "
                         "before this subscription read them")
        self.count, self.last_id, self.first_id = count, last_id, first_id


class RemoteError(TigaError):
    """The server answered with code -1; ``str(error)`` is the server's message."""


class OutOfMemory(TigaError, MemoryError):
    """libtiga could not allocate what a call needed (``except MemoryError`` works too).
    Memory is sized by payloads, never by file sizes, so a peer's huge file does not
    cause it; a payload near the 1 GiB limit on a small machine may."""


class ChannelClosed(TigaError, ValueError):
    """The object was used after close()."""


class TigaOSError(TigaError, OSError):
    """An operating-system failure on a channel file; ``errno`` and ``filename`` are set."""

    def __init__(self, errno: int, detail: str, filename: Optional[str] = None) -> None:
        OSError.__init__(self, errno, detail or os.strerror(errno), filename)
        self.code = -errno
        self.detail = detail


_BY_CODE: Dict[int, Type[TigaError]] = {
    lib.TIGA_ETIMEDOUT: Timeout,
    lib.TIGA_EBADNAME: InvalidName,
    lib.TIGA_ECORRUPT: ChannelCorrupt,
    lib.TIGA_EFULL: ChannelFull,
    lib.TIGA_ETOOBIG: MessageTooLarge,
    lib.TIGA_ETRUNCATED: ChannelTruncated,
    lib.TIGA_EINVAL: InvalidArgument,
    lib.TIGA_ENOSLOT: NoListenerSlot,
    lib.TIGA_ENOTREADY: ServerNotReady,
    lib.TIGA_ENOMEM: OutOfMemory,
}


def raise_for(rc: int, filename: Optional[str] = None) -> NoReturn:
    detail = ffi.string(lib.tiga_last_error()).decode("utf-8", "replace")
    if -4000 < rc < 0:
        raise TigaOSError(-rc, detail, filename)
    text = ffi.string(lib.tiga_strerror(rc)).decode()
    cls = _BY_CODE.get(rc, TigaError)
    raise cls(f"{text}: {detail}" if detail else text, rc, detail)


def check(rc: int, filename: Optional[str] = None) -> None:
    """Raise the exception for a C status; do nothing for TIGA_OK."""
    if rc != 0:
        raise_for(rc, filename)
