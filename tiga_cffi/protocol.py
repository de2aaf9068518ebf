"""Message envelopes inside entries: publish, invoke and response (MessagePack).

Knows MessagePack and gzip, nothing of files. The wire shapes:

- publish  ``[id, 0, data: str]``
- invoke   ``[id, 1, method: str, data]``
- response ``[id, 2, data: str, code: int]`` (code 0 success, -1 failure)

with media type ``application/x-msgpack``, or the same bytes gzip-compressed under
``application/x-msgpack-compressed``.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from typing import Any, NamedTuple, Optional, Union, cast

import msgpack

from ._errors import ChannelCorrupt

MEDIA_MSGPACK = "application/x-msgpack"
MEDIA_MSGPACK_GZIP = "application/x-msgpack-compressed"
KIND_PUBLISH = 0
KIND_INVOKE = 1
KIND_RESPONSE = 2
CODE_OK = 0
CODE_ERROR = -1
MAX_INFLATED = 256 * 1024 * 1024  # a compressed envelope may not inflate beyond this


class Publish(NamedTuple):
    id: str
    data: Any


class Invoke(NamedTuple):
    id: str
    method: str
    data: Any


class Response(NamedTuple):
    id: str
    data: str
    code: int


Envelope = Union[Publish, Invoke, Response]


class ProtocolError(ChannelCorrupt):
    """An entry claims a MessagePack envelope but does not hold a valid one."""


_rng = random.Random()


def _reseed() -> None:
    """From the OS, at import and in every forked child (a child must not repeat
    its parent's ids)."""
    _rng.seed(int.from_bytes(os.urandom(32), "little"))


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A fresh random (version 4) UUID as lowercase 36-character text. Ids must be
    unique, not secret: they come from a generator seeded from the OS, which costs
    a fraction of a system call per id (uuid.uuid4 makes one each)."""
    n = _rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode_publish(data: str, id: Optional[str] = None) -> bytes:
    return cast(bytes, msgpack.packb([id or new_id(), KIND_PUBLISH, data]))


def encode_invoke(method: str, data: Any, id: str) -> bytes:
    return cast(bytes, msgpack.packb([id, KIND_INVOKE, method, data]))


def encode_response(id: str, data: str, code: int = CODE_OK) -> bytes:
    return cast(bytes, msgpack.packb([id, KIND_RESPONSE, data, code]))


def inflate(message: bytes) -> bytes:
    """gunzip with a bound on the inflated size (a peer's garbage must not eat memory)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(message, MAX_INFLATED)
    except zlib.error as e:
        raise ProtocolError(f"compressed envelope does not inflate: {e}") from None
    if d.unconsumed_tail:
        raise ProtocolError(f"compressed envelope inflates beyond {MAX_INFLATED} bytes")
    return out


def is_envelope_media(media_type: Optional[str]) -> bool:
    return media_type in (MEDIA_MSGPACK, MEDIA_MSGPACK_GZIP)


def decode_envelope(message: bytes, media_type: Optional[str]) -> Envelope:
    """Decode an entry's message as an envelope; ProtocolError if it is not one."""
    if media_type == MEDIA_MSGPACK_GZIP:
        message = inflate(message)
    elif media_type != MEDIA_MSGPACK:
        raise ProtocolError(f"media type {media_type!r} is not a MessagePack envelope")
    try:
        value = msgpack.unpackb(message, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"envelope is not MessagePack: {e}") from None
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ProtocolError("envelope is not an array of at least 2 elements")
    id_, kind = value[0], value[1]
    if not isinstance(id_, str) or not isinstance(kind, int) or isinstance(kind, bool):
        raise ProtocolError("envelope id is not a string or its kind not an integer")
    if kind == KIND_PUBLISH and len(value) >= 3:
        return Publish(id_, value[2])
    if kind == KIND_INVOKE and len(value) >= 4 and isinstance(value[2], str):
        return Invoke(id_, value[2], value[3])
    if kind == KIND_RESPONSE and len(value) >= 4 and isinstance(value[3], int):
        data = value[2]
        if not isinstance(data, str):
            raise ProtocolError("response data is not a string")
        return Response(id_, data, value[3])
    raise ProtocolError(f"envelope of kind {kind!r} with {len(value)} elements is not known")


def try_envelope(message: bytes, media_type: Optional[str]) -> Optional[Envelope]:
    """The envelope in an entry, or None for raw messages and garbage."""
    if not is_envelope_media(media_type):
        return None
    try:
        return decode_envelope(message, media_type)
    except ProtocolError:
        return None


def result_to_data(value: Any) -> str:
    """A server handler's result as response data: str as is, bytes as UTF-8,
    None as "", anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if value is None:
        return ""
    return json.dumps(value, default=str)
