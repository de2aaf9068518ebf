"""tiga_cffi: the Tiga memory-mapped IPC protocol for Python.

Channels are memory-mapped files in a shared directory; this package reads and
writes them byte-compatibly with the C# and Node.js peers.
"""

import logging as _logging

from ._errors import (
    ChannelClosed,
    ChannelCorrupt,
    ChannelFull,
    ChannelTruncated,
    EntriesMissed,
    InvalidArgument,
    InvalidName,
    InvalidType,
    MessageTooLarge,
    NoListenerSlot,
    OutOfMemory,
    RemoteError,
    ServerGone,
    ServerNotReady,
    TigaError,
    TigaOSError,
    Timeout,
)
from ._tiga import ffi as _ffi
from ._tiga import lib as _lib
from .channel import (
    DEFAULT_CAPACITY,
    Channel,
    ChannelInfo,
    Entry,
    ReadResult,
    WriteResult,
    clear_cache,
    tiga_read,
    tiga_write,
    validate_name,
)
from .client import Client, InvokeFuture, tiga_invoke, tiga_invoke_async
from .notify import NotificationListener, create_tiga_notification_listener, has_live_listener
from .server import (
    ErrorContext,
    InvokeContext,
    TigaServer,
    create_tiga_server,
    start_tiga_server,
)
from .subscription import Subscription

# Silent unless the application configures logging (the library's own rule).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__version__: str = _ffi.string(_lib.tiga_version()).decode("ascii")  # written once: tiga.h


def initialized() -> bool:
    """True once the native extension is loaded (it is whenever this module imports)."""
    from ._tiga import lib

    return bool(lib.tiga_wyhash(b"", 0, 0) == 0x42BC986DC5EEC4D3)


def wyhash(data: bytes, seed: int = 0) -> int:
    """The protocol's checksum function (wyhash final3), full 64 bits."""
    from ._tiga import ffi, lib

    buf = ffi.from_buffer(data)
    return int(lib.tiga_wyhash(buf, len(buf), seed))


__all__ = [
    "Channel",
    "Client",
    "ErrorContext",
    "InvokeContext",
    "InvokeFuture",
    "NotificationListener",
    "TigaServer",
    "create_tiga_notification_listener",
    "create_tiga_server",
    "has_live_listener",
    "start_tiga_server",
    "Subscription",
    "tiga_invoke",
    "tiga_invoke_async",
    "ChannelClosed",
    "ChannelCorrupt",
    "ChannelFull",
    "ChannelInfo",
    "ChannelTruncated",
    "EntriesMissed",
    "DEFAULT_CAPACITY",
    "Entry",
    "InvalidArgument",
    "InvalidName",
    "InvalidType",
    "MessageTooLarge",
    "NoListenerSlot",
    "OutOfMemory",
    "ReadResult",
    "RemoteError",
    "ServerGone",
    "ServerNotReady",
    "TigaError",
    "TigaOSError",
    "Timeout",
    "WriteResult",
    "clear_cache",
    "initialized",
    "tiga_read",
    "tiga_write",
    "validate_name",
    "wyhash",
]
